"""Injecting PathWeave's adapters: the frozen `nn.Linear` at each adapter site becomes an
`AdaptedLinear` that keeps the very same weight/bias Parameters (so state-dict keys, and the outputs of
every path without adapters, are unchanged bit for bit) and routes by `model.context.modality`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from ...context import PathContext
from .adapter import ModalityExperts
from .init import copies_previous, init_adapter, init_in_adapter

if TYPE_CHECKING:
    from ...model import XModalLM

#: site kinds -> suffixes of the Linear modules' names inside the Q-Former (self- and cross-attention)
QFORMER_SITES = {
    "q": ("attention.attention.query",),
    "k": ("attention.attention.key",),
    "v": ("attention.attention.value",),
    "o": ("attention.output.dense",),  # also matches crossattention.output.dense, not the FFN's output.dense
}
LLM_PROJ = "llm_proj"
SITE_KINDS = (*QFORMER_SITES, LLM_PROJ)


class AdaptedLinear(nn.Linear):
    """A frozen projection P plus per-modality experts: `y = P(x) + experts[m](x)` for the active
    modality m, and exactly `P(x)` for a modality with no experts here (the base image path, `frozen`
    paths, any other method's paths). `weight`/`bias` ARE the wrapped Linear's Parameters."""

    def __init__(self, base: nn.Linear, context: PathContext):
        nn.Module.__init__(self)  # not nn.Linear.__init__: the base Linear's parameters are reused
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.context = context  # plain object (not a Module): read at every call
        self.ana = nn.ModuleDict()  # modality -> ModalityExperts, in arrival order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        modality = self.context.modality
        if modality is None or modality not in self.ana:
            return F.linear(x, self.weight, self.bias)  # what nn.Linear.forward computes
        # `.forward` directly: this sits on every projection of the Q-Former, module-call overhead shows
        return self.ana[modality].forward(x, self.ana, base=self)

    def add_modality(self, modality: str, rank: int, noise: bool = True, min_std: float = 0.01, *,
                     in_adapters: bool = True, gate: bool = True, init: str = "zero",
                     in_adapter_init: str = "default") -> ModalityExperts:
        """Create modality's experts here (settings as in `AnaSettings`): A^m (`init`); unless both
        `in_adapters` and `gate` are off, every earlier modality at this site as an expert, through an
        F_i^m when `in_adapters` is on (a copy of F_i^(m-1) where the previous modality has one and
        `in_adapter_init` copies, else a fresh one under `in_adapter_init`); G^m when `gate` is on."""
        if modality in self.ana:
            raise ValueError(f"modality '{modality}' already has adapters at this site")
        previous = self.ana[list(self.ana)[-1]] if len(self.ana) else None
        cross_modal = in_adapters or gate  # neither: uni-modal adapters only (the paper's ablation base)
        sources = {src: experts.adapter.rank for src, experts in self.ana.items()} if cross_modal else {}
        device, dtype = self.weight.device, self.weight.dtype
        with torch.device(device):
            experts = ModalityExperts(self.in_features, self.out_features, rank, sources, noise, min_std,
                                      in_adapters=in_adapters, gate=gate)
        experts.to(dtype)
        # after construction: the default rules draw no random numbers, so their RNG stream is unchanged
        init_adapter(experts.adapter, init)
        with torch.no_grad():
            for src, f in experts.in_adapters.items():
                if copies_previous(in_adapter_init) and previous is not None and src in previous.in_adapters:
                    f.load_state_dict(previous.in_adapters[src].state_dict())
                else:
                    init_in_adapter(f, in_adapter_init)
        self.ana[modality] = experts
        return experts

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, modalities={list(self.ana)}"


def _site_kind(name: str) -> str | None:
    for kind, suffixes in QFORMER_SITES.items():
        if name.endswith(suffixes):
            return kind
    return None


def site_names(connector: nn.Module, kinds: list[str]) -> list[str]:
    """Names (relative to `connector`) of the Linear modules that are adapter sites of `kinds`."""
    unknown = sorted(set(kinds) - set(SITE_KINDS))
    if unknown:
        raise ValueError(f"ana: unknown site '{unknown[0]}' (known: {', '.join(SITE_KINDS)})")
    qformer = getattr(connector, "qformer", None)
    if qformer is None or not hasattr(connector, "proj"):
        raise ValueError("ana adapts a Q-Former connector (with `.qformer` and `.proj`); this one has none")
    names = [f"qformer.{n}" for n, m in qformer.named_modules()
             if isinstance(m, nn.Linear) and _site_kind(n) in kinds]
    if LLM_PROJ in kinds:
        names.append("proj")
    return names


def inject(model: "XModalLM", kinds: list[str]) -> dict[str, AdaptedLinear]:
    """Wrap the base connector's sites of `kinds` (idempotent: wrapped sites are kept) -> name -> site."""
    connector = model.connectors[model.base_connector_name]
    sites: dict[str, AdaptedLinear] = {}
    for name in site_names(connector, kinds):
        parent_name, _, attr = name.rpartition(".")
        parent = connector.get_submodule(parent_name) if parent_name else connector
        module = getattr(parent, attr)
        if not isinstance(module, AdaptedLinear):
            module = AdaptedLinear(module, model.context)
            setattr(parent, attr, module)
        sites[name] = module
    return sites


def adapted_sites(model: "XModalLM") -> dict[str, AdaptedLinear]:
    """Every injected site of the base connector, by name."""
    connector = model.connectors[model.base_connector_name]
    return {n: m for n, m in connector.named_modules() if isinstance(m, AdaptedLinear)}
