"""Checks of MoExtend's layer-selection settings: `layer_fraction`, `num_layers`, `layers`, `donors`.

`layers` (explicit decoder layer indices) skips the data-driven selection; `donors` may go with it,
either as a list parallel to `layers` (one expert per layer, or a list of `num_new_experts` experts)
or as a `{layer: experts}` mapping. Without `donors`, donors are measured on the extender phase's
held-out data (or are experts 0.. when there is none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...fields import ConfigError
from .inject import moe_blocks

if TYPE_CHECKING:
    from ...model import XModalLM


WHERE = "moextend settings"


def _error(where: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"config key '{where}.{key}': {message}")


def _ints(value: Any, key: str, where: str) -> list[int]:
    """`value` (an int or a list of ints) as a non-empty list of non-negative ints, or a ConfigError."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise _error(where, key, f"must be non-negative integers (got {value!r})")
    return items


def _layer_key(key: Any, where: str) -> int:
    if isinstance(key, str) and key.strip().isdigit():  # JSON mappings have string keys
        return int(key)
    return _ints(key, "donors", where)[0]


def check_selection_settings(s: dict[str, Any], where: str = WHERE) -> None:
    """Refuse malformed selection settings (ranges that need the model: `check_layers_in_model`)."""
    fraction = s.get("layer_fraction")
    if fraction is not None and not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
                                     and 0 < fraction <= 1):
        raise _error(where, "layer_fraction", f"must be in (0, 1] (got {fraction!r})")
    if s.get("num_layers") is not None and _ints(s["num_layers"], "num_layers", where)[0] < 1:
        raise _error(where, "num_layers", "must be at least 1")
    if s.get("layers") is not None:
        layers = _ints(s["layers"], "layers", where)
        dup = next((x for x in layers if layers.count(x) > 1), None)
        if dup is not None:
            raise _error(where, "layers", f"names layer {dup} twice")
    given_donors(s, where)


def given_donors(s: dict[str, Any], where: str = WHERE) -> dict[int, list[int]] | None:
    """settings['donors'] as `{layer: [expert, ...]}` (None if not set), lengths and uniqueness checked."""
    donors, layers = s.get("donors"), s.get("layers")
    n_new = int(s.get("num_new_experts", 1))
    if donors is None:
        return None
    if layers is None:
        raise _error(where, "donors", "needs settings 'layers' (the layers they belong to)")
    layers = _ints(layers, "layers", where)
    if isinstance(donors, dict):
        pairs = [(_layer_key(k, where), v) for k, v in donors.items()]
        stray = [x for x, _ in pairs if x not in layers]
        if stray:
            raise _error(where, "donors", f"names layer {stray[0]}, which is not in 'layers'")
    elif isinstance(donors, (list, tuple)):
        if len(donors) != len(layers):
            raise _error(where, "donors", f"has {len(donors)} entries for {len(layers)} 'layers' "
                                          "(one per layer, in the same order)")
        pairs = list(zip(layers, donors))
    else:
        raise _error(where, "donors", "must be a list (one per layer) or a {layer: experts} mapping")
    out: dict[int, list[int]] = {}
    for layer, experts in pairs:
        experts = _ints(experts, "donors", where)
        if len(experts) != n_new or len(set(experts)) != n_new:
            raise _error(where, "donors", f"layer {layer} needs {n_new} distinct expert(s) "
                                          f"(num_new_experts = {n_new}), got {experts}")
        out[layer] = experts
    return out


def check_layers_in_model(model: "XModalLM", s: dict[str, Any], where: str = WHERE) -> None:
    """Explicit `layers` / `donors` must name MoE layers of the LLM and original experts of those layers."""
    if s.get("layers") is None:
        return
    blocks = moe_blocks(model.llm)
    donors = given_donors(s, where) or {}
    for layer in _ints(s["layers"], "layers", where):
        if layer not in blocks:
            raise _error(where, "layers", f"names layer {layer}, which has no MoE block "
                                          f"(MoE layers: {', '.join(map(str, blocks))})")
        n_experts = blocks[layer][2].gate.weight.shape[0]
        bad = [e for e in donors.get(layer, []) if e >= n_experts]
        if bad:
            raise _error(where, "donors", f"names expert {bad[0]} in layer {layer}, which has "
                                          f"{n_experts} original experts (0..{n_experts - 1})")
