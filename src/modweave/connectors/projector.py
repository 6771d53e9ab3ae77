"""LLaVA / MoExtend-style MLP projector: `[N, T, d_in]` -> `[N, T, d_llm]` (one LLM token per input token)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Connector


class MLPProjector(Connector):
    """`Linear(d_in -> h) -> GELU -> ... -> Linear(h -> d_llm)` with biases (`layers` Linear layers)."""

    def __init__(self, d_in: int, d_llm: int, hidden: int | None = None, layers: int = 2):
        super().__init__()
        if layers < 1:
            raise ValueError("an MLP projector needs at least one layer")
        hidden = hidden or d_llm
        dims = [d_in] + [hidden] * (layers - 1) + [d_llm]
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < layers - 1:
                mods.append(nn.GELU())
        self.net = nn.Sequential(*mods)
        self.encoder_width = d_in

    def forward(self, features: torch.Tensor, query_tokens: torch.Tensor | None = None,
                text_ids: torch.Tensor | None = None, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        if features.shape[-1] != self.encoder_width:
            raise ValueError(f"projector expects tokens of width {self.encoder_width}, got {features.shape[-1]}")
        return self.net(features)
