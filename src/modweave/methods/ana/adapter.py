"""PathWeave's per-site modules: the uni-modal adapter A^m, the cross-modal in-adapters F_i^m, and
`ModalityExperts`, which holds what modality m owns at one site and computes its experts' mixture
(which experts and how they mix follow the `in_adapters` / `gate` settings: see `AnaSettings`)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..merged_lowrank import merged_linear
from .gate import NoisyGate
from .gated_site import gated_site


class Adapter(nn.Module):
    """`A(x) = s * Up(Down(x))`: Down `Linear(d_in -> r)`, Up `Linear(r -> d_out)`, learnable scalar s = 1.

    Down's weight keeps PyTorch's kaiming-uniform (a = sqrt(5)) init; Up's weight and both biases are
    zero, so a new adapter outputs exactly 0 (the site starts as its frozen base projection)."""

    def __init__(self, d_in: int, d_out: int, rank: int):
        super().__init__()
        self.rank = rank
        self.down = nn.Linear(d_in, rank)
        self.up = nn.Linear(rank, d_out)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x [..., d_in]` -> `[..., d_out]`."""
        return self.scale * self.up(self.down(x))


class ModalityExperts(nn.Module):
    """What modality m owns at one site: `adapter` (A^m), `in_adapters[i]` (F_i^m, `Linear(r_i -> r_i)`)
    and `gate` (G^m). `sources`: the earlier ana modalities whose adapters A^i join m's experts here.

    Experts: `[expert_i for i in sources] + [A^m(x)]`, where `expert_i(x) = s_i * Up_i(F_i^m(Down_i(x)))`
    (Â_i^m) when `in_adapters` is on, else the frozen `A^i(x)` as it is. Output `sum_e w_e(x) expert_e(x)`
    with `w = g(x)` (the gate) when `gate` is on and there are >= 2 experts, else `w_e = 1/E` (a gate
    frozen at its zero init). The earlier adapters are read from the site's other `ModalityExperts`
    (frozen: they belong to their own steps); only this module's parameters train at step m."""

    #: device types where P's rows join the experts' Down matmul (see `forward`)
    fuse_base_devices: tuple[str, ...] = ("cpu",)

    def __init__(self, d_in: int, d_out: int, rank: int, sources: dict[str, int],
                 noise: bool = True, min_std: float = 0.01, *, in_adapters: bool = True, gate: bool = True):
        super().__init__()
        self.adapter = Adapter(d_in, d_out, rank)
        self._sources = tuple(sources)  # structure, not state: replayed from the stage's settings
        in_adapter_sources = sources if in_adapters else {}
        self.in_adapters = nn.ModuleDict({src: nn.Linear(r, r) for src, r in in_adapter_sources.items()})
        self.gate = NoisyGate(d_in, len(sources) + 1, noise, min_std) if sources and gate else None

    @property
    def sources(self) -> list[str]:
        """The earlier modalities whose adapters are experts of this one (arrival order)."""
        return list(self._sources)

    @property
    def num_experts(self) -> int:
        return len(self._sources) + 1

    def forward(self, x: torch.Tensor, site_experts: nn.ModuleDict, base: nn.Linear | None = None) -> torch.Tensor:
        """`x [..., d_in]` -> the mixture `sum_e w_e(x) expert_e(x)` `[..., d_out]`, or, given the site's
        frozen projection `base` (P), the site output `P(x) + mixture`.

        Computed from folded weights (see `folded`): with a gate, P's rows, every expert's Down (its
        in-adapter folded in) and the gate's logits are ONE matmul (x is read once), then a softmax and
        one `addmm` for every expert's Up added to P(x). Without a gate the experts are one low-rank map
        (fixed weights folded into Up), so the site is linear in x: one matmul with `P + U D`
        (methods/merged_lowrank.py); an untrained single adapter (U = 0) leaves it exactly P(x).
        With autograd on (and no autocast) a gated site runs the same forward ops through
        `gated_site.py`, whose hand-written backward forms only the trained weights' gradients."""
        # measured (benchmarks/ana_overhead.py): fusing P into the Down matmul helps on CPU, but on CUDA
        # the odd GEMM width (d_out + sum r + E) picks slower kernels, so there P runs on its own
        fuse = base is not None and self.gate is not None and x.device.type in self.fuse_base_devices
        if (base is not None and self.gate is not None and torch.is_grad_enabled()
                and not torch.is_autocast_enabled(x.device.type)):
            # the same forward ops and the same noise draw, with a hand-written backward (gated_site.py)
            down_w, down_b, up_w, _, ranks = self.folded(site_experts)
            noise = (torch.randn((*x.shape[:-1], len(ranks)), dtype=x.dtype, device=x.device)
                     if self.gate.noisy else None)
            return gated_site(x, base.weight, base.bias, down_w, down_b, up_w, noise, self.gate.min_std, ranks, fuse)
        down_w, down_b, up_w, up_b, ranks = self.folded(site_experts, base if fuse else None)
        if up_b is not None:  # no gate: sum_e w_e s_e Up_e(...), the w_e s_e folded into Up
            if base is not None:  # the site is linear in x: one matmul with P + U D (merged_lowrank.py)
                return merged_linear(x, base.weight, base.bias, down_w, down_b, up_w, up_b)
            return F.linear(F.linear(x, down_w, down_b), up_w, up_b)
        h = F.linear(x, down_w, down_b)
        num_e, total_r = len(ranks), sum(ranks)
        noisy = self.gate.noisy  # evaluation: no noise branch, W_n not in the matmul
        sizes = ([base.out_features] if fuse else []) + [total_r, num_e] + ([num_e] if noisy else [])
        parts = list(h.split(sizes, dim=-1))
        base_out = parts.pop(0) if fuse else None
        h, clean = parts[0], parts[1]
        g = self.gate.probs_from_logits(clean, parts[2]) if noisy else torch.softmax(clean, dim=-1)  # [..., E]
        repeats = ranks[0] if len(set(ranks)) == 1 else torch.tensor(ranks, device=g.device)
        # Up biases ride along as E extra input columns weighted by g: sum_e g_e s_e b_e in the same matmul
        mixed = torch.cat([h * g.repeat_interleave(repeats, dim=-1), g], dim=-1)  # [..., sum r + E]
        if base_out is None and base is not None:
            base_out = F.linear(x, base.weight, base.bias)
        if base_out is None:
            return F.linear(mixed, up_w)
        out = torch.addmm(base_out.reshape(-1, base_out.shape[-1]), mixed.reshape(-1, mixed.shape[-1]), up_w.t())
        return out.view(*base_out.shape)

    def _experts(self, site_experts: nn.ModuleDict) -> list[tuple[Adapter, nn.Linear | None]]:
        """`(A_e, F_e or None)` per expert, in expert order (the sources', then A^m's own)."""
        return [(site_experts[s].adapter, self.in_adapters[s] if s in self.in_adapters else None)
                for s in self._sources] + [(self.adapter, None)]

    def folded(self, site_experts: nn.ModuleDict, base: nn.Linear | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, list[int]]:
        """The experts as plain low-rank maps: `Â_i(x) = s_i Up_i(F_i(Down_i x)) = U_e (D_e x + c_e) + u_e`
        with `D_e = W_F Down_i.W`, `c_e = W_F Down_i.b + b_F`, `U_e = s_i Up_i.W`, `u_e = s_i Up_i.b`
        (an expert without in-adapter: `D_e = Down_i.W`, `c_e = Down_i.b`).

        Gated: `down_w [(d_out +) sum r + E (+E), d_in]` (P's rows first when `base` is given; gate rows
        `W_g` and, while noisy, `W_n` last), `down_b`, `up_w [d_out, sum r + E]` (the `u_e` as the last E
        columns), `up_b` None. Ungated: `down_w [sum r, d_in]`, `down_b`, `up_w [d_out, sum r]` (the
        `U_e / E`), `up_b = sum_e u_e / E` (one expert: exactly `D`, `c`, `U`, `u`). Last: the ranks.
        Without autograd the result is cached until a parameter changes (in-place updates bump
        `_version`, moves change `data_ptr`): inference then costs two matmuls per site. The same ops
        run with or without the cache, so outputs are identical either way."""
        params = self.__dict__.get("_fold_params")
        if params is None:  # the experts' structure is fixed once built: list their parameters once
            adapters = [a for a, _ in self._experts(site_experts)]
            params = tuple(p for a in adapters for p in a.parameters()) + tuple(self.parameters())
            self.__dict__["_fold_params"] = params
        noisy = self.gate is not None and self.gate.noisy
        caching = not torch.is_grad_enabled()  # training folds afresh every call: no key to build
        if caching:
            base_params = () if base is None else tuple(p for p in (base.weight, base.bias) if p is not None)
            # in-place updates (optimizer steps, load_state_dict) bump `_version`; a device/dtype move
            # gives every parameter new storage, the first one's included
            key = (noisy, params[0].data_ptr(), *(p._version for p in params),
                   *(v for p in base_params for v in (p.data_ptr(), p._version)))
            cache = self.__dict__.get("_folded")
            if cache is not None and cache[0] == key:
                return cache[1]
        experts = self._experts(site_experts)
        adapters = [a for a, _ in experts]
        downs_w, downs_b = [], []
        for a, f in experts:
            downs_w.append(a.down.weight if f is None else f.weight @ a.down.weight)
            downs_b.append(a.down.bias if f is None else F.linear(a.down.bias, f.weight, f.bias))
        ranks = [a.rank for a in adapters]
        if self.gate is None and len(adapters) == 1:
            a = self.adapter
            out = (downs_w[0], downs_b[0], a.scale * a.up.weight, a.scale * a.up.bias, ranks)
        elif self.gate is None:  # fixed weights 1/E, folded into every expert's Up
            w = 1.0 / len(adapters)
            scales = [a.scale * w for a in adapters]
            up_w = torch.cat([s * a.up.weight for s, a in zip(scales, adapters)], dim=1)
            up_b = torch.stack([s * a.up.bias for s, a in zip(scales, adapters)]).sum(0)
            out = (torch.cat(downs_w), torch.cat(downs_b), up_w, up_b, ranks)
        else:
            rows = [self.gate.w_g.weight] + ([self.gate.w_n.weight] if noisy else [])
            down_b = downs_b + [w.new_zeros(w.shape[0]) for w in rows]
            if base is not None:
                rows_b = base.bias if base.bias is not None else base.weight.new_zeros(base.out_features)
                downs_w, down_b = [base.weight, *downs_w], [rows_b, *down_b]
            down_w, down_b = torch.cat(downs_w + rows), torch.cat(down_b)
            up_w = torch.cat([a.scale * a.up.weight for a in adapters]
                             + [torch.stack([a.scale * a.up.bias for a in adapters], dim=1)], dim=1)
            out = (down_w, down_b, up_w, None, ranks)
        if caching:
            self.__dict__["_folded"] = (key, out)
        return out

    def expert_outputs(self, x: torch.Tensor, site_experts: nn.ModuleDict) -> torch.Tensor:
        """Each expert's output separately `[..., E, d_out]` (reference path for tests and inspection)."""
        outs = [a(x) if f is None else a.scale * a.up(f(a.down(x))) for a, f in self._experts(site_experts)]
        return torch.stack(outs, dim=-2)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The mixture weights `w(x) [..., E]`: the gate's (noisy in training), or the fixed 1/E."""
        if self.gate is not None:
            return self.gate(x)
        return x.new_full((*x.shape[:-1], self.num_experts), 1.0 / self.num_experts)
