"""PointBERT point-cloud encoder as used by ULIP-2, written from its published architecture.

`[N, P, 3]` (xyz; extra channels ignored) -> 512 groups of 32 points (farthest-point-sampled centres,
k nearest neighbours, coordinates relative to the centre) -> mini-PointNet per group (shared MLPs
3 -> 128 -> 256, max-pool, concatenate the global feature back, 512 -> 512 -> 256, max-pool) ->
Linear(256 -> 384) + a learned position embedding of each centre (3 -> 128 -> 384) -> [CLS] + 12
pre-norm Transformer blocks (6 heads, MLP x4, position embedding added before every block) ->
LayerNorm -> ONE global token `concat(CLS, max over groups)` (768), projected by ULIP's
`pc_projection` (768 -> 512 or the checkpoint's width) when the checkpoint holds one -> `[N, 1, width]`.

Checkpoints: ULIP-2 `.pt` files (pickles read with `weights_only=True`) holding a `state_dict` whose
keys are `module.point_encoder.*` and `module.pc_projection`; the prefixes are stripped here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import EncoderConfig
from ..utils import seeded
from . import register_encoder
from .beats import load_strict, read_torch_file


@dataclass
class PointBERTConfig:
    num_group: int = 512
    group_size: int = 32
    encoder_dims: int = 256
    trans_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    projection_dim: int | None = 512  # ULIP's pc_projection width; None: the raw 768-d token

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PointBERTConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def farthest_point_sample(xyz: torch.Tensor, k: int) -> torch.Tensor:
    """Indices `[N, k]` of k farthest-point-sampled points of `xyz [N, P, 3]`, starting from point 0."""
    n, p, _ = xyz.shape
    idx = torch.zeros(n, k, dtype=torch.long, device=xyz.device)
    dist = torch.full((n, p), float("inf"), device=xyz.device)
    last = torch.zeros(n, dtype=torch.long, device=xyz.device)
    rows = torch.arange(n, device=xyz.device)
    for i in range(k):
        idx[:, i] = last
        d = ((xyz - xyz[rows, last].unsqueeze(1)) ** 2).sum(-1)
        dist = torch.minimum(dist, d)
        last = dist.argmax(-1)
    return idx


def group_points(xyz: torch.Tensor, num_group: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`xyz [N, P, 3]` -> neighbourhoods `[N, G, M, 3]` (relative to their centre) and centres `[N, G, 3]`."""
    rows = torch.arange(xyz.shape[0], device=xyz.device).unsqueeze(1)
    centers = xyz[rows, farthest_point_sample(xyz, num_group)]  # [N, G, 3]
    knn = torch.cdist(centers, xyz).topk(group_size, dim=-1, largest=False).indices  # [N, G, M]
    neighbours = xyz[rows.unsqueeze(2), knn]  # [N, G, M, 3]
    return neighbours - centers.unsqueeze(2), centers


class MiniPointNet(nn.Module):
    """Group embedding: `[B, G, M, 3]` -> `[B, G, encoder_dims]` (keys `first_conv.*`, `second_conv.*`)."""

    def __init__(self, out_dims: int):
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                        nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                         nn.Conv1d(512, out_dims, 1))
        self.out_dims = out_dims

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        b, g, m, _ = groups.shape
        x = self.first_conv(groups.reshape(b * g, m, 3).transpose(1, 2))  # [BG, 256, M]
        glob = x.max(dim=2, keepdim=True).values
        x = self.second_conv(torch.cat([glob.expand(-1, -1, m), x], dim=1))  # [BG, out, M]
        return x.max(dim=2).values.reshape(b, g, self.out_dims)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BlockStack(nn.Module):
    """Key names `blocks.blocks.{i}.*` as in the published checkpoints; `pos` is added before each block."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return x


class PointBERTEncoder(nn.Module):
    """`[N, P, C>=3]` -> one global token `[N, 1, output_width]`."""

    frame_dims = 2

    def __init__(self, cfg: PointBERTConfig):
        super().__init__()
        d = cfg.trans_dim
        self.cfg = cfg
        self.encoder = MiniPointNet(cfg.encoder_dims)
        self.reduce_dim = nn.Linear(cfg.encoder_dims, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, d))
        self.blocks = BlockStack(d, cfg.depth, cfg.num_heads)
        self.norm = nn.LayerNorm(d)
        self.pc_projection = nn.Parameter(torch.randn(2 * d, cfg.projection_dim) * (2 * d) ** -0.5) \
            if cfg.projection_dim else None
        self.output_width = cfg.projection_dim or 2 * d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] < 3 or x.shape[1] < self.cfg.group_size:
            raise ValueError(f"PointBERT expects [N, P>={self.cfg.group_size}, 3+] points, got {list(x.shape)}")
        xyz = x[..., :3].float()
        groups, centers = group_points(xyz, min(self.cfg.num_group, xyz.shape[1]), self.cfg.group_size)
        dtype = self.reduce_dim.weight.dtype
        tokens = self.reduce_dim(self.encoder(groups.to(dtype)))  # [N, G, d]
        pos = self.pos_embed(centers.to(dtype))
        n = x.shape[0]
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), tokens], dim=1)
        pos = torch.cat([self.cls_pos.expand(n, -1, -1), pos], dim=1)
        h = self.norm(self.blocks(tokens, pos))
        glob = torch.cat([h[:, 0], h[:, 1:].max(dim=1).values], dim=-1)  # [N, 768]
        if self.pc_projection is not None:
            glob = glob @ self.pc_projection
        return glob.unsqueeze(1)


def ulip_point_state(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The PointBERT tensors of a ULIP(-2) checkpoint dict: `state_dict` (or the dict itself), keys
    stripped of `module.` and `point_encoder.`; the text/image towers' keys are dropped."""
    state = raw.get("state_dict", raw.get("model", raw))
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if k.startswith("point_encoder."):
            out[k[len("point_encoder."):]] = value
        elif k == "pc_projection":
            out[k] = value
    if not out:
        raise ValueError("no 'point_encoder.*' tensors in the checkpoint: not a ULIP PointBERT checkpoint")
    return out


def config_from_state(state: dict[str, torch.Tensor], base: PointBERTConfig) -> PointBERTConfig:
    """Widths and depth read off the tensors, so a checkpoint decides its own architecture."""
    if "reduce_dim.weight" not in state or "cls_token" not in state:
        return base  # incomplete file: the strict load names what is missing
    depth = 1 + max((int(k.split(".")[2]) for k in state if k.startswith("blocks.blocks.")), default=-1)
    proj = state.get("pc_projection")
    return PointBERTConfig(num_group=base.num_group, group_size=base.group_size,
                           encoder_dims=state["reduce_dim.weight"].shape[1], trans_dim=state["cls_token"].shape[-1],
                           depth=depth, num_heads=base.num_heads, projection_dim=None if proj is None else proj.shape[1])


@register_encoder("pointbert", PointBERTConfig)
def build_pointbert(cfg: EncoderConfig) -> PointBERTEncoder:
    """`name_or_path`: a ULIP-2 PointBERT `.pt` checkpoint; without one, random weights with the
    architecture in `options` (PointBERTConfig fields)."""
    base = PointBERTConfig.from_dict(cfg.options)
    if cfg.name_or_path:
        raw = read_torch_file(Path(cfg.name_or_path))  # tensors only; memory-mapped on the meta device
        state = ulip_point_state(raw)
        enc = PointBERTEncoder(config_from_state(state, base))
        load_strict(enc, state, cfg.name_or_path)
        enc.modweave_external = True
        return enc
    with seeded(cfg.seed):
        return PointBERTEncoder(base)
