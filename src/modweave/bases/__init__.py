"""Ready-made base models built from real checkpoints.

- `instructblip.build_instructblip(name_or_path)`: the PathWeave base (InstructBLIP-Vicuna-7B layout).
- `gguf.resolve_name_or_path(value)`: `gguf:<package>/<file>.gguf` or a `.gguf` path -> a local
  transformers directory (converted once and cached), used for the offline real-small tier.
- `hub`: safe checkpoint loading for every builder (`trust_remote_code=False`, custom code refused,
  meta-device builds from the config alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..model import XModalLM

KNOWN = ("instructblip",)


def build_base(config: "ModelConfig", device: Any = None) -> "XModalLM":
    """Build `config.base` (`<kind>:<hub id or local dir>`): the checkpoint's weights, frozen.
    The prompt layout of `config` is kept; the parts are described by the checkpoint's own config."""
    kind, _, name = (config.base or "").partition(":")
    if kind not in KNOWN or not name:
        raise ValueError(f"model.base '{config.base}': expected <kind>:<hub id or dir> with kind in {', '.join(KNOWN)}")
    from .instructblip import build_instructblip

    model = build_instructblip(name, dtype=config.llm.dtype, device=device or "cpu")
    model.config.base = config.base
    model.config.prompt = config.prompt
    return model
