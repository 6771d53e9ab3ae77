"""PathWeave ("ana", Adapter-in-Adapter): grow the frozen base Q-Former into new modalities with
per-site uni-modal adapters, cross-modal in-adapters and MoE gates, switched by the sample's modality.

Modality m (the m-th modality added through `ana`) gets, at every adapter site (Q/K/V/O of every
self- and cross-attention layer of the base Q-Former, plus the LLM projection):
A^m, F_i^m for every earlier ana modality i, and G^m (m >= 2); plus its own path (query tokens copied
from the previous modality's, LayerNorm, `Linear(d_enc -> cross-attention width)` where widths differ).
Paper: "LLMs Can Evolve Continually on Modality for X-Modal Reasoning" (NeurIPS 2024); differences from
the authors' code: docs/fidelity.md. Modules: adapter.py,
gate.py, inject.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from ...fields import ConfigError, setting
from .. import Method, register_method
from .adapter import Adapter, ModalityExperts
from .gate import NoisyGate
from .inject import SITE_KINDS, AdaptedLinear, adapted_sites, inject

if TYPE_CHECKING:
    from ...config import ModalitySpec
    from ...model import XModalLM

__all__ = ["Ana", "Adapter", "ModalityExperts", "NoisyGate", "AdaptedLinear", "adapted_sites", "inject",
           "SITE_KINDS", "modality_experts"]

DEFAULT_GATE_NOISE = {"enabled": True, "min_std": 0.01}


@dataclass
class GateNoise:
    enabled: bool = True  # noisy gating in training mode
    min_std: float = setting(0.01, min=0)  # the noise floor


@dataclass
class AnaSettings:
    """`rank`: adapter bottleneck r; `sites`: site kinds among q, k, v, o, llm_proj; `gate_noise`."""

    rank: int = setting(8, min=1)
    sites: list[str] = setting(factory=lambda: list(SITE_KINDS))
    gate_noise: GateNoise = setting(factory=GateNoise)


@register_method
class Ana(Method):
    """Settings (`AnaSettings`): `rank` (adapter bottleneck r, 8), `sites` (site kinds among q, k, v, o,
    llm_proj; all by default), `gate_noise` (`enabled`: noisy gating in training mode; `min_std`: the
    0.01 noise floor)."""

    name = "ana"
    settings_cls = AnaSettings

    def validate(self, settings: dict[str, Any], where: str) -> None:
        unknown = sorted(set(settings["sites"]) - set(SITE_KINDS))
        if unknown or not settings["sites"]:
            raise ConfigError(f"config key '{where}.sites': must be a non-empty list of {', '.join(SITE_KINDS)}"
                              + (f" (unknown: {unknown[0]})" if unknown else ""))

    def add_modality(self, model: "XModalLM", spec: "ModalitySpec", settings: dict[str, Any]) -> None:
        model.new_path(spec, connector=model.base_connector_name)
        noise = settings["gate_noise"]
        for site in inject(model, settings["sites"]).values():
            site.add_modality(spec.name, settings["rank"], bool(noise["enabled"]), float(noise["min_std"]))

    def trainable(self, model: "XModalLM", modality: str, phase: str,
                  settings: dict[str, Any]) -> Iterable[nn.Parameter]:
        yield from model.paths[modality].parameters()
        yield from (p for experts in modality_experts(model, modality).values() for p in experts.parameters())


def modality_experts(model: "XModalLM", modality: str) -> dict[str, ModalityExperts]:
    """Site name -> modality's `ModalityExperts` there (A^m, its F_i^m and G^m)."""
    return {name: site.ana[modality] for name, site in adapted_sites(model).items() if modality in site.ana}
