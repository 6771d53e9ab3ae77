"""`lora` baseline: one named peft LoRA adapter per modality on the base connector's Q-Former
attention Linears (query / key / value / attention output) and its LLM projection `proj`.

The adapter in use follows `model.context.on_switch`: modality m's adapter while m's path runs; for
any other path (the base image path, modalities of other methods) adapters are disabled, so those
paths compute exactly the base connector. Trainable in m's step: m's LoRA matrices + m's path.
Stable (each adapter only ever sees its modality) but without transfer between modalities.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ..fields import setting
from . import Method, register_method

if TYPE_CHECKING:
    from ..config import ModalitySpec
    from ..model import XModalLM

# full-name regex over the connector's module names (peft full-matches a string target)
TARGET_MODULES = r".*(attention\.(query|key|value)|attention\.output\.dense)|proj"


def _lora_layers(connector: nn.Module) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [m for m in connector.modules() if isinstance(m, LoraLayer)]


def switch_adapter(connector: nn.Module, modality: str | None) -> None:
    """Activate `modality`'s adapter on every LoRA layer, or disable adapters when it has none.
    peft's switching also flips requires_grad; the trainer's trainable set is restored after it."""
    layers = _lora_layers(connector)
    if not layers:
        return
    flags = [(p, p.requires_grad) for p in connector.parameters()]
    has = modality is not None and modality in layers[0].lora_A
    for layer in layers:
        if has:
            layer.enable_adapters(True)  # re-activates the previous adapter (and its grads: restored below)
            layer.set_adapter(modality)
        else:
            layer.enable_adapters(False)
    for p, flag in flags:
        p.requires_grad_(flag)


@dataclass
class LoRASettings:
    """peft LoRA on the base connector's attention projections, one adapter per modality."""

    rank: int = setting(8, min=1)  # r
    alpha: float = setting(16, gt=0)  # lora_alpha (scale alpha / r)
    dropout: float = setting(0.0, min=0, max=1)


@register_method
class LoRA(Method):
    name = "lora"
    settings_cls = LoRASettings

    def add_modality(self, model: "XModalLM", spec: "ModalitySpec", settings: dict[str, Any]) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        from .lora_layer import MergedLoraLinear

        model.new_path(spec, connector=model.base_connector_name)
        connector = model.connectors[model.base_connector_name]
        config = LoraConfig(r=int(settings["rank"]), lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                            target_modules=TARGET_MODULES, bias="none")
        # peft's Linear with vanilla LoRA as one merged matmul (lora_layer.py); peft's keys and switching
        config._register_custom_module({nn.Linear: MergedLoraLinear})
        # peft names parameters `...lora_A.<adapter>.weight`: modality names are valid adapter names.
        # A second adapter on the same layers is the point here: silence peft's warning about it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(config, connector, adapter_name=spec.name)
        model.context.on_switch(lambda m: switch_adapter(connector, m), key="lora")  # one listener per model
        switch_adapter(connector, model.context.modality)
        for p in connector.parameters():
            p.requires_grad_(False)

    def trainable(self, model: "XModalLM", modality: str, phase: str,
                  settings: dict[str, Any]) -> Iterable[nn.Parameter]:
        yield from model.paths[modality].parameters()
        connector = model.connectors[model.base_connector_name]
        for name, p in connector.named_parameters():
            if "lora_" in name and f".{modality}." in f"{name}.":
                yield p

    def export(self, model: "XModalLM", modality: str, save_dir: Path) -> None:
        """CKPT/peft/<modality>/: the adapter as a standard PEFT folder (methods/lora_export.py)."""
        from .lora_export import export_peft

        export_peft(model, modality, save_dir)
