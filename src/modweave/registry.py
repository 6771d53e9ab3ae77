"""One registry helper for every kind of registered unit (methods, encoders, modalities, connectors,
bases): a decorator that refuses duplicates, a lookup whose error lists what is known, and `names()`
for discovery (`modweave list`, parametrised tests). Optional plug-ins come in through the Python
entry-point group `modweave.<kind>s` (e.g. `modweave.methods`), loaded on first lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


class Registry(Generic[T]):
    """Named entries of one kind. `register(name)` is a decorator; `get(name)` raises a one-line
    ValueError naming the known entries; a second registration under one name is refused."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} '{name}' is already registered (by {_where(self._entries[name])})")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        if name not in self._entries:
            self._load_plugins()
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names()) or 'none'})")
        return self._entries[name]

    def names(self, in_order: bool = False) -> list[str]:
        """Registered names, sorted (or in registration order)."""
        self._load_plugins()
        return list(self._entries) if in_order else sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=f"modweave.{self.kind.replace(' ', '_')}s"):
            try:
                ep.load()  # importing the plug-in registers it
            except Exception as err:  # a broken plug-in must not break the library: say so, go on
                logger.warning("modweave plug-in %s (%s) failed to load: %s", ep.name, ep.value, err)


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
