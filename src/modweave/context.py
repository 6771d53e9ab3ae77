"""Routing state shared by the model and the modules methods inject.

Path switching needs no learned choice: the model knows each sample's modality. It writes it here
and injected modules (adapters in the connector, extended MoE blocks in the LLM) read it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class PathContext:
    """`modality`: the path a connector call serves (one modality group at a time);
    `sample_modalities`: each LLM batch row's modalities, a tuple per row (one modality for most rows;
    a row holding an image and an audio clip is `("image", "audio")`), for per-sample routing inside the LLM."""

    def __init__(self) -> None:
        self.modality: str | None = None
        self.sample_modalities: list[tuple[str, ...]] | None = None
        self._listeners: dict[str, Callable[[str | None], None]] = {}

    def on_switch(self, fn: Callable[[str | None], None], key: str | None = None) -> None:
        """Call `fn(modality)` whenever the active connector path changes (e.g. peft's set_adapter).
        A `key` names the listener: registering the same key again replaces it (one per method)."""
        self._listeners[key or f"#{len(self._listeners)}"] = fn

    def has_listener(self, key: str) -> bool:
        return key in self._listeners

    @contextlib.contextmanager
    def path(self, modality: str | None) -> Iterator[None]:
        previous, self.modality = self.modality, modality
        for fn in self._listeners.values():
            fn(modality)
        try:
            yield
        finally:
            self.modality = previous
            for fn in self._listeners.values():
                fn(previous)

    @contextlib.contextmanager
    def samples(self, modalities: list[str | tuple[str, ...]]) -> Iterator[None]:
        """Set each row's modalities (a name or a tuple of names per row) for the block."""
        rows = [(m,) if isinstance(m, str) else tuple(m) for m in modalities]
        previous, self.sample_modalities = self.sample_modalities, rows
        try:
            yield
        finally:
            self.sample_modalities = previous
