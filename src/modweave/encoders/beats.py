"""BEATs audio encoder (Chen et al., 2022), written from its published architecture.

fbank `[N, T, 128]` -> Conv2d 16x16 patches (512 ch, no bias) -> LayerNorm -> Linear(512 -> 768)
-> + grouped convolutional position embedding (weight-normalised, kernel 128, 16 groups, GELU)
-> LayerNorm -> 12 post-norm ("deep norm") Transformer layers with a T5-style bucketed relative
position bias shared by all layers and gated per head from the query (gated relative position) ->
`[N, (T/16) * 8, 768]`.

Checkpoints: the public format, a dict `{"cfg": {...}, "model": state_dict}` read with
`torch.load(..., weights_only=True)`; key names as published (`patch_embedding.weight`,
`encoder.layers.0.self_attn.q_proj.weight`, `encoder.pos_conv.0.weight_g`, ...). Fine-tuned
checkpoints' `predictor.*` heads are not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import EncoderConfig
from ..utils import seeded
from . import register_encoder

FBANK_MEAN, FBANK_STD = 15.41663, 6.55582  # BEATs' fbank statistics (on waveforms scaled by 2**15)
INT16_LOG_SHIFT = 30 * math.log(2.0)  # ln((2**15)**2): power of a 2**15-scaled waveform, in natural log


@dataclass
class BEATsConfig:
    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    deep_norm: bool = True
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BEATsConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class WeightNormConv1d(nn.Module):
    """Conv1d with weight normalisation over dim 2 (`weight = g * v / ||v||`), checkpoint keys
    `weight_g [1, 1, K]`, `weight_v [C, C/groups, K]`, `bias`."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel) * 0.02)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.padding, self.groups = kernel // 2, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.weight_v.norm(dim=(0, 1), keepdim=True)
        weight = self.weight_g * self.weight_v / norm
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class SamePad(nn.Module):
    """Drop the extra trailing step an even kernel with `padding = K // 2` produces."""

    def __init__(self, kernel: int):
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : -self.remove] if self.remove else x


def relative_buckets(q_len: int, k_len: int, num_buckets: int, max_distance: int, device: torch.device) -> torch.Tensor:
    """Bidirectional T5 buckets `[q, k]`: exact for small distances, logarithmic up to `max_distance`."""
    rel = torch.arange(k_len, device=device)[None] - torch.arange(q_len, device=device)[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    dist = rel.abs()
    exact = half // 2
    large = exact + (torch.log(dist.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return buckets + torch.where(dist < exact, dist, large)


class BEATsAttention(nn.Module):
    def __init__(self, cfg: BEATsConfig, bias_table: nn.Embedding | None):
        super().__init__()
        d, h = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.heads, self.head_dim = h, d // h
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.relative_attention_bias = bias_table  # the same table in every layer (shared)
        if cfg.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, h, 1, 1))
        self.gru_rel_pos = cfg.gru_rel_pos

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        mask = None
        if position_bias is not None:  # [H, T, T]
            mask = position_bias.unsqueeze(0)
            if self.gru_rel_pos:  # gate the bias per query from the projected query
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1))
                gate_a, gate_b = gates.chunk(2, dim=-1)
                mask = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * mask
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class BEATsLayer(nn.Module):
    def __init__(self, cfg: BEATsConfig, bias_table: nn.Embedding | None):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = BEATsAttention(cfg, bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.alpha = (2 * cfg.encoder_layers) ** 0.25 if cfg.deep_norm else 1.0  # DeepNet residual scale

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(F.gelu(self.fc1(x))))


class BEATsTransformer(nn.Module):
    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.pos_conv = nn.Sequential(WeightNormConv1d(d, cfg.conv_pos, cfg.conv_pos_groups), SamePad(cfg.conv_pos),
                                      nn.GELU())
        table = nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads) if cfg.relative_position_embedding else None
        self.layers = nn.ModuleList([BEATsLayer(cfg, table) for _ in range(cfg.encoder_layers)])
        self.layer_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2))
        bias = None
        table = self.layers[0].self_attn.relative_attention_bias
        if table is not None:
            idx = relative_buckets(x.shape[1], x.shape[1], self.cfg.num_buckets, self.cfg.max_distance, x.device)
            bias = table(idx).permute(2, 0, 1)  # [H, T, T]
        for layer in self.layers:
            x = layer(x, bias)
        return x


