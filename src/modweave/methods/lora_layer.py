"""peft's LoRA `Linear` with vanilla LoRA computed as one matmul: `x (W + s B A)^T + b`.

peft computes `W x + b + s B (A x)`: three matmuls forward, and autograd's weight gradient for B lays out
`[d_out, N] @ [N, r]`, slow on CPU. Without dropout (or in eval mode) the layer is linear in x, so
`methods/merged_lowrank.py` computes it with the merged weight and hand-laid rank-r gradients. Registered
through peft's custom-module dispatch (`LoraConfig._register_custom_module`), so adapters, state-dict keys,
`set_adapter` / `enable_adapters` and the exported PEFT folders are peft's own; every case this class does
not merge (dropout while training, DoRA and other variants, lora_bias, several active adapters, mixed
batches, merged or disabled adapters, dtypes that differ without autocast) runs peft's forward."""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

from .merged_lowrank import merged_linear


class MergedLoraLinear(PeftLoraLinear):
    """A peft LoRA Linear whose single active vanilla adapter runs as one merged matmul."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """`x [..., d_in]` -> `[..., d_out]`: `W x + b + s B A x`, as peft's, within float rounding."""
        name = None if args or kwargs else self._mergeable_adapter(x)
        if name is None:
            return super().forward(x, *args, **kwargs)
        base = self.get_base_layer()
        up = self.lora_B[name].weight * self.scaling[name]
        return merged_linear(x, base.weight, base.bias, self.lora_A[name].weight, None, up, None)

    def _mergeable_adapter(self, x: torch.Tensor) -> str | None:
        """The one active adapter when the output is exactly `x (W + s B A)^T + b` mathematically, else None."""
        if self.disable_adapters or self.merged or self.fan_in_fan_out:
            return None
        active = [a for a in self.active_adapters if a in self.lora_A]
        if len(active) != 1:
            return None
        name = active[0]
        if name in self.lora_variant or self.lora_bias.get(name, False):
            return None
        dropout = self.lora_dropout[name]
        if self.training and isinstance(dropout, nn.Dropout) and dropout.p > 0:
            return None  # the LoRA branch sees a different x than W does
        base = self.get_base_layer()
        if type(base) is not nn.Linear:  # e.g. a quantized base layer
            return None
        dtypes = {base.weight.dtype, self.lora_A[name].weight.dtype, self.lora_B[name].weight.dtype}
        # peft casts x to the adapter's dtype for its branch only; under autocast both run in its dtype
        if len(dtypes) > 1 or (x.dtype not in dtypes and not torch.is_autocast_enabled(x.device.type)):
            return None
        return name
