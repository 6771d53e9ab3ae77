"""Baselines registered like the methods: `frozen`, `finetune`, `separate` (and `lora`, see lora.py).

- `frozen`: the new modality reuses the base connector untouched; only its input layers train
  (LayerNorm, encoder projection, query tokens). The lower bound, and PathWeave minus adapters.
- `finetune`: the shared base connector trains on each new modality in turn (the forgetting reference).
- `separate`: a full copy of the base connector per modality, trained alone (the paper's upper bound).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from torch import nn

from . import Method, register_method

if TYPE_CHECKING:
    from ..config import ModalitySpec
    from ..model import XModalLM


@register_method
class Frozen(Method):
    name = "frozen"

    def add_modality(self, model: "XModalLM", spec: "ModalitySpec", settings: dict[str, Any]) -> None:
        model.new_path(spec, connector=model.base_connector_name)

    def trainable(self, model: "XModalLM", modality: str, phase: str,
                  settings: dict[str, Any]) -> Iterable[nn.Parameter]:
        return model.paths[modality].parameters()


@register_method
class Finetune(Frozen):
    name = "finetune"

    def keeps_earlier_paths(self, settings: dict[str, Any]) -> bool:
        return False  # it trains the shared connector: the baseline that forgets

    def trainable(self, model: "XModalLM", modality: str, phase: str,
                  settings: dict[str, Any]) -> Iterable[nn.Parameter]:
        yield from model.paths[modality].parameters()
        yield from model.connectors[model.base_connector_name].parameters()


@register_method
class Separate(Method):
    name = "separate"

    def add_modality(self, model: "XModalLM", spec: "ModalitySpec", settings: dict[str, Any]) -> None:
        # a full new connector per modality, starting from the base one (a copy, not a reference)
        model.connectors[spec.name] = copy.deepcopy(model.connectors[model.base_connector_name])
        model.new_path(spec, connector=spec.name)

    def trainable(self, model: "XModalLM", modality: str, phase: str,
                  settings: dict[str, Any]) -> Iterable[nn.Parameter]:
        yield from model.paths[modality].parameters()
        yield from model.connectors[modality].parameters()
