"""Finding a causal LM's sparse-MoE blocks and putting `ExtendedMoeBlock`s in their place."""

from __future__ import annotations

import re

from torch import nn

from .block import ExtendedMoeBlock


def _is_moe_block(module: nn.Module) -> bool:
    gate = getattr(module, "gate", None)
    return (isinstance(gate, nn.Module) and hasattr(gate, "weight")
            and hasattr(getattr(module, "experts", None), "gate_up_proj"))


def moe_blocks(llm: nn.Module) -> dict[int, tuple[nn.Module, str, nn.Module]]:
    """`{layer: (parent, attribute, block)}` for every sparse-MoE block (extended ones included);
    `layer` is the decoder layer index (`...layers.<i>...`), or the block's ordinal otherwise."""
    found: dict[int, tuple[nn.Module, str, nn.Module]] = {}
    modules = dict(llm.named_modules())
    for name, module in modules.items():
        if not (_is_moe_block(module) or isinstance(module, ExtendedMoeBlock)):
            continue
        parent_name, _, attr = name.rpartition(".")
        match = re.search(r"layers\.(\d+)(\.|$)", name)
        layer = int(match.group(1)) if match else len(found)
        if layer in found:
            raise ValueError(f"two MoE blocks in layer {layer}: cannot number them")
        found[layer] = (modules[parent_name], attr, module)
    return dict(sorted(found.items()))


def extend_layer(llm: nn.Module, layer: int, context=None) -> ExtendedMoeBlock:
    """The `ExtendedMoeBlock` of `layer`, wrapping the original block in place on first use."""
    blocks = moe_blocks(llm)
    if layer not in blocks:
        raise ValueError(f"layer {layer} has no sparse-MoE block (MoE layers: {', '.join(map(str, blocks))})")
    parent, attr, block = blocks[layer]
    if isinstance(block, ExtendedMoeBlock):
        return block
    wrapped = ExtendedMoeBlock(block, layer, context=context)
    setattr(parent, attr, wrapped)
    return wrapped


def extended_blocks(llm: nn.Module) -> list[ExtendedMoeBlock]:
    return [m for m in llm.modules() if isinstance(m, ExtendedMoeBlock)]
