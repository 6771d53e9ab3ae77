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
_OPTIONS: dict[str, type | None] = {}


def register_encoder(kind: str, options: type | None = None) -> Callable[[EncoderBuilder], EncoderBuilder]:
    """Register a builder for `kind`; `options`: the dataclass its `cfg.options` must follow (None: any)."""

    def deco(fn: EncoderBuilder) -> EncoderBuilder:
        _REGISTRY[kind] = fn
        _OPTIONS[kind] = options
        return fn

    return deco


def encoder_options(kind: str) -> type | None:
    """The options dataclass of encoder `kind` (None: not declared); ValueError for an unknown kind."""
    _load_builtin()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown encoder kind '{kind}' (known: {', '.join(sorted(_REGISTRY))})")
    return _OPTIONS.get(kind)


def list_encoders() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_encoder(cfg: EncoderConfig) -> nn.Module:
    """Build the encoder of `cfg.kind`, frozen (every parameter `requires_grad=False`)."""
    _load_builtin()
    if cfg.kind not in _REGISTRY:
        raise ValueError(f"unknown encoder kind '{cfg.kind}' (known: {', '.join(sorted(_REGISTRY))})")
    if _OPTIONS.get(cfg.kind) is not None:  # the same check the config runs at parse time
        from ..fields import check_fields

        check_fields(_OPTIONS[cfg.kind], cfg.options or {}, f"encoder.options ({cfg.kind})")
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
