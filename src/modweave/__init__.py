"""modweave: grow a pretrained (multimodal) LLM into new input modalities one at a time."""

from __future__ import annotations

from typing import Any

from .version import __version__
__all__ = ["XModalLM", "__version__"]


def __getattr__(name: str) -> Any:  # lazy: `import modweave` stays light (no torch/transformers)
    if name == "XModalLM":
        from .model import XModalLM

        return XModalLM
    raise AttributeError(f"module 'modweave' has no attribute {name!r}")
