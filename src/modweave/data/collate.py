"""Collator: samples -> one batch of prompt ids (with a media placeholder), labels and media.

Batch layout (what `XModalLM.forward/generate` read):
  ids [B] str, modalities [B] str, tasks [B], media [B] (Tensor or None), answers [B], candidates [B],
  input_ids [B, L] long (right-padded; MEDIA_TOKEN_ID marks where cue + modality tokens go),
  attention_mask [B, L], labels [B, L] (train only: answer tokens + EOS, everything else -100),
  qformer_input_ids / qformer_attention_mask [B, Lq] (the instruction text for the Q-Former).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..config import PromptConfig

MEDIA_TOKEN_ID = -200
IGNORE_INDEX = -100


class Collator:
    """Turn dataset items `{"id", "modality", "media", "task", "prompt", "answer", "candidates"?}` into
    a batch. `train=True` appends the answer (labelled); `train=False` stops at the prompt."""

    def __init__(self, tokenizer: Any, prompt: PromptConfig | None = None, train: bool = True,
                 qformer_tokenizer: Any = None, max_length: int | None = None, qformer_max_length: int = 64):
        self.tok = tokenizer
        self.prompt = prompt or PromptConfig()
        self.train = train
        self.qtok = qformer_tokenizer
        self.max_length = max_length
        self.qformer_max_length = qformer_max_length
        if "{media}" not in self.prompt.template or "{prompt}" not in self.prompt.template:
            raise ValueError(f"prompt.template must hold {{media}} and {{prompt}}: {self.prompt.template!r}")

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids if text.strip() else []

    def encode(self, item: dict[str, Any], answer: str | None = None) -> tuple[list[int], list[int]]:
        """Token ids and labels of one sample (labels only on the answer and EOS)."""
        has_media = item.get("media") is not None
        left, right = self.prompt.template.split("{media}", 1)
        left, right = left.format(prompt=item["prompt"]), right.format(prompt=item["prompt"])
        ids: list[int] = [self.tok.bos_token_id] if self.prompt.add_bos and self.tok.bos_token_id is not None else []
        ids += self._ids(left)
        if has_media:
            ids.append(MEDIA_TOKEN_ID)
        ids += self._ids(right)
        labels = [IGNORE_INDEX] * len(ids)
        if answer is not None:
            ans = self._ids(self.prompt.answer_prefix + answer)
            if self.prompt.add_eos and self.tok.eos_token_id is not None:
                ans.append(self.tok.eos_token_id)
            ids += ans
            labels += ans
        if self.max_length is not None and len(ids) > self.max_length:
            raise ValueError(f"sample {item.get('id', '?')}: {len(ids)} prompt tokens exceed max_length "
                             f"{self.max_length}")
        return ids, labels

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        encoded = [self.encode(it, it.get("answer") if self.train else None) for it in items]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        input_ids = torch.full((len(items), width), pad, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, labs) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
            labels[i, : len(labs)] = torch.tensor(labs)
        batch: dict[str, Any] = {
            "ids": [it.get("id") for it in items],
            "modalities": [it.get("modality", "text") for it in items],
            "tasks": [it.get("task") for it in items],
            "media": [it.get("media") for it in items],
            "prompts": [it.get("prompt") for it in items],
            "answers": [it.get("answer") for it in items],
            "candidates": [it.get("candidates") for it in items],
            "input_ids": input_ids,
            "attention_mask": mask,
        }
        if self.train:
            batch["labels"] = labels
        if self.qtok is not None:
            q = self.qtok([it["prompt"] for it in items], add_special_tokens=False, padding=True,
                          truncation=True, max_length=self.qformer_max_length, return_tensors="pt")
            batch["qformer_input_ids"], batch["qformer_attention_mask"] = q.input_ids, q.attention_mask
        return batch
