"""MoExtend's load-balancing loss: every MoE layer's Switch term, padding masked, mean over ALL layers.

Per layer l with n_l routable experts (E + new ones in an extended layer, E elsewhere), over the real
tokens t (attention mask 1) of the last training forward:
  f_l[e] = #{(t, slot): top-k slot of t is e} / #t      (both/all top-k slots count: sum_e f_l = k)
  P_l[e] = mean_t p_l[t, e]                             (p: fp32 softmax of the router logits)
  term_l = n_l * sum_e f_l[e] P_l[e]
  loss   = coef * mean_l term_l                         (coef: the LLM config's router_aux_loss_coef)
This is the authors' rule (their copied Mixtral file computes one term per layer, each with its own
expert count in the one-hot, masks padding and divides by the layer count). transformers' built-in
`load_balancing_loss_func` masks padding the same way but pools f and P over all layers before the
product: with several layers the two differ (docs/fidelity.md).

The extended layers record their own E + n routing (`ExtendedMoeBlock.last_routing`); every other layer
(and an extended one whose new experts were routable in no row) is read from a forward hook on its
router, so nothing in the model's forward changes. The attention mask is read by a forward pre-hook on
the LLM, from the `attention_mask` keyword the model passes to it.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F

from .block import ExtendedMoeBlock
from .inject import moe_blocks


def balance_term(p: torch.Tensor, top_idx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One layer's Switch term without the coefficient: `n * sum_e f[e] P[e]`.

    `p [T, n]` routing probabilities, `top_idx [T, k]` chosen experts, `mask [T]` 1 for real tokens
    (None: every token counts). A batch with no real token gives 0."""
    n = p.shape[-1]
    p = p.float()
    if mask is None:
        mask = torch.ones(p.shape[0], dtype=torch.float32, device=p.device)
    mask = mask.reshape(-1).to(device=p.device, dtype=torch.float32)
    if mask.numel() != p.shape[0]:
        raise ValueError(f"balance loss: attention mask of {mask.numel()} tokens for {p.shape[0]} routed tokens")
    real = mask.sum().clamp(min=1.0)
    k = top_idx.shape[-1]
    counts = torch.zeros(n, dtype=torch.float32, device=p.device).scatter_add_(
        0, top_idx.reshape(-1), mask.repeat_interleave(k))  # [n] (real token, slot) pairs per expert
    prob = (p * mask.unsqueeze(-1)).sum(0)  # [n]
    return n * ((counts / real) * (prob / real)).sum()


class BalanceLoss:
    """The model's aux loss `moextend-balance` (`model.add_aux_loss`): `()` -> the balance loss of the
    last training forward (None in eval).

    Hooks every MoE layer's router (once per layer; the router module keeps its identity when the
    layer is extended later) and the LLM's forward (for the attention mask)."""

    def __init__(self, llm: nn.Module):
        self.llm = llm
        self.coef = float(getattr(llm.config.get_text_config(), "router_aux_loss_coef", 0.0) or 0.0)
        self.attention_mask: torch.Tensor | None = None
        self.routing: dict[int, tuple[torch.Tensor, torch.Tensor] | None] = {}
        self.handles = [llm.register_forward_pre_hook(self._capture_mask, with_kwargs=True)]
        for layer, (_, _, block) in moe_blocks(llm).items():
            self.handles.append(block.gate.register_forward_hook(functools.partial(self._record, layer)))

    def _capture_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.attention_mask = kwargs.get("attention_mask")

    def _record(self, layer: int, module: nn.Module, args: tuple, output: tuple) -> None:
        # (router logits [T, E], top-k indices [T, k]); kept only for training forwards
        self.routing[layer] = (output[0], output[2]) if module.training else None

    def layer_routing(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """`{layer: (p [T, n] fp32, top_idx [T, k])}` of the last training forward, every MoE layer."""
        out = {}
        for layer, (_, _, block) in moe_blocks(self.llm).items():
            if isinstance(block, ExtendedMoeBlock) and block.last_routing is not None:
                out[layer] = block.last_routing  # E + n experts
            elif (rec := self.routing.get(layer)) is not None:
                logits, idx = rec
                out[layer] = (F.softmax(logits.float(), dim=-1), idx)  # the router's own E experts
        return out

    def __call__(self) -> torch.Tensor | None:
        routing = self.layer_routing()
        if not routing:
            return None
        mask = self.attention_mask
        terms = [balance_term(p, idx, mask if mask is not None and mask.numel() == p.shape[0] else None)
                 for p, idx in routing.values()]
        return self.coef * torch.stack(terms).mean()
