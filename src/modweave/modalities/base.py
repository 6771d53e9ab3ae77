"""Modality registry and the shared loader protocol.

A modality is one self-contained unit: a class with a settings dataclass and a ``load`` that turns a
file on disk into the float32 tensor its frozen encoder expects. Registering it by name with
``@register_modality`` is all the rest of the library needs to know about it.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import torch

from ..registry import Registry

MediaPath = Path | Mapping[str, Path]


class MediaError(ValueError):
    """A media file that cannot be used: missing, truncated, corrupt, wrong type or empty.

    ``str(err)`` is one line naming the file and the reason, ready for a CLI to print.
    """

    def __init__(self, path: Any, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # keep it one line whatever the library said
        super().__init__(f"{self.path}: {self.reason}")


class SettingsError(ValueError, TypeError):
    """Bad loader settings (unknown key, wrong type). A TypeError too, for callers that caught that."""


@dataclasses.dataclass
class ModalitySettings:
    """Base class of every modality's settings (paper-scale defaults in subclasses)."""


# Loaders refuse images (and video frames) with more pixels than this before decoding them, so a
# file declaring 20000 x 20000 costs nothing; the ``max_pixels`` setting of image, depth and video
# changes it per modality. 50 Mpx is a 8K frame 6 times over; one decodes to 150 MB of RGB.
DEFAULT_MAX_PIXELS = 50_000_000


def _check_value(owner: str, field: dataclasses.Field, value: Any) -> None:
    """Refuse a setting of the wrong type (the dataclass would take it and fail deep in a loader)."""
    want = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    ok = {"int": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),  # numpy ints too
          "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool)}.get(want)
    if ok is not None and not ok(value):
        raise SettingsError(f"{owner} loader setting {field.name!r} must be {want}, got {value!r}")


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
    # keys of a ``{"key": path}`` media dict this modality takes (depth: depth + rgb); () = one path only
    media_keys: ClassVar[tuple[str, ...]] = ()
    # how a path spec's ``num_frames`` reaches the loader: the setting it sets (video: "num_frames"),
    # or, for loaders with a fixed frame count, the most frames a sample can have (image: 1)
    frames_setting: ClassVar[str | None] = None
    max_frames: ClassVar[int | None] = None

    def default_settings(self) -> Any:
        return self.settings_cls()

    def make_settings(self, settings: Any = None) -> Any:
        """Accept a settings instance, a dict of overrides, or None (defaults)."""
        if settings is None:
            return self.settings_cls()
        if isinstance(settings, Mapping):
            fields = {f.name: f for f in dataclasses.fields(self.settings_cls)}
            unknown = sorted(set(settings) - set(fields))
            if unknown:
                raise SettingsError(f"unknown {self.name} loader setting {unknown[0]!r} (known: {', '.join(fields) or 'none'})")
            for k, v in settings.items():
                _check_value(self.name, fields[k], v)
            return self.settings_cls(**settings)
        if not isinstance(settings, self.settings_cls):
            raise SettingsError(f"{self.name}: expected {self.settings_cls.__name__}, got {type(settings).__name__}")
        return settings

    def check_media_ref(self, media: Any) -> None:
        """Refuse a media dict this modality cannot take, or one with unknown keys (ValueError, one line)."""
        if not isinstance(media, Mapping):
            return
        if not self.media_keys:
            raise ValueError(f"'media' is a dict, but {self.name} media must be one path")
        unknown = sorted(set(media) - set(self.media_keys))
        if unknown:
            raise ValueError(f"unknown {self.name} media key {unknown[0]!r} (known: {', '.join(self.media_keys)})")

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
        if isinstance(path, Mapping):
            try:
                self.check_media_ref(path)
            except ValueError as err:
                raise MediaError({k: str(v) for k, v in path.items()}, str(err)) from None
        return self._load(path, settings)

    def _load(self, path: MediaPath, settings: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


MODALITIES: "Registry[Modality]" = Registry("modality")
M = TypeVar("M", bound=type)


def register_modality(name: str) -> Callable[[M], M]:
    """Class decorator: register a Modality subclass under ``name`` (one instance is kept; a second
    modality of that name is refused)."""

    def wrap(cls: M) -> M:
        if name in MODALITIES:
            raise ValueError(f"modality {name!r} is already registered")
        cls.name = name
        MODALITIES.add(name, cls())
        return cls

    return wrap


def get_modality(name: str) -> Modality:
    """Return the registered modality ``name``; a one-line ValueError lists the known ones."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r} (known: {', '.join(list_modalities())})")
    return MODALITIES.get(name)


def loader_settings_for(spec: Any, override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Loader settings of a path spec (``ModalitySpec``: ``name``, ``num_frames``, ``loader``).

    ``spec.loader`` with ``override`` on top (e.g. the run's ``data.loader.<name>``), then the spec's
    ``num_frames`` where it means something to the loader: it sets the frame-sampling setting (video's
    ``num_frames``), and it must agree with one given in the loader settings; for loaders with a fixed
    frame count (image 1, depth 1 or 2, point cloud 1) more frames than they give is an error rather
    than ignored. ``num_frames=None`` leaves the loader's own default. Raises SettingsError naming
    the modality and both values.
    """
    modality = get_modality(spec.name)
    out = {**dict(getattr(spec, "loader", None) or {}), **dict(override or {})}
    n = getattr(spec, "num_frames", None)
    if n is None:
        return out
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SettingsError(f"modality {spec.name!r}: num_frames must be a positive integer, got {n!r}")
    key = modality.frames_setting
    if key is not None:
        if key in out and out[key] != n:
            raise SettingsError(f"modality {spec.name!r}: num_frames {n} on its path spec disagrees with loader setting "
                                f"{key}={out[key]!r}; give one, or the same value in both")
        out[key] = n
    elif modality.max_frames is not None and n > modality.max_frames:
        raise SettingsError(f"modality {spec.name!r}: num_frames {n} cannot take effect, its loader gives at most "
                            f"{modality.max_frames} frame(s) per sample")
    return out


def list_modalities() -> list[str]:
    """Registered modality names, in registration order (text first, then the media ones)."""
    return MODALITIES.names(in_order=True)
