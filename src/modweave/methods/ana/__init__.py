"""PathWeave ("ana", Adapter-in-Adapter): grow the frozen base Q-Former into new modalities with
per-site uni-modal adapters, cross-modal in-adapters and MoE gates, switched by the sample's modality.

Modality m (the m-th modality added through `ana`) gets, at every adapter site (Q/K/V/O of every
self- and cross-attention layer of the base Q-Former, plus the LLM projection):
A^m, F_i^m for every earlier ana modality i, and G^m (m >= 2); plus its own path (query tokens copied
from the previous modality's, LayerNorm, `Linear(d_enc -> cross-attention width)` where widths differ).
Settings switch its cross-modal parts off (`in_adapters`, `gate`: the paper's ablation) and choose
the init (`init`, `in_adapter_init`), see `AnaSettings`.
Paper: "LLMs Can Evolve Continually on Modality for X-Modal Reasoning" (NeurIPS 2024); differences from
the authors' code: docs/fidelity.md. Modules: adapter.py, gate.py, init.py, inject.py.
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
from .init import ADAPTER_INITS, IN_ADAPTER_INITS, init_adapter, init_in_adapter
from .inject import SITE_KINDS, AdaptedLinear, adapted_sites, inject

if TYPE_CHECKING:
    from ...config import ModalitySpec
    from ...model import XModalLM

__all__ = ["Ana", "Adapter", "ModalityExperts", "NoisyGate", "AdaptedLinear", "adapted_sites", "inject",
           "SITE_KINDS", "modality_experts", "AnaSettings", "ADAPTER_INITS", "IN_ADAPTER_INITS", "init_adapter",
           "init_in_adapter"]

DEFAULT_GATE_NOISE = {"enabled": True, "min_std": 0.01}


@dataclass
class GateNoise:
    enabled: bool = True  # noisy gating in training mode
    min_std: float = setting(0.01, min=0)  # the noise floor


@dataclass
class AnaSettings:
    """`rank`: adapter bottleneck r; `sites`: site kinds among q, k, v, o, llm_proj; `gate_noise`;
    `in_adapters`, `gate`: the paper's ablation switches; `init`, `in_adapter_init`: how new adapters
    and in-adapters start.

    Experts of modality m at a site (S: the earlier ana modalities adapted there, in arrival order;
    P: the frozen projection; every expert is added to P(x)):
    - `in_adapters: true, gate: true` (full PathWeave): `[Â_i^m for i in S] + [A^m]`, mixed by G^m.
    - `in_adapters: false, gate: true`: `[A^i for i in S] + [A^m]` (the earlier adapters frozen, used as
      they are), mixed by G^m.
    - `in_adapters: true, gate: false`: `[Â_i^m for i in S] + [A^m]`, each weighted 1/E (E = |S| + 1):
      the full method with its gate frozen at its zero init, so the ablation isolates what the learned
      routing adds (a plain sum would also rescale every expert by E, growing with each step).
    - `in_adapters: false, gate: false`: uni-modal adapters only, `P(x) + A^m(x)` (the ablation base).
    With no earlier modality at a site (the first ana step) all four are `P(x) + A^m(x)`.

    `init` (A^m): `zero` (Down kaiming-uniform, Up and biases 0: a new path starts as the base) or
    `authors` (Down and Up weights N(0, 0.02), biases 0, as BERT's `init_weights` leaves the authors').
    `in_adapter_init` (F_i^m, only with `in_adapters: true`): `default` (a copy of F_i^(m-1) where the
    previous modality has one, else PyTorch's Linear init), `authors` (the same copy, else weight
    N(0, 0.02), bias 0: the authors train one F per source on from step to step) or `identity` (always
    F = I, bias 0, never copied: every earlier adapter starts as itself inside the new path).
    The authors' effective init is `init: authors, in_adapter_init: authors`. Every setting keeps
    earlier paths bit-identical (only step m's own modules train)."""

    rank: int = setting(8, min=1)
    sites: list[str] = setting(factory=lambda: list(SITE_KINDS))
    gate_noise: GateNoise = setting(factory=GateNoise)
    in_adapters: bool = True  # cross-modal in-adapters F_i^m inside the earlier adapters
    gate: bool = True  # MoE gate G^m over the experts (off: fixed weights 1/E)
    init: str = setting("zero", choices=ADAPTER_INITS)
    in_adapter_init: str = setting("default", choices=IN_ADAPTER_INITS)


@register_method
class Ana(Method):
    """Settings (`AnaSettings`): `rank` (adapter bottleneck r, 8), `sites` (site kinds among q, k, v, o,
    llm_proj; all by default), `gate_noise` (`enabled`: noisy gating in training mode; `min_std`: the
    0.01 noise floor), the ablation switches `in_adapters` / `gate` and the init rules `init` /
    `in_adapter_init` (their exact meaning: `AnaSettings`)."""

    name = "ana"
    settings_cls = AnaSettings

    def validate(self, settings: dict[str, Any], where: str) -> None:
        unknown = sorted(set(settings["sites"]) - set(SITE_KINDS))
        if unknown or not settings["sites"]:
            raise ConfigError(f"config key '{where}.sites': must be a non-empty list of {', '.join(SITE_KINDS)}"
                              + (f" (unknown: {unknown[0]})" if unknown else ""))
        if not settings["in_adapters"] and settings["in_adapter_init"] != "default":
            raise ConfigError(f"config key '{where}.in_adapter_init': has no effect with in_adapters: false "
                              f"(got '{settings['in_adapter_init']}')")

    def add_modality(self, model: "XModalLM", spec: "ModalitySpec", settings: dict[str, Any]) -> None:
        model.new_path(spec, connector=model.base_connector_name)
        noise = settings["gate_noise"]
        for site in inject(model, settings["sites"]).values():
            site.add_modality(spec.name, settings["rank"], bool(noise["enabled"]), float(noise["min_std"]),
                              in_adapters=settings["in_adapters"], gate=settings["gate"], init=settings["init"],
                              in_adapter_init=settings["in_adapter_init"])

    def trainable(self, model: "XModalLM", modality: str, phase: str,
                  settings: dict[str, Any]) -> Iterable[nn.Parameter]:
        yield from model.paths[modality].parameters()
        yield from (p for experts in modality_experts(model, modality).values() for p in experts.parameters())


def modality_experts(model: "XModalLM", modality: str) -> dict[str, ModalityExperts]:
    """Site name -> modality's `ModalityExperts` there (A^m, its F_i^m and G^m)."""
    return {name: site.ana[modality] for name, site in adapted_sites(model).items() if modality in site.ana}
