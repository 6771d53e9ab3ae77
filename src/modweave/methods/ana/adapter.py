"""PathWeave's per-site modules: the uni-modal adapter A^m, the cross-modal in-adapters F_i^m, and
`ModalityExperts`, which holds what modality m owns at one site and computes its experts' mixture."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .gate import NoisyGate


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
    """What modality m owns at one site: `adapter` (A^m), `in_adapters[i]` (F_i^m, `Linear(r_i -> r_i)`,
    one per earlier ana modality i adapted at this site) and `gate` (G^m, when there are >= 2 experts).

    Experts: `[Â_i^m(x) = s_i * Up_i(F_i^m(Down_i(x))) for i] + [A^m(x)]`; output `sum_e g_e(x) expert_e(x)`.
    The earlier adapters A^i are read from the site's other `ModalityExperts` (frozen: they belong to
    their own steps); only this module's parameters train at step m."""

    def __init__(self, d_in: int, d_out: int, rank: int, sources: dict[str, int],
                 noise: bool = True, min_std: float = 0.01):
        super().__init__()
        self.adapter = Adapter(d_in, d_out, rank)
        self.in_adapters = nn.ModuleDict({src: nn.Linear(r, r) for src, r in sources.items()})
        self.gate = NoisyGate(d_in, len(sources) + 1, noise, min_std) if sources else None

    @property
    def sources(self) -> list[str]:
        return list(self.in_adapters)

    def forward(self, x: torch.Tensor, site_experts: nn.ModuleDict) -> torch.Tensor:
        """`x [..., d_in]` -> the mixture `[..., d_out]` to add to the frozen projection's output.

        All experts' Down projections and the gate's `W_g` (and `W_n`, only while noisy) run as ONE
        matmul, and all Up projections as another: a site costs two extra matmuls whatever E is."""
        if self.gate is None:
            return self.adapter(x)
        adapters = [site_experts[s].adapter for s in self.in_adapters] + [self.adapter]
        ranks = [a.rank for a in adapters]
        num_e = len(adapters)
        gate_rows = [self.gate.w_g.weight] + ([self.gate.w_n.weight] if self.gate.noisy else [])
        weight = torch.cat([a.down.weight for a in adapters] + gate_rows)  # [sum r + E (+E), d_in]
        bias = torch.cat([a.down.bias for a in adapters] + [w.new_zeros(num_e) for w in gate_rows])
        z = F.linear(x, weight, bias)
        parts = list(z.split(ranks + [num_e] * len(gate_rows), dim=-1))
        raw_noise = parts.pop() if self.gate.noisy else None
        g = self.gate.probs_from_logits(parts.pop(), raw_noise)  # [..., E]
        hidden = [f(h) for f, h in zip(self.in_adapters.values(), parts[:-1])] + [parts[-1]]
        coef = g * torch.stack([a.scale for a in adapters])  # g_e * s_e: [..., E]
        mixed = torch.cat([h * coef[..., e: e + 1] for e, h in enumerate(hidden)], dim=-1)  # [..., sum r]
        up_w = torch.cat([a.up.weight for a in adapters], dim=1)  # [d_out, sum r]
        up_b = torch.stack([a.up.bias for a in adapters])  # [E, d_out]
        return F.linear(mixed, up_w) + coef @ up_b

    def expert_outputs(self, x: torch.Tensor, site_experts: nn.ModuleDict) -> torch.Tensor:
        """Each expert's output separately `[..., E, d_out]` (reference path for tests and inspection)."""
        outs = []
        for src, f in self.in_adapters.items():
            a = site_experts[src].adapter
            outs.append(a.scale * a.up(f(a.down(x))))
        outs.append(self.adapter(x))
        return torch.stack(outs, dim=-2)
