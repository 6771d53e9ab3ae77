"""Frozen encoders behind one small protocol, registered by kind.

An encoder is an `nn.Module` with an `output_width: int` attribute whose `forward(x)` maps a batch of
single frames/chunks/clouds `[N, ...]` to tokens `[N, T, output_width]`. Frames of a video, depth pair
or audio chunks are flattened into N by the model before the encoder sees them.

A module loaded from a checkpoint elsewhere (a hub id or a local folder) carries `modweave_external =
True` (and may carry `modweave_source = {"name_or_path", "revision"}`): stage files reference it, by
source and content hashes, instead of copying its weights.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import EncoderConfig
from ..registry import Registry

EncoderBuilder = Callable[[EncoderConfig], nn.Module]
ENCODERS: "Registry[tuple[EncoderBuilder, type | None]]" = Registry("encoder")


def register_encoder(kind: str, options: type | None = None) -> Callable[[EncoderBuilder], EncoderBuilder]:
    """Register a builder for `kind` (a second builder of that kind is refused); `options`: the
    dataclass its `cfg.options` must follow (None: any)."""

    def deco(fn: EncoderBuilder) -> EncoderBuilder:
        ENCODERS.add(kind, (fn, options))
        return fn

    return deco


def _entry(kind: str) -> tuple[EncoderBuilder, type | None]:
    _load_builtin()
    try:
        return ENCODERS.get(kind)
    except ValueError:
        raise ValueError(f"unknown encoder kind '{kind}' (known: {', '.join(ENCODERS.names())})") from None


def encoder_options(kind: str) -> type | None:
    """The options dataclass of encoder `kind` (None: not declared); ValueError for an unknown kind."""
    return _entry(kind)[1]


def list_encoders() -> list[str]:
    _load_builtin()
    return ENCODERS.names()


def build_encoder(cfg: EncoderConfig) -> nn.Module:
    """Build the encoder of `cfg.kind`, frozen (every parameter `requires_grad=False`)."""
    builder, options = _entry(cfg.kind)
    if options is not None:  # the same check the config runs at parse time
        from ..fields import check_fields

        check_fields(options, cfg.options or {}, f"encoder.options ({cfg.kind})")
    enc = builder(cfg)
    for p in enc.parameters():
        p.requires_grad_(False)
    enc.eval()
    return enc


def _load_builtin() -> None:
    # importing registers them; transformers is a dependency, so an ImportError here is a real error
    from . import hf, tiny  # noqa: F401
