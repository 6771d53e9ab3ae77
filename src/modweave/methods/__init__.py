"""Methods: one registered unit each, saying what is added and what trains when a modality arrives.

A method subclasses `Method`, sets `name` (and `phases` when a step has several), and implements
`add_modality` (build the new path and its modules) and `trainable` (what trains in a phase). The
model and trainer know nothing else about it. Register with `@register_method`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

if TYPE_CHECKING:
    from ..config import ModalitySpec
    from ..model import XModalLM

from ..registry import Registry

METHODS: "Registry[type[Method]]" = Registry("method")


class Method:
    """Base class. Subclasses are stateless: everything they build lives in the model."""

    name: ClassVar[str] = ""
    phases: ClassVar[tuple[str, ...]] = ("train",)
    #: settings this method accepts, with defaults (unknown keys are refused by `check_settings`)
    defaults: ClassVar[dict[str, Any]] = {}

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise ValueError(f"method '{self.name}': unknown setting '{unknown[0]}' "
                             f"(known: {', '.join(self.defaults) or 'none'})")
        return {**self.defaults, **settings}

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

    def end_phase(self, model: "XModalLM", modality: str, phase: str, settings: dict[str, Any],
                  data: Iterable[dict] | None = None) -> dict[str, Any]:
        """Work after a phase's training (e.g. statistics on held-out `data`); returns JSON-able state
        to record for this phase."""
        return {}


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
