"""What generic code (the model, the trainer, the memory estimate, the collator) may ask of a connector.

A connector maps encoder tokens `[N, T, encoder_width]` to LLM-width tokens `[N, Q, d_llm]`:
`forward(features, query_tokens=None, text_ids=None, text_mask=None)`. Everything else generic code
needs is declared here, so nothing looks inside a connector for a `.qformer`.
"""

from __future__ import annotations

from typing import Any

from torch import nn


class Connector(nn.Module):
    """Base of every connector. Subclasses set `encoder_width` and, if they learn query tokens,
    `num_query_tokens` / `query_width` and `init_query_tokens()`."""

    encoder_width: int
    num_query_tokens: int | None = None  # None: no learned queries (the modality path owns none)
    query_width: int | None = None
    instruction_input: bool = False  # True: forward reads the sample's instruction (text_ids)
    # the tokenizer the instruction must be tokenised with (None: the LLM's); InstructBLIP's is BERT's
    instruction_tokenizer: Any = None

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass (no-op for connectors too small to need it)."""

    def activation_bytes(self, batch: int, frames: int, tokens: int, dtype_bytes: float = 4.0) -> float:
        """Estimated activation memory of one training forward (for `modweave params --memory`)."""
        return 0.0
