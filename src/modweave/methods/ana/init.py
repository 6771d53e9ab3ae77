"""How PathWeave's new modules start: the `init` rule of a uni-modal adapter A^m and the
`in_adapter_init` rule of a cross-modal in-adapter F_i^m (settings of `ana`, see `AnaSettings`).

- adapter `zero` (modweave's choice): Down kaiming-uniform, Up weight and both biases 0, so A^m(x) = 0.
- adapter `authors`: Down and Up weights N(0, 0.02), biases 0 (what BERT's `init_weights` leaves in the
  authors' code, run over their Q-Former after the adapters are built). s stays 1 under both.
- in-adapter `default`: PyTorch's Linear init; `identity`: F = I, bias 0, so Â_i^m = A^i at the start;
  `authors`: weight N(0, 0.02), bias 0. Whether an existing F_i^(m-1) is copied instead: `copies_previous`.
"""

from __future__ import annotations

import torch
from torch import nn

ADAPTER_INITS = ("zero", "authors")
IN_ADAPTER_INITS = ("default", "identity", "authors")
#: std of BERT's `initializer_range`, the authors' effective init of adapter and in-adapter weights
AUTHORS_STD = 0.02


def copies_previous(rule: str) -> bool:
    """Whether F_i^m starts as a copy of the previous modality's F_i^(m-1) where that exists.

    `default` and `authors` copy (the authors keep one F per source and train it on from step to step,
    so theirs starts where the last step left it; the per-pair copy keeps that start without changing
    the earlier path); `identity` never copies: its point is that every earlier adapter starts as itself."""
    return rule in ("default", "authors")


@torch.no_grad()
def init_adapter(adapter: nn.Module, rule: str) -> None:
    """Apply adapter rule `rule` to a freshly built `Adapter` (`zero` is how it is built: no change,
    and no random numbers drawn, so the default's RNG stream is the one it always was)."""
    if rule == "zero":
        return
    if rule != "authors":
        raise ValueError(f"ana: unknown adapter init '{rule}' (known: {', '.join(ADAPTER_INITS)})")
    for linear in (adapter.down, adapter.up):
        linear.weight.normal_(0.0, AUTHORS_STD)
        linear.bias.zero_()


@torch.no_grad()
def init_in_adapter(f: nn.Linear, rule: str) -> None:
    """Apply in-adapter rule `rule` to a fresh `Linear(r -> r)` (`default`: as PyTorch built it)."""
    if rule == "default":
        return
    if rule == "identity":
        f.weight.copy_(torch.eye(f.out_features, f.in_features, dtype=f.weight.dtype, device=f.weight.device))
    elif rule == "authors":
        f.weight.normal_(0.0, AUTHORS_STD)
    else:
        raise ValueError(f"ana: unknown in-adapter init '{rule}' (known: {', '.join(IN_ADAPTER_INITS)})")
    f.bias.zero_()
