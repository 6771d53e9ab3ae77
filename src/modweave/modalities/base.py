"""Modality registry and the shared loader protocol.

A modality is one self-contained unit: a class with a settings dataclass and a ``load`` that turns a
file on disk into the float32 tensor its frozen encoder expects. Registering it by name with
``@register_modality`` is all the rest of the library needs to know about it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import torch

MediaPath = Path | Mapping[str, Path]


class MediaError(ValueError):
    """A media file that cannot be used: missing, truncated, corrupt, wrong type or empty.

    ``str(err)`` is one line naming the file and the reason, ready for a CLI to print.
    """

    def __init__(self, path: Any, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # keep it one line whatever the library said
        super().__init__(f"{self.path}: {self.reason}")


@dataclasses.dataclass
class ModalitySettings:
    """Base class of every modality's settings (paper-scale defaults in subclasses)."""


class Modality:
    """One input modality: how its media is read from disk and preprocessed.

    Subclasses set ``name``, ``has_media``, ``extensions`` and ``settings_cls`` and implement
    ``_load``; ``load`` adds the checks shared by all (missing file, wrong extension).
    """

    name: ClassVar[str] = ""
    has_media: ClassVar[bool] = True
    extensions: ClassVar[tuple[str, ...]] = ()
    settings_cls: ClassVar[type] = ModalitySettings
    accepts_dirs: ClassVar[bool] = False

    def default_settings(self) -> Any:
        return self.settings_cls()

    def make_settings(self, settings: Any = None) -> Any:
        """Accept a settings instance, a dict of overrides, or None (defaults)."""
        if settings is None:
            return self.settings_cls()
        if isinstance(settings, Mapping):
            return self.settings_cls(**settings)
        if not isinstance(settings, self.settings_cls):
            raise TypeError(f"{self.name}: expected {self.settings_cls.__name__}, got {type(settings).__name__}")
        return settings

    def check_path(self, path: Path) -> Path:
        """Raise MediaError unless ``path`` exists and has one of this modality's extensions."""
        path = Path(path)
        if self.accepts_dirs and path.is_dir():
            return path
        if not path.exists():
            raise MediaError(path, "file not found")
        if path.suffix.lower() not in self.extensions:
            raise MediaError(
                path, f"wrong extension {path.suffix or '(none)'!r} for {self.name} (expected {', '.join(self.extensions)})"
            )
        if path.is_dir():
            raise MediaError(path, "is a directory, expected a file")
        if path.stat().st_size == 0:
            raise MediaError(path, "empty file")
        return path

    def load(self, path: MediaPath, settings: Any = None) -> torch.Tensor:
        """Read ``path`` and return the float32 encoder input (shape documented per modality)."""
        if not self.has_media:
            raise MediaError(path, f"modality {self.name!r} has no media to load")
        settings = self.make_settings(settings)
        return self._load(path, settings)

    def _load(self, path: MediaPath, settings: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_REGISTRY: dict[str, Modality] = {}
M = TypeVar("M", bound=type)


def register_modality(name: str) -> Callable[[M], M]:
    """Class decorator: register a Modality subclass under ``name`` (one instance is kept)."""

    def wrap(cls: M) -> M:
        if name in _REGISTRY:
            raise ValueError(f"modality {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls()
        return cls

    return wrap


def get_modality(name: str) -> Modality:
    """Return the registered modality ``name``; a one-line ValueError lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r} (known: {', '.join(list_modalities())})") from None


def list_modalities() -> list[str]:
    """Registered modality names, in registration order (text first, then the media ones)."""
    return list(_REGISTRY)
