"""MCL-Digits X-modal pairs: questions about two media at once, possibly of different modalities.

Three kinds, in turn, about two media in order: "Do the two show the same digit?" (yes / no,
balanced), "Which shows the larger digit, the first or the second?" (first / second, balanced; the
digits differ), and "Which digit is the first?" (or "the second": the digit word; the two digits
differ, so only the named media answers it). The first two relate the two media; the third
reads one of them, picked by its place. Pairs reuse the media files the benchmark already wrote, from
ONE split: test pairs only ever hold test handwriting.

Training pairs are image + image only (the base learns the pair format); test pairs cover every pair
of media modalities, so after a later modality is learnt from its own data alone, a question across
it and any other seen modality is asked zero-shot (PathWeave's X-modal reasoning).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from .formats import Record, joined_label
from .templates import render_prompt

# no <media:K> markers: both media go, in order, where the template puts media (the demo's template puts
# them right before the answer, where its tiny LLM, trained from scratch, reads single media; with the
# media in mid-question its base learnt none of the three kinds: every image+image score sat at chance)
PAIR_QUESTIONS = {
    "same": "Do the two show the same digit?",
    "larger": "Which shows the larger digit, the first or the second?",
    "which-first": "Which digit is the first?",
    "which-second": "Which digit is the second?",
}
PAIR_ANSWERS = {"same": ("yes", "no"), "larger": ("first", "second")}
KINDS = ("same", "larger", "which")
#: what the base trains on: pairs of its own modality
TRAIN_PAIRS = (("image", "image"),)
XMODAL_FILE = "xmodal_{split}.jsonl"


def pair_modalities(modalities: Sequence[str]) -> list[tuple[str, str]]:
    """The test pairs: image + image, then every pair of two different media modalities, in order."""
    media = [m for m in modalities if m != "text"]
    out = [("image", "image")] if "image" in media else []
    return out + list(combinations(media, 2))


def _digit_samples(records: Sequence[Mapping[str, Any]]) -> list[tuple[Any, int]]:
    """(media, digit) of each sample, from its digit question's record."""
    from .digits import DIGIT_WORDS

    return [(r["media"], DIGIT_WORDS.index(r["answer"])) for r in records if r["id"].endswith("-digit")]


class _Pool:
    """(media, digit) samples with their digits as an array, so a pick filters with numpy instead of
    a Python loop over the whole pool (the pairs of MCL-Digits take thousands of picks)."""

    def __init__(self, samples: Sequence[tuple[Any, int]]):
        self.samples = list(samples)
        self.digits = np.array([d for _, d in self.samples], dtype=np.int64).reshape(-1)
        self.index: dict[str, list[int]] = {}
        for i, (media, _) in enumerate(self.samples):
            self.index.setdefault(str(media), []).append(i)


def _pick(rng: np.random.Generator, pool: _Pool, ok: Callable[[int], bool] = lambda d: True,
          exclude: Any = None) -> tuple[Any, int] | None:
    """A random sample of `pool` whose digit passes `ok` (not the media `exclude`), None if none does:
    the same draw as choosing among `[s for s in pool if ok(digit) and media != exclude]`, in pool order."""
    allowed = np.array([bool(ok(d)) for d in range(10)])
    mask = allowed[pool.digits] if len(pool.digits) else np.zeros(0, dtype=bool)
    if exclude is not None:
        for i in pool.index.get(str(exclude), []):
            if pool.samples[i][0] == exclude:
                mask[i] = False
    cands = np.flatnonzero(mask)
    return pool.samples[int(cands[int(rng.integers(len(cands)))])] if len(cands) else None


def pair_records(a: str, b: str, pools: Mapping[str, _Pool], n: int, seed: int,
                 split: str) -> list[dict]:
    """`n` pair questions over modalities `a` (<media:1>) and `b` (<media:2>): `same`, `larger` and
    `which` in turn, each with alternating (so balanced) answers (`which`: alternately the first and the
    second media), deterministic per (seed, split, a, b)."""
    from .digits import DIGIT_MODALITIES

    rng = np.random.default_rng([seed, 7919, ("train", "test").index(split), DIGIT_MODALITIES.index(a),
                                 DIGIT_MODALITIES.index(b)])
    label = joined_label([a, b])
    out = []
    from .digits import DIGIT_WORDS

    for k in range(n):
        kind = KINDS[k % len(KINDS)]
        turn = (k // len(KINDS)) % 2  # alternates each kind's answer (or, for `which`, the media asked)
        answer = PAIR_ANSWERS[kind][turn] if kind in PAIR_ANSWERS else ""
        if kind == "which":
            first = _pick(rng, pools[a])
            d = first[1] if first else -1
            second = first and _pick(rng, pools[b], lambda x: x != d, exclude=first[0])
            kind = ("which-first", "which-second")[turn]
            if first and second:
                answer = DIGIT_WORDS[(first, second)[turn][1]]
        elif kind == "same":
            first = _pick(rng, pools[a])
            d = first[1] if first else -1
            second = first and _pick(rng, pools[b], (lambda x: x == d) if answer == "yes" else (lambda x: x != d),
                                     exclude=first[0])
        elif answer == "first":  # the first digit is the larger one
            first = _pick(rng, pools[a], lambda x: x >= 1)
            d = first[1] if first else -1
            second = first and _pick(rng, pools[b], lambda x: x < d, exclude=first[0])
        else:
            first = _pick(rng, pools[a], lambda x: x <= 8)
            d = first[1] if first else 10
            second = first and _pick(rng, pools[b], lambda x: x > d, exclude=first[0])
        if not (first and second):
            continue
        media = [{"modality": a, "path": first[0]}, {"modality": b, "path": second[0]}]
        cands = list(PAIR_ANSWERS.get(kind, DIGIT_WORDS))
        rec = Record(f"pair-{label}-{split}-{k:04d}-{kind}", label, media, "qa",
                     render_prompt(label, "qa", PAIR_QUESTIONS[kind]), answer, cands)
        out.append(rec.to_dict())
    return out


def write_pair_records(by_file: Mapping[tuple[str, str], list[dict]], modalities: Sequence[str], seed: int,
                       n_test: int, n_train: int | None) -> dict[str, list[dict]]:
    """`{split: records}` for the X-modal files: test pairs for every pair of media modalities
    (`n_test` each), training pairs of the base's modality (`n_train`; default two per training digit)."""
    pools = {(m, s): _Pool(_digit_samples(recs)) for (m, s), recs in by_file.items() if m != "text"}
    out: dict[str, list[dict]] = {"train": [], "test": []}
    if n_test <= 0:
        return out
    for a, b in pair_modalities(modalities):
        out["test"] += pair_records(a, b, {a: pools[(a, "test")], b: pools[(b, "test")]}, n_test, seed, "test")
    for a, b in TRAIN_PAIRS:
        if (a, "train") in pools and (b, "train") in pools:
            n = n_train if n_train is not None else 2 * len(pools[(a, "train")].samples)
            out["train"] += pair_records(a, b, {a: pools[(a, "train")], b: pools[(b, "train")]}, n, seed, "train")
    return out
