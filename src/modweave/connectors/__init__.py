"""Connectors: encoder tokens `[N, T, encoder_width]` -> LLM-width tokens `[N, Q, d_llm]`.

Every connector exposes `encoder_width` (what its input must be), `num_query_tokens` / `query_width`
(None when it has no learned queries: the modality path then owns none) and
`forward(features, query_tokens=None, text_ids=None, text_mask=None)`.
"""

from __future__ import annotations

from torch import nn

from ..config import ConnectorConfig
from .projector import MLPProjector
from .qformer import QFormerConnector

__all__ = ["MLPProjector", "QFormerConnector", "build_connector"]


def build_connector(cfg: ConnectorConfig, llm_width: int, text_vocab_size: int | None = None,
                    encoder_width: int | None = None) -> nn.Module:
    """Build a connector of `cfg.kind` (`qformer` or `mlp`); `encoder_width` overrides the config's."""
    if cfg.kind == "qformer":
        return QFormerConnector.from_config(cfg, llm_width, text_vocab_size)
    if cfg.kind == "mlp":
        return MLPProjector(encoder_width or cfg.encoder_width, llm_width, cfg.mlp_hidden or llm_width, cfg.mlp_layers)
    raise ValueError(f"unknown connector.kind '{cfg.kind}' (known: qformer, mlp)")
