"""Expert-usage statistics and layer selection (MoExtend's "extender" step), usable outside the trainer.

usage[l, e] = fraction of (real token, top-k slot) pairs that layer l's router sends to expert e.
Layer score s_l = sample std over experts of (f_tuned - f_orig); the floor(L * fraction) highest-scoring
layers are extended (`layer_count`).
Donor of a layer = its MOST used expert(s) under the tuned router (descending order).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from ...training.distributed import all_reduce_sum, rank_share
from .inject import moe_blocks

if TYPE_CHECKING:
    from ...model import XModalLM

DONOR_RULES = ("most_used", "most_increased")


@torch.no_grad()
def expert_usage(model: "XModalLM", batches: Iterable[dict[str, Any]]) -> dict[int, torch.Tensor]:
    """Per-layer usage fractions `{layer: [E]}` of the original routers (`gate`) over `batches`
    (collated batches; only attention-mask tokens count, both/all top-k slots count).

    Run by every rank of a distributed run (the trainer's `end_stage`, inside `across_ranks`), each rank
    counts its share of the batches and the counts are summed over ranks: every rank gets the fractions
    of all batches (integer counts in float64: the same bits as one process counting them all)."""
    blocks = moe_blocks(model.llm)
    counts = {layer: torch.zeros(blk.gate.weight.shape[0], dtype=torch.float64) for layer, (_, _, blk) in blocks.items()}
    current_mask: list[torch.Tensor] = []

    def hook(layer: int):
        def fn(module, args, output):
            idx = output[2]  # [T, k]
            keep = current_mask[0].reshape(-1).to(idx.device)
            if keep.numel() != idx.shape[0]:  # e.g. a cached decoding step: cannot align, skip
                return
            onehot = torch.nn.functional.one_hot(idx[keep], counts[layer].numel())
            counts[layer] += onehot.sum((0, 1)).to(torch.float64).cpu()
        return fn

    handles = [blk.gate.register_forward_hook(hook(layer)) for layer, (_, _, blk) in blocks.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in rank_share(list(batches)):
            embeds, attn, _ = model.embed_batch({**batch, "labels": None})
            current_mask[:] = [attn.bool()]
            with model.context.samples(model.row_modalities(batch)):
                model.llm(inputs_embeds=embeds, attention_mask=attn, use_cache=False)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if counts:  # one collective for every layer
        layers = list(counts)
        summed = all_reduce_sum(torch.cat([counts[layer] for layer in layers]))
        counts = dict(zip(layers, summed.split([counts[layer].numel() for layer in layers])))
    return {layer: (c / c.sum().clamp(min=1)).float() for layer, c in counts.items()}


def layer_scores(usage_orig: dict[int, torch.Tensor], usage_tuned: dict[int, torch.Tensor]) -> dict[int, float]:
    """s_l = sample standard deviation over experts of (f_tuned - f_orig)."""
    return {layer: float((usage_tuned[layer] - usage_orig[layer]).std(unbiased=True)) for layer in usage_orig}


def pick_donors(usage_orig: torch.Tensor, usage_tuned: torch.Tensor, count: int, rule: str = "most_used") -> list[int]:
    """The `count` donor experts of one layer: `most_used` (under the tuned router) or `most_increased`
    (largest f_tuned - f_orig); ties go to the lower expert index."""
    if rule == "most_used":
        key = usage_tuned
    elif rule == "most_increased":
        key = usage_tuned - usage_orig
    else:
        raise ValueError(f"unknown donor rule '{rule}' (known: {', '.join(DONOR_RULES)})")
    order = sorted(range(key.numel()), key=lambda e: (-float(key[e]), e))  # descending
    return order[:count]


def layer_count(total: int, fraction: float | None = 0.5, num_layers: int | None = None) -> int:
    """How many of `total` MoE layers to extend: `num_layers` if given, else floor(total * fraction)
    (at least 1): the authors' `L // 2` for fraction 0.5, so 33 layers give 16, not 17."""
    if num_layers is None:
        fraction = 0.5 if fraction is None else float(fraction)
        # the epsilon keeps products such as 100 * 0.29 = 28.999999999999996 at their decimal value
        num_layers = max(1, math.floor(total * fraction + 1e-9))
    if not 1 <= num_layers <= total:
        raise ValueError(f"moextend: cannot extend {num_layers} of {total} MoE layers (settings 'num_layers')")
    return int(num_layers)


def select_layers(usage_orig: dict[int, torch.Tensor] | torch.Tensor, usage_tuned: dict[int, torch.Tensor] | torch.Tensor,
                  fraction: float | None = 0.5, num_layers: int | None = None, num_donors: int = 1,
                  donor_rule: str = "most_used") -> tuple[list[int], dict[int, list[int]], dict[int, float]]:
    """Choose the layers to extend. Usage as `{layer: [E]}` or a `[L, E]` tensor (layer = row index).
    Returns `(layers sorted ascending, {layer: donors}, {layer: score})`; `num_layers` wins over `fraction`
    (count rule: `layer_count`)."""
    if isinstance(usage_orig, torch.Tensor):
        usage_orig = dict(enumerate(usage_orig))
    if isinstance(usage_tuned, torch.Tensor):
        usage_tuned = dict(enumerate(usage_tuned))
    scores = layer_scores(usage_orig, usage_tuned)
    num_layers = layer_count(len(scores), fraction, num_layers)
    ranked = sorted(scores, key=lambda layer: (-scores[layer], layer))
    layers = sorted(ranked[:num_layers])
    donors = {layer: pick_donors(usage_orig[layer], usage_tuned[layer], num_donors, donor_rule) for layer in layers}
    return layers, donors, scores