class BEATsEncoder(nn.Module):
    """`[N, T, 128]` natural-log Kaldi fbank of [-1, 1] waveforms (the loaders' features) -> `[N, T', 768]`."""

    frame_dims = 2

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, p, p, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.post_extract_proj = (nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
                                  if cfg.embed_dim != cfg.encoder_embed_dim else None)
        self.encoder = BEATsTransformer(cfg)
        self.cfg = cfg
        self.output_width = cfg.encoder_embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.cfg.input_patch_size
        if x.dim() != 3 or x.shape[-1] % p or x.shape[1] < p:
            raise ValueError(f"BEATs expects [N, T>={p}, mels divisible by {p}] fbank, got {list(x.shape)}")
        x = x[:, : x.shape[1] // p * p].float()
        # BEATs computes fbank on int16-scaled waveforms: shift the log power, then its normalisation
        x = (x + INT16_LOG_SHIFT - FBANK_MEAN) / (2 * FBANK_STD)
        dtype = self.patch_embedding.weight.dtype
        feats = self.patch_embedding(x.unsqueeze(1).to(dtype))  # [N, C, T/p, mels/p]
        feats = self.layer_norm(feats.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            feats = self.post_extract_proj(feats)
        return self.encoder(feats)


def read_torch_file(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True)` (plain tensors only: no code runs from the file). On the
    meta device the tensors are memory-mapped, not read: the builder needs their shapes only."""
    from ..bases.hub import is_meta

    if is_meta():
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a legacy (non-zip) file cannot be mapped: read it
            pass
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_beats_checkpoint(path: str | Path) -> tuple[BEATsConfig, dict[str, torch.Tensor]]:
    """Read a public BEATs checkpoint `{"cfg", "model"}` (pickle, `weights_only=True`)."""
    data = read_torch_file(path)
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"{path}: not a BEATs checkpoint (expected a dict with 'cfg' and 'model')")
    state = {k: v for k, v in data["model"].items() if not k.startswith("predictor")}
    # the relative-position table is one tensor shared by all layers: accept files that store it once
    first = "encoder.layers.0.self_attn.relative_attention_bias.weight"
    if first in state:
        n = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
        for i in range(1, n):
            state.setdefault(first.replace(".0.", f".{i}.", 1), state[first])
    return BEATsConfig.from_dict(dict(data.get("cfg") or {})), state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module`; any missing, unexpected or mis-shaped key is an error listing the first ones."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unknown = [k for k in state if k not in own]
    bad = [f"{k}: file {list(state[k].shape)} vs model {list(own[k].shape)}"
           for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unknown or bad:
        lines = [f"missing {k}" for k in missing[:5]] + [f"unexpected {k}" for k in unknown[:5]] + bad[:5]
        raise ValueError(f"{source} does not match the architecture "
                         f"({len(missing)} missing, {len(unknown)} unexpected, {len(bad)} mis-shaped): "
                         + "; ".join(lines))
    if any(p.is_meta for p in module.parameters()):
        return  # architecture only (meta device): the shapes are checked, no tensor is read
    module.load_state_dict(state, strict=True)


@register_encoder("beats", BEATsConfig)
def build_beats(cfg: EncoderConfig) -> BEATsEncoder:
    """`name_or_path`: a BEATs `.pt` checkpoint; without one, a random encoder whose architecture is
    `options` (BEATsConfig fields; tests and parameter counts)."""
    if cfg.name_or_path:
        bcfg, state = load_beats_checkpoint(cfg.name_or_path)
        enc = BEATsEncoder(bcfg)
        load_strict(enc, state, cfg.name_or_path)
        enc.modweave_external = True
        return enc
    with seeded(cfg.seed):
        return BEATsEncoder(BEATsConfig.from_dict(cfg.options))
