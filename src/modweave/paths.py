"""A modality path: frozen encoder -> [LayerNorm -> Linear] -> connector (+ its query tokens) -> LLM tokens."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModalitySpec

BASE_CONNECTOR = "base"  # the base model's connector in `model.connectors` (methods may add others)


class ModalityPath(nn.Module):
    """The modality-specific parts of one path. The encoder and connector live in the model (they may
    be shared by several paths) and are named here; this module owns only what is the modality's own:
    the input LayerNorm / projection and the query tokens `[Q, query_width]` (None for MLP connectors)."""

    def __init__(self, spec: ModalitySpec, encoder_name: str, connector_name: str, input_norm: nn.Module,
                 input_proj: nn.Module, query_tokens: torch.Tensor | None):
        super().__init__()
        self.spec = spec
        self.encoder_name = encoder_name
        self.connector_name = connector_name
        self.input_norm = input_norm
        self.input_proj = input_proj
        self.query_tokens = nn.Parameter(query_tokens) if query_tokens is not None else None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cue(self) -> str:
        return self.spec.cue

    def extra_repr(self) -> str:
        return f"name={self.name!r}, encoder={self.encoder_name!r}, connector={self.connector_name!r}, cue={self.cue!r}"
