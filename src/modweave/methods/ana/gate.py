"""PathWeave's MoE gate G^m: token-level, dense, noisy softmax over the E experts of modality m."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class NoisyGate(nn.Module):
    """`g(x) = softmax(x W_g + [training] n * (softplus(x W_n) + min_std))`, n ~ N(0, 1).

    `W_g`, `W_n` are `[d_in, E]` (stored as bias-free `Linear(d_in -> E)`), both zero-initialised so a new
    gate is exactly uniform (1/E). The noise term exists only in training mode (`self.training`) and only
    when `noise` is on; there is no auxiliary / load-balancing loss."""

    def __init__(self, d_in: int, num_experts: int, noise: bool = True, min_std: float = 0.01):
        super().__init__()
        self.num_experts = num_experts
        self.noise, self.min_std = noise, min_std
        self.w_g = nn.Linear(d_in, num_experts, bias=False)
        self.w_n = nn.Linear(d_in, num_experts, bias=False)
        nn.init.zeros_(self.w_g.weight)
        nn.init.zeros_(self.w_n.weight)

    @property
    def noisy(self) -> bool:
        """Whether the noise branch runs now (training mode with noise on): callers skip `W_n` otherwise."""
        return self.training and self.noise

    def probs_from_logits(self, clean: torch.Tensor, raw_noise: torch.Tensor | None) -> torch.Tensor:
        """`clean = x W_g [..., E]`, `raw_noise = x W_n [..., E]` (None when not `noisy`) -> `g [..., E]`."""
        if raw_noise is not None:
            std = F.softplus(raw_noise) + self.min_std
            clean = clean + torch.randn_like(clean) * std
        return torch.softmax(clean, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x [..., d_in]` -> gate weights `[..., E]` (rows sum to 1)."""
        raw = self.w_n(x) if self.noisy else None
        return self.probs_from_logits(self.w_g(x), raw)

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, noise={self.noise}, min_std={self.min_std}"
