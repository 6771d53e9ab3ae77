"""The `lora` baseline's adapters as standard PEFT folders, one per modality.

CKPT/peft/<modality>/adapter_config.json + adapter_model.safetensors, the layout
`peft.PeftModel.save_pretrained` writes (keys `base_model.model.<module>.lora_A.weight`, the adapter
name dropped), so `PeftModel.from_pretrained(base_connector, CKPT/peft/<modality>)` puts modality m's
adapter onto a copy of the base connector (its Q-Former + `proj`) and computes what modweave's
connector computes on m's path. The path's own parts (input norm / projection, query tokens) live in
the checkpoint, not in the adapter: they are the connector's inputs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

if TYPE_CHECKING:
    from ..model import XModalLM

PEFT_DIR = "peft"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def adapter_state(connector: torch.nn.Module, modality: str) -> dict[str, torch.Tensor]:
    """`modality`'s LoRA matrices on `connector`, named as a saved PEFT adapter names them."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, mod in connector.named_modules():
        if isinstance(mod, LoraLayer) and modality in mod.lora_A:
            for part in ("lora_A", "lora_B"):
                w = getattr(mod, part)[modality].weight
                out[f"base_model.model.{name}.{part}.weight"] = w.detach().to("cpu").contiguous().clone()
    return out


def adapter_config(settings: dict[str, Any]) -> Any:
    """The `peft.LoraConfig` the lora baseline injected with (same targets, rank, alpha, dropout)."""
    from peft import LoraConfig

    from .lora import TARGET_MODULES

    return LoraConfig(r=int(settings["rank"]), lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                      target_modules=TARGET_MODULES, bias="none")


def export_peft(model: "XModalLM", modality: str, save_dir: Path) -> Path | None:
    """Write `save_dir/peft/<modality>/` (into a temp folder, then swapped in); None when `modality`
    has no lora adapter on the base connector."""
    connector = model.connectors[model.base_connector_name]
    tensors = adapter_state(connector, modality)
    if not tensors:
        return None
    settings = next(s.settings for s in model.stages if s.modality == modality and s.method == "lora")
    root = Path(save_dir) / PEFT_DIR
    root.mkdir(parents=True, exist_ok=True)
    tmp, final = root / f".{modality}.tmp", root / modality
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    config = adapter_config(settings)
    config.save_pretrained(str(tmp))
    save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
    shutil.rmtree(final, ignore_errors=True)  # only ever a folder this function wrote (peft/ is ours)
    tmp.rename(final)
    return final
