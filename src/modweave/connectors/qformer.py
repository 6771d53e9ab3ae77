"""InstructBLIP-style Q-Former connector built on transformers' `InstructBlipQFormerModel`.

Learned query tokens (owned by each modality path and passed in), the instruction text as extra
Q-Former input, cross-attention to the encoder tokens, then `Linear(hidden -> d_llm)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

from ..config import ConnectorConfig
from ..utils import seeded
from .base import Connector


def qformer_config(cfg: ConnectorConfig, text_vocab_size: int | None) -> InstructBlipQFormerConfig:
    if cfg.name_or_path:  # an architecture file shipped with a paper-scale preset
        data = json.loads(Path(cfg.name_or_path).read_text())
        data.pop("model_type", None)
        return InstructBlipQFormerConfig(**data)
    return InstructBlipQFormerConfig(
        vocab_size=text_vocab_size or 2,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        cross_attention_frequency=cfg.cross_attention_frequency,
        encoder_hidden_size=cfg.encoder_width,
        max_position_embeddings=cfg.max_text_positions + cfg.num_query_tokens,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=0,
    )


class QFormerConnector(Connector):
    """`features [N, T, encoder_width]` + `query_tokens [Q, hidden]` (+ text) -> `[N, Q, d_llm]`."""

    def __init__(self, qformer: InstructBlipQFormerModel, llm_width: int, num_query_tokens: int,
                 instruction_input: bool = True):
        super().__init__()
        self.qformer = qformer
        self.proj = nn.Linear(qformer.config.hidden_size, llm_width)
        self.encoder_width = qformer.config.encoder_hidden_size
        self.query_width = qformer.config.hidden_size
        self.num_query_tokens = num_query_tokens
        self.instruction_input = instruction_input

    @classmethod
    def from_config(cls, cfg: ConnectorConfig, llm_width: int, text_vocab_size: int | None) -> "QFormerConnector":
        with seeded(cfg.seed):
            qformer = InstructBlipQFormerModel(qformer_config(cfg, text_vocab_size))
            return cls(qformer, llm_width, cfg.num_query_tokens, cfg.instruction_input)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """transformers' own switch on the Q-Former (v5 renamed gradient_ to activation_checkpointing)."""
        qf = self.qformer
        if hasattr(qf, "activation_checkpointing_enable"):
            on, off, key = qf.activation_checkpointing_enable, qf.activation_checkpointing_disable, "activation"
        else:
            on, off, key = qf.gradient_checkpointing_enable, qf.gradient_checkpointing_disable, "gradient"
        if enable:
            on(**{f"{key}_checkpointing_kwargs": {"use_reentrant": False}})
        else:
            off()

    def activation_bytes(self, batch: int, frames: int, tokens: int, dtype_bytes: float = 4.0) -> float:
        """~16 hidden-width tensors kept per layer per query/instruction token (fp32 connector)."""
        qc = self.qformer.config
        return dtype_bytes * batch * frames * tokens * qc.hidden_size * 16 * qc.num_hidden_layers

    def init_query_tokens(self) -> torch.Tensor:
        """Fresh query tokens `[Q, hidden]` (InstructBLIP initialises them N(0, 0.02))."""
        return torch.randn(self.num_query_tokens, self.query_width) * self.qformer.config.initializer_range

    def forward(self, features: torch.Tensor, query_tokens: torch.Tensor | None = None,
                text_ids: torch.Tensor | None = None, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        if query_tokens is None:
            raise ValueError("the Q-Former connector needs the modality's query tokens")
        if features.shape[-1] != self.encoder_width:
            raise ValueError(f"Q-Former expects encoder tokens of width {self.encoder_width}, "
                             f"got {features.shape[-1]}")
        n, q = features.shape[0], query_tokens.shape[0]
        queries = query_tokens.unsqueeze(0).expand(n, -1, -1)
        enc_mask = torch.ones(features.shape[:2], dtype=torch.long, device=features.device)
        if self.instruction_input and text_ids is not None:
            q_mask = torch.ones(n, q, dtype=torch.long, device=features.device)
            mask = torch.cat([q_mask, text_mask if text_mask is not None else torch.ones_like(text_ids)], dim=1)
            out = self.qformer(input_ids=text_ids, attention_mask=mask, query_embeds=queries,
                               encoder_hidden_states=features, encoder_attention_mask=enc_mask)
        else:
            out = self.qformer(input_ids=None, query_embeds=queries, encoder_hidden_states=features,
                               encoder_attention_mask=enc_mask)
        return self.proj(out.last_hidden_state[:, :q])
