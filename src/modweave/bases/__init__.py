"""Ready-made base models built from real checkpoints.

- `instructblip` (registered as `model.base: instructblip:<id or dir>`): the PathWeave base
  (InstructBLIP-Vicuna-7B layout). Builders register with `@register_base(kind)`.
- `gguf.resolve_name_or_path(value)`: `gguf:<package>/<file>.gguf` or a `.gguf` path -> a local
  transformers directory (converted once and cached), used for the offline real-small tier.
- `hub`: safe checkpoint loading for every builder (`trust_remote_code=False`, custom code refused,
  meta-device builds from the config alone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..model import XModalLM

BaseBuilder = Callable[..., "XModalLM"]
BASES: Registry[BaseBuilder] = Registry("base")
register_base = BASES.register  # `@register_base("kind")` on `builder(name_or_path, config, device, model_cls)`


def build_base(config: "ModelConfig", device: Any = None, *, model_cls: type) -> "XModalLM":
    """Build `config.base` (`<kind>:<hub id or local dir>`): the checkpoint's weights, frozen.
    The prompt layout of `config` is kept; the parts are described by the checkpoint's own config.
    `model_cls`: the model class the builder assembles (XModalLM passes itself: no import cycle)."""
    from . import instructblip  # noqa: F401  (registers the built-in base)

    kind, _, name = (config.base or "").partition(":")
    if kind not in BASES or not name:
        raise ValueError(f"model.base '{config.base}': expected <kind>:<hub id or dir> with kind in "
                         f"{', '.join(BASES.names())}")
    model = BASES.get(kind)(name, config, device or "cpu", model_cls)
    model.config.base = config.base
    model.config.prompt = config.prompt
    return model


def list_bases() -> list[str]:
    from . import instructblip  # noqa: F401

    return BASES.names()
