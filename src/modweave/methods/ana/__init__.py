"""PathWeave ("ana", Adapter-in-Adapter): grow the frozen base Q-Former into new modalities with
per-site uni-modal adapters, cross-modal in-adapters and MoE gates, switched by the sample's modality.

Modality m (the m-th modality added through `ana`) gets, at every adapter site (Q/K/V/O of every
self- and cross-attention layer of the base Q-Former, plus the LLM projection):
A^m, F_i^m for every earlier ana modality i, and G^m (m >= 2); plus its own path (query tokens copied
from the previous modality's, LayerNorm, `Linear(d_enc -> cross-attention width)` where widths differ).
Spec: /work/shared/spec/pathweave.md. Modules: adapter.py, gate.py, inject.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from torch import nn

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


@register_method
class Ana(Method):
    """Settings: `rank` (adapter bottleneck r, 8), `sites` (site kinds among q, k, v, o, llm_proj; all by
    default), `gate_noise` (`enabled`: noisy gating in training mode; `min_std`: the 0.01 noise floor)."""

    name = "ana"
    defaults = {"rank": 8, "sites": list(SITE_KINDS), "gate_noise": dict(DEFAULT_GATE_NOISE)}

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        noise = settings.get("gate_noise") or {}
        if not isinstance(noise, dict) or set(noise) - set(DEFAULT_GATE_NOISE):
            raise ValueError(f"method 'ana': gate_noise must be a mapping with keys "
                             f"{', '.join(DEFAULT_GATE_NOISE)}, got {noise!r}")
        out = super().check_settings(settings)
        out["gate_noise"] = {**DEFAULT_GATE_NOISE, **noise}
        out["sites"] = list(out["sites"])
        if not isinstance(out["rank"], int) or out["rank"] < 1:
            raise ValueError(f"method 'ana': rank must be a positive integer, got {out['rank']!r}")
        unknown = sorted(set(out["sites"]) - set(SITE_KINDS))
        if unknown or not out["sites"]:
            raise ValueError(f"method 'ana': sites must be a non-empty list of {', '.join(SITE_KINDS)}"
                             + (f" (unknown: {unknown[0]})" if unknown else ""))
        return out

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
