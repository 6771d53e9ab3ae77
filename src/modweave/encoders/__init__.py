"""Frozen encoders behind one small protocol, registered by kind.

An encoder is an `nn.Module` with an `output_width: int` attribute whose `forward(x)` maps a batch of
single frames/chunks/clouds `[N, ...]` to tokens `[N, T, output_width]`. Frames of a video, depth pair
or audio chunks are flattened into N by the model before the encoder sees them.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import EncoderConfig

EncoderBuilder = Callable[[EncoderConfig], nn.Module]
_REGISTRY: dict[str, EncoderBuilder] = {}


def register_encoder(kind: str) -> Callable[[EncoderBuilder], EncoderBuilder]:
    def deco(fn: EncoderBuilder) -> EncoderBuilder:
        _REGISTRY[kind] = fn
        return fn

    return deco


def list_encoders() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_encoder(cfg: EncoderConfig) -> nn.Module:
    """Build the encoder of `cfg.kind`, frozen (every parameter `requires_grad=False`)."""
    _load_builtin()
    if cfg.kind not in _REGISTRY:
        raise ValueError(f"unknown encoder kind '{cfg.kind}' (known: {', '.join(sorted(_REGISTRY))})")
    enc = _REGISTRY[cfg.kind](cfg)
    for p in enc.parameters():
        p.requires_grad_(False)
    enc.eval()
    return enc


def _load_builtin() -> None:
    from . import tiny  # noqa: F401  (registers the tiny encoders)

    try:  # real encoders are optional extras
        from . import hf  # noqa: F401
    except ImportError:
        pass
