"""Methods: one registered unit each, saying what is added and what trains when a modality arrives.

A method subclasses `Method`, sets `name` (and `phases` when a step has several) and `settings_cls`
(a dataclass of its settings, validated when a stage is created), and implements
`add_modality` (build the new path and its modules) and `trainable` (what trains in a phase). The
model and trainer know nothing else about it. Register with `@register_method`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

if TYPE_CHECKING:
    from ..config import ModalitySpec
    from ..model import XModalLM

from ..fields import ConfigError, from_dict, to_dict
from ..registry import Registry

METHODS: "Registry[type[Method]]" = Registry("method")


@dataclasses.dataclass
class NoSettings:
    """The settings of a method that takes none."""


class Method:
    """Base class. Subclasses are stateless: everything they build lives in the model.

    `settings_cls` is a dataclass of the method's settings (types, defaults, ranges through
    `fields.setting(...)`): `check_settings` validates a user's mapping against it when a stage is
    created (a typo or a wrong type fails before any training) and returns the complete settings as
    JSON data, which is what the stage record keeps and every hook receives."""

    name: ClassVar[str] = ""
    phases: ClassVar[tuple[str, ...]] = ("train",)
    settings_cls: ClassVar[type] = NoSettings
    #: phases whose `end_phase` measures the trained model on held-out data: a check on the meta
    #: device (the trainer's preflight, `modweave params`) cannot replay past them without weights
    data_phases: ClassVar[tuple[str, ...]] = ()

    def check_settings(self, settings: dict[str, Any], where: str | None = None) -> dict[str, Any]:
        """Settings `settings` completed with defaults; ValueError (naming the key) when one is bad."""
        where = where or f"method '{self.name}' settings"
        if settings is not None and not isinstance(settings, dict):
            raise ConfigError(f"config key '{where}': expected a mapping, got {type(settings).__name__}")
        out = to_dict(from_dict(self.settings_cls, settings or {}, where))
        self.validate(out, where)
        return out

    def keeps_earlier_paths(self, settings: dict[str, Any]) -> bool:
        """Whether a step through this method leaves every earlier modality's outputs bit-identical
        (its no-forgetting promise; the contract tests hold every method that makes it to it)."""
        return True

    def validate(self, settings: dict[str, Any], where: str) -> None:
        """Checks across settings that a field's type and range cannot say (raise ConfigError)."""

    def setting_fields(self) -> list[dataclasses.Field]:
        """The settings dataclass's fields (for `modweave list` and docs)."""
        return list(dataclasses.fields(self.settings_cls))

    def add_modality(self, model: "XModalLM", spec: "ModalitySpec", settings: dict[str, Any]) -> None:
        """Build modality `spec.name`'s path and the method's modules for it."""
        raise NotImplementedError

    def trainable(self, model: "XModalLM", modality: str, phase: str,
                  settings: dict[str, Any]) -> Iterable[nn.Parameter]:
        """The parameters that train in `phase` of `modality`'s step (everything else stays frozen)."""
        raise NotImplementedError

    def start_phase(self, model: "XModalLM", modality: str, phase: str, settings: dict[str, Any],
                    state: dict[str, Any]) -> None:
        """Structural changes at the start of a later phase (e.g. adding experts). `state` holds what
        earlier phases recorded; it is also how a saved model is rebuilt, so it must be JSON data."""

    def close_replayed_phase(self, model: "XModalLM", modality: str, phase: str, settings: dict[str, Any],
                             state: dict[str, Any]) -> None:
        """A reloaded phase closes: drop whatever `start_phase` keeps only while the phase trains
        (`end_phase` is not called: its `state` was recorded when the phase was trained)."""

    def end_phase(self, model: "XModalLM", modality: str, phase: str, settings: dict[str, Any],
                  data: Iterable[dict] | None = None) -> dict[str, Any]:
        """Work after a phase's training (e.g. statistics on held-out `data`); returns JSON-able state
        to record for this phase."""
        return {}

    def export(self, model: "XModalLM", modality: str, save_dir: Path) -> None:
        """Optional: extra files for other libraries, written by `checkpoint.write_stage` after each of
        `modality`'s stage files is written into checkpoint folder `save_dir` (lora: `peft/<modality>/`).
        Write atomically, only under names `checkpoint_target._is_library_file` accepts."""


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register `cls` under `cls.name` (a second method of that name is refused)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    METHODS.add(cls.name, cls)
    return cls


def get_method(name: str) -> Method:
    _load_builtin()
    return METHODS.get(name)()


def list_methods() -> list[str]:
    _load_builtin()
    return METHODS.names()


def _load_builtin() -> None:
    # importing registers them; every built-in method exists, so an ImportError here is a real error
    from . import ana, baselines, lora, moextend  # noqa: F401
