"""Connectors: encoder tokens `[N, T, encoder_width]` -> LLM-width tokens `[N, Q, d_llm]`.

Each connector kind is registered (`@register_connector("name")` on a builder
`(cfg, llm_width, text_vocab_size, encoder_width) -> Connector`) and implements the interface in
`base.py`: `encoder_width`, `num_query_tokens` / `query_width` (None when it has no learned queries:
the modality path then owns none), `instruction_input`, `set_grad_checkpointing`, and
`forward(features, query_tokens=None, text_ids=None, text_mask=None)`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import ConnectorConfig
from ..registry import Registry
from .base import Connector
from .projector import MLPProjector
from .qformer import QFormerConnector

__all__ = ["Connector", "MLPProjector", "QFormerConnector", "build_connector", "list_connectors",
           "register_connector", "CONNECTORS"]

ConnectorBuilder = Callable[[ConnectorConfig, int, "int | None", "int | None"], Connector]
CONNECTORS: Registry[ConnectorBuilder] = Registry("connector")
register_connector = CONNECTORS.register


@register_connector("qformer")
def _qformer(cfg: ConnectorConfig, llm_width: int, text_vocab_size: int | None,
             encoder_width: int | None) -> Connector:
    return QFormerConnector.from_config(cfg, llm_width, text_vocab_size)


@register_connector("mlp")
def _mlp(cfg: ConnectorConfig, llm_width: int, text_vocab_size: int | None, encoder_width: int | None) -> Connector:
    return MLPProjector(encoder_width or cfg.encoder_width, llm_width, cfg.mlp_hidden or llm_width, cfg.mlp_layers)


def build_connector(cfg: ConnectorConfig, llm_width: int, text_vocab_size: int | None = None,
                    encoder_width: int | None = None) -> Connector:
    """Build a connector of `cfg.kind`; `encoder_width` overrides the config's."""
    try:
        builder = CONNECTORS.get(cfg.kind)
    except ValueError as err:
        raise ValueError(f"connector.kind: {err}") from None
    return builder(cfg, llm_width, text_vocab_size, encoder_width)


def list_connectors() -> list[str]:
    return CONNECTORS.names()
