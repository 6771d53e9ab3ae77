"""The stage log's vocabulary: a `StageRecord` per trained stage, and the one naming rule.

A modality step through a method with one phase is one stage named after the modality (`audio`); a
method with several phases (MoExtend: align, extender, finetune) gives one stage per phase, named
`<modality>:<phase>` (`audio:extender`). The model, the trainer, `params` and `memory` all name and
walk stages through these functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageRecord:
    """One trained stage (a modality step, or one phase of it). JSON data, kept in the manifest."""

    name: str
    modality: str | None
    method: str
    phase: str = "train"
    spec: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    sha256: str | None = None


def stage_name(modality: str, phases: tuple[str, ...], phase: str) -> str:
    """The stage name of `phase` of `modality`'s step through a method with `phases`."""
    return modality if len(phases) == 1 else f"{modality}:{phase}"


def stage_names(modality: str, phases: tuple[str, ...]) -> list[str]:
    """Every stage of `modality`'s step, in order."""
    return [stage_name(modality, phases, p) for p in phases]


def walk_phases(model: Any, data: Any = None) -> Iterator[StageRecord]:
    """The phases of the modality step just opened on `model` (by `add_modality`), in order: yields
    each open phase's record; when the caller asks for the next, the phase is closed (`end_stage`,
    with `data` for methods that measure something) and the next phase opened."""
    record = model.stages[-1]
    while record is not None:
        yield record
        model.end_stage(data=data)
        record = model.next_phase()
