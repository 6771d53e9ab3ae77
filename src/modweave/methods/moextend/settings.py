"""Checks of MoExtend's layer-selection settings: `layer_fraction`, `num_layers`, `layers`, `donors`.

`layers` (explicit decoder layer indices) skips the data-driven selection; `donors` may go with it,
either as a list parallel to `layers` (one expert per layer, or a list of `num_new_experts` experts)
or as a `{layer: experts}` mapping. Without `donors`, donors are measured on the extender phase's
held-out data (or are experts 0.. when there is none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .inject import moe_blocks

if TYPE_CHECKING:
    from ...model import XModalLM


def _ints(value: Any, key: str) -> list[int]:
    """`value` (an int or a list of ints) as a non-empty list of non-negative ints, or a ValueError."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise ValueError(f"moextend: settings '{key}' must be non-negative integers (got {value!r})")
    return items


def _layer_key(key: Any) -> int:
    if isinstance(key, str) and key.strip().isdigit():  # JSON mappings have string keys
        return int(key)
    return _ints(key, "donors")[0]


def check_selection_settings(s: dict[str, Any]) -> None:
    """Refuse malformed selection settings (ranges that need the model: `check_layers_in_model`)."""
    fraction = s.get("layer_fraction")
    if fraction is not None and not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
                                     and 0 < fraction <= 1):
        raise ValueError(f"moextend: settings 'layer_fraction' must be in (0, 1] (got {fraction!r})")
    if s.get("num_layers") is not None and _ints(s["num_layers"], "num_layers")[0] < 1:
        raise ValueError("moextend: settings 'num_layers' must be at least 1")
    if s.get("layers") is not None:
        layers = _ints(s["layers"], "layers")
        dup = next((x for x in layers if layers.count(x) > 1), None)
        if dup is not None:
            raise ValueError(f"moextend: settings 'layers' names layer {dup} twice")
    given_donors(s)


def given_donors(s: dict[str, Any]) -> dict[int, list[int]] | None:
    """settings['donors'] as `{layer: [expert, ...]}` (None if not set), lengths and uniqueness checked."""
    donors, layers = s.get("donors"), s.get("layers")
    n_new = int(s.get("num_new_experts", 1))
    if donors is None:
        return None
    if layers is None:
        raise ValueError("moextend: settings 'donors' needs settings 'layers' (the layers they belong to)")
    layers = _ints(layers, "layers")
    if isinstance(donors, dict):
        pairs = [(_layer_key(k), v) for k, v in donors.items()]
        stray = [x for x, _ in pairs if x not in layers]
        if stray:
            raise ValueError(f"moextend: settings 'donors' names layer {stray[0]}, which is not in 'layers'")
    elif isinstance(donors, (list, tuple)):
        if len(donors) != len(layers):
            raise ValueError(f"moextend: settings 'donors' has {len(donors)} entries for {len(layers)} 'layers' "
                             "(one per layer, in the same order)")
        pairs = list(zip(layers, donors))
    else:
        raise ValueError("moextend: settings 'donors' must be a list (one per layer) or a {layer: experts} mapping")
    out: dict[int, list[int]] = {}
    for layer, experts in pairs:
        experts = _ints(experts, "donors")
        if len(experts) != n_new or len(set(experts)) != n_new:
            raise ValueError(f"moextend: settings 'donors' for layer {layer} must be {n_new} distinct expert(s) "
                             f"(num_new_experts = {n_new}), got {experts}")
        out[layer] = experts
    return out


def check_layers_in_model(model: "XModalLM", s: dict[str, Any]) -> None:
    """Explicit `layers` / `donors` must name MoE layers of the LLM and original experts of those layers."""
    if s.get("layers") is None:
        return
    blocks = moe_blocks(model.llm)
    donors = given_donors(s) or {}
    for layer in _ints(s["layers"], "layers"):
        if layer not in blocks:
            raise ValueError(f"moextend: settings 'layers' names layer {layer}, which has no MoE block "
                             f"(MoE layers: {', '.join(map(str, blocks))})")
        n_experts = blocks[layer][2].gate.weight.shape[0]
        bad = [e for e in donors.get(layer, []) if e >= n_experts]
        if bad:
            raise ValueError(f"moextend: settings 'donors' names expert {bad[0]} in layer {layer}, which has "
                             f"{n_experts} original experts (0..{n_experts - 1})")
