"""Small seeded, randomly initialised, frozen encoders for the embedded default (CPU demo, tests).

They stand in for EVA-CLIP / BEATs / PointBERT: random frozen features still carry the input's
information, which is all the continual-learning comparison needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import EncoderConfig
from ..utils import seeded
from . import register_encoder
from .options import TinyAudioOptions, TinyImageOptions, TinyPointsOptions


def _trunk(width: int, layers: int, heads: int) -> nn.Module:
    if layers == 0:
        return nn.Identity()
    layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class PatchImageEncoder(nn.Module):
    """ViT-like: `[N, C, H, W]` in [0,1] -> `[N, (H/p)*(W/p), width]`."""

    frame_dims = 3

    def __init__(self, image_size: int = 32, patch: int = 4, width: int = 128, layers: int = 1,
                 heads: int = 4, channels: int = 3):
        super().__init__()
        self.image_size, self.channels = image_size, channels
        self.output_width = width
        self.patch = nn.Conv2d(channels, width, patch, patch)
        n = (image_size // patch) ** 2
        # strong (std 0.5) frozen position codes: with weak ones the tokens are a bag of patches and
        # where a stroke is (the digit itself, its position) is lost to the connector
        self.pos = nn.Parameter(torch.randn(1, n, width) * 0.5)
        self.trunk = _trunk(width, layers, heads)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[-1] != self.image_size:
            raise ValueError(f"image encoder expects [N, {self.channels}, {self.image_size}, {self.image_size}], "
                             f"got {list(x.shape)}")
        tokens = self.patch(x * 2 - 1).flatten(2).transpose(1, 2) + self.pos
        return self.norm(self.trunk(tokens))


class FilterbankAudioEncoder(nn.Module):
    """Log-mel filterbank chunk `[N, T, n_mels]` -> `[N, T/p, width]` (patches of p frames)."""

    frame_dims = 2

    def __init__(self, n_mels: int = 32, patch_frames: int = 8, max_frames: int = 128, width: int = 128,
                 layers: int = 1, heads: int = 4):
        super().__init__()
        self.n_mels, self.patch_frames = n_mels, patch_frames
        self.output_width = width
        self.patch = nn.Conv1d(n_mels, width, patch_frames, patch_frames)
        self.pos = nn.Parameter(torch.randn(1, max_frames // patch_frames, width) * 0.5)  # when, not just what
        self.trunk = _trunk(width, layers, heads)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"audio encoder expects [N, T, {self.n_mels}] log-mel frames, got {list(x.shape)}")
        # log-mels are roughly in [-12, 2]; standardise per chunk so the random conv sees O(1) inputs
        x = (x - x.mean(dim=(1, 2), keepdim=True)) / (x.std(dim=(1, 2), keepdim=True) + 1e-5)
        tokens = self.patch(x.transpose(1, 2)).transpose(1, 2)
        if tokens.shape[1] > self.pos.shape[1]:
            raise ValueError(f"audio chunk of {x.shape[1]} frames exceeds the encoder's "
                             f"{self.pos.shape[1] * self.patch_frames}")
        return self.norm(self.trunk(tokens + self.pos[:, : tokens.shape[1]]))


class PointNetEncoder(nn.Module):
    """PointNet-style: `[N, P, 3]` -> `[N, G, width]`.

    A shared per-point MLP, then a max-pool inside each of G groups; a point belongs to the group of
    its nearest of G fixed anchor directions, so the tokens keep a coarse spatial layout. G = 1 gives
    the single global token of ULIP-2 PointBERT.
    """

    frame_dims = 2

    def __init__(self, width: int = 128, num_tokens: int = 8, hidden: int = 64, in_dim: int = 3):
        super().__init__()
        self.output_width, self.in_dim = width, in_dim
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, width))
        anchors = torch.randn(num_tokens, 3)
        self.register_buffer("anchors", anchors / anchors.norm(dim=-1, keepdim=True))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_dim or x.shape[1] == 0:
            raise ValueError(f"point encoder expects [N, P>0, {self.in_dim}], got {list(x.shape)}")
        feats = self.mlp(x)  # [N, P, D]
        if self.anchors.shape[0] == 1:
            return self.norm(feats.max(dim=1, keepdim=True).values)
        group = (x[..., :3] @ self.anchors.T).argmax(-1)  # [N, P]
        index = group.unsqueeze(-1).expand_as(feats)  # [N, P, D]
        init = feats.new_full((feats.shape[0], self.anchors.shape[0], feats.shape[-1]), -math.inf)
        pooled = init.scatter_reduce(1, index, feats, reduce="amax")  # [N, G, D]: max inside each group
        pooled = torch.where(torch.isinf(pooled), torch.zeros_like(pooled), pooled)  # empty group -> 0
        return self.norm(pooled)


@register_encoder("tiny-image", TinyImageOptions)
def _tiny_image(cfg: EncoderConfig) -> nn.Module:
    o = cfg.options
    with seeded(cfg.seed):
        return PatchImageEncoder(o.get("image_size", 32), o.get("patch", 4), cfg.width, o.get("layers", 1),
                                 o.get("heads", 4), o.get("channels", 3))


@register_encoder("tiny-audio", TinyAudioOptions)
def _tiny_audio(cfg: EncoderConfig) -> nn.Module:
    o = cfg.options
    with seeded(cfg.seed):
        return FilterbankAudioEncoder(o.get("n_mels", 32), o.get("patch_frames", 8), o.get("max_frames", 128),
                                      cfg.width, o.get("layers", 1), o.get("heads", 4))


@register_encoder("tiny-points", TinyPointsOptions)
def _tiny_points(cfg: EncoderConfig) -> nn.Module:
    o = cfg.options
    with seeded(cfg.seed):
        return PointNetEncoder(cfg.width, o.get("num_tokens", 8), o.get("hidden", 64), o.get("in_dim", 3))
