"""Collator: samples -> one batch of prompt ids (with a media placeholder), labels and media.

Batch layout (what `XModalLM.forward/generate` read):
  ids [B] str, modalities [B] str (a multi-media row: its label, e.g. "image+audio"), tasks [B],
  media [B] (Tensor, None, or a list of Tensors for a multi-media row, in placeholder order),
  media_modalities [B] (each row's media modalities in placeholder order: [] text, [m] one media),
  answers [B], candidates [B],
  input_ids [B, L] long (right-padded; one MEDIA_TOKEN_ID per media marks where its cue + tokens go),
  attention_mask [B, L], labels [B, L] (train only: answer tokens + EOS, everything else -100),
  qformer_input_ids / qformer_attention_mask [B, Lq] (the instruction text for the Q-Former).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..config import PromptConfig
from .formats import MEDIA_MARKER, check_markers

MEDIA_TOKEN_ID = -200
IGNORE_INDEX = -100


def item_media(item: dict[str, Any]) -> list[tuple[str, Any]]:
    """`(modality, tensor)` of each media of a dataset item, in the item's order (`[]` for text).

    A single media is `item["media"]` of `item["modality"]`; several are a list in `item["media"]`
    with their modalities in `item["media_modalities"]`."""
    media = item.get("media")
    if media is None:
        return []
    if isinstance(media, (list, tuple)):
        mods = item.get("media_modalities")
        if mods is None or len(mods) != len(media):
            raise ValueError(f"sample {item.get('id', '?')}: {len(media)} media need as many 'media_modalities'")
        return list(zip(mods, media))
    mods = item.get("media_modalities")
    return [((mods or [item.get("modality", "text")])[0], media)]


def row_media(batch: dict[str, Any], i: int) -> list[tuple[str, Any]]:
    """`(modality, tensor)` of each media of batch row `i` in placeholder order (what the model
    splices); batches built by hand with only `modalities` / `media` read as one media per row."""
    media = (batch.get("media") or [None] * len(batch["modalities"]))[i]
    mods = batch.get("media_modalities")
    return item_media({"id": i, "modality": batch["modalities"][i], "media": media,
                       "media_modalities": mods[i] if mods is not None else None})


TOKEN_CACHE_TEXTS = 65536  # distinct texts a collator remembers the token ids of


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
        # text -> token ids: prompts and answers repeat (templated questions), and calling the tokenizer
        # per piece was ~10% of a small model's training step
        self._known: dict[str, tuple[int, ...]] = {}

    def _ids(self, text: str) -> list[int]:
        ids = self._known.get(text)
        if ids is None:
            ids = tuple(self.tok(text, add_special_tokens=False).input_ids) if text.strip() else ()
            if len(self._known) >= TOKEN_CACHE_TEXTS:  # a data set of free-form texts: start over
                self._known.clear()
            self._known[text] = ids
        return list(ids)

    def _segment(self, text: str, ids: list[int]) -> list[int]:
        """Append `text`'s tokens to `ids` with a placeholder at each `<media:K>` marker; returns the
        0-based media indices of the markers in order."""
        order = []
        pieces = MEDIA_MARKER.split(text)  # [text, K, text, K, ..., text]
        for j, piece in enumerate(pieces):
            if j % 2:
                ids.append(MEDIA_TOKEN_ID)
                order.append(int(piece) - 1)
            else:
                ids += self._ids(piece)
        return order

    def layout(self, item: dict[str, Any], answer: str | None = None) -> tuple[list[int], list[int], list[int]]:
        """Token ids, labels (only on the answer and EOS) and the placeholder order of one sample: the
        media index each MEDIA_TOKEN_ID stands for. Media the prompt marks with `<media:K>` go there;
        otherwise every media goes, in order, where the template says `{media}`."""
        n_media = len(item_media(item))
        try:
            marked = bool(check_markers(item["prompt"], n_media))
        except ValueError as err:
            raise ValueError(f"sample {item.get('id', '?')}: {err}") from None
        left, right = self.prompt.template.split("{media}", 1)
        left, right = left.format(prompt=item["prompt"]), right.format(prompt=item["prompt"])
        ids: list[int] = [self.tok.bos_token_id] if self.prompt.add_bos and self.tok.bos_token_id is not None else []
        order = self._segment(left, ids)
        if not marked:
            ids += [MEDIA_TOKEN_ID] * n_media
            order += list(range(n_media))
        order += self._segment(right, ids)
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
        return ids, labels, order

    def qformer_text(self, item: dict[str, Any]) -> str:
        """The instruction the Q-Former reads: the prompt with each `<media:K>` marker replaced by the
        K-th media's modality name (its own tokenizer knows nothing of markers)."""
        mods = [m for m, _ in item_media(item)]
        return MEDIA_MARKER.sub(lambda k: mods[int(k.group(1)) - 1].replace("_", " ") if int(k.group(1)) <= len(mods)
                                else "", item["prompt"])

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        laid = [self.layout(it, it.get("answer") if self.train else None) for it in items]
        encoded = [(ids, labs) for ids, labs, _ in laid]
        media, media_modalities = [], []
        for it, (_, _, order) in zip(items, laid):
            parts = item_media(it)
            parts = [parts[k] for k in order]
            media_modalities.append([m for m, _ in parts])
            multi = isinstance(it.get("media"), (list, tuple))
            media.append([t for _, t in parts] if multi else (parts[0][1] if parts else None))
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
            "media": media,
            "media_modalities": media_modalities,
            "prompts": [it.get("prompt") for it in items],
            "answers": [it.get("answer") for it in items],
            "candidates": [it.get("candidates") for it in items],
            "input_ids": input_ids,
            "attention_mask": mask,
        }
        if self.train:
            batch["labels"] = labels
        if self.qtok is not None:
            q = self.qtok([self.qformer_text(it) for it in items], add_special_tokens=False, padding=True,
                          truncation=True, max_length=self.qformer_max_length, return_tensors="pt")
            batch["qformer_input_ids"], batch["qformer_attention_mask"] = q.input_ids, q.attention_mask
        return batch
