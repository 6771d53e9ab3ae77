"""Evaluation: task scores per modality, and the accuracy matrix rows the trainer fills.

Per task: `qa` -> exact match after VQA normalisation of the generated answer (or, with
`qa_mode="rank"`, of the best-ranked candidate); `caption` -> BLEU-4, CIDEr-D, ROUGE-L of the
generated caption (CIDEr-D is the headline); `cls` -> accuracy of ranking the candidates.
Ranking uses `model.score(batch)`: the SUM of the answer tokens' log-likelihoods (EOS included),
the same everywhere. A modality's score is the mean of its tasks' headline scores.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from .metrics import cider_d, corpus_bleu, corpus_rouge_l, exact_match
from .training.config import EvalConfig

logger = logging.getLogger(__name__)

HEADLINE = {"qa": "exact_match", "cls": "accuracy", "caption": "cider"}


def _generate(model: Any, items: Sequence[dict], batch_size: int, max_new_tokens: int, num_beams: int) -> list[str]:
    collate = model.collator(train=False)
    out: list[str] = []
    for start in range(0, len(items), batch_size):
        out += model.generate(collate(list(items[start:start + batch_size])), max_new_tokens=max_new_tokens,
                              num_beams=num_beams)
    return out


def rank_candidates(model: Any, items: Sequence[dict], batch_size: int) -> list[str]:
    """The candidate with the highest summed answer log-likelihood, per item (first on ties)."""
    collate = model.collator(train=True)
    expanded = [(i, c) for i, it in enumerate(items) for c in it["candidates"]]
    if any(not it.get("candidates") for it in items):
        raise ValueError("ranking needs candidates on every item")
    scores = torch.empty(len(expanded))
    for start in range(0, len(expanded), batch_size):
        chunk = expanded[start:start + batch_size]
        batch = collate([{**items[i], "answer": c} for i, c in chunk])
        scores[start:start + len(chunk)] = model.score(batch).float().cpu()
    best: dict[int, tuple[float, str]] = {}
    for (i, c), s in zip(expanded, scores.tolist()):
        if i not in best or s > best[i][0]:
            best[i] = (s, c)
    return [best[i][1] for i in range(len(items))]


def score_task(task: str, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Metrics of one task on predictions vs references (one reference string each)."""
    if task == "caption":
        return {"bleu4": corpus_bleu(predictions, references), "cider": cider_d(predictions, references),
                "rouge_l": corpus_rouge_l(predictions, references)}
    key = HEADLINE.get(task, "exact_match")
    n = max(len(predictions), 1)
    return {key: sum(exact_match(p, r) for p, r in zip(predictions, references)) / n}


@torch.no_grad()
def evaluate_items(model: Any, items: Sequence[dict], *, batch_size: int = EvalConfig.batch_size,
                   max_new_tokens: int = EvalConfig.max_new_tokens,
                   num_beams: int = 1, qa_mode: str = "generate", keep_predictions: bool = False,
                   progress: bool = False) -> dict[str, Any]:
    """Scores by modality and task: `{modality: {"score", "n", "tasks": {task: {metric: value, "n"}}}}`
    (plus `"predictions"` per task with `keep_predictions`; `progress`: a bar over the samples)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for it in items:
        groups[(it["modality"], it["task"])].append(it)
    result: dict[str, Any] = {}
    bar = tqdm(total=len(items), desc="evaluating", unit="sample", disable=not progress)
    try:
        for (modality, task), group in groups.items():
            bar.set_postfix(modality=modality, task=task)
            if task == "cls" or (task == "qa" and qa_mode == "rank" and all(it.get("candidates") for it in group)):
                preds = rank_candidates(model, group, batch_size)
            else:
                preds = _generate(model, group, batch_size, max_new_tokens, num_beams)
            scores = score_task(task, preds, [it["answer"] for it in group])
            entry = {**scores, "n": len(group)}
            if keep_predictions:
                entry["predictions"] = [{"id": it["id"], "prediction": p, "answer": it["answer"]}
                                        for it, p in zip(group, preds)]
            result.setdefault(modality, {"tasks": {}})["tasks"][task] = entry
            bar.update(len(group))
    finally:
        bar.close()
        model.train(was_training)
    for modality, entry in result.items():
        heads = [t[HEADLINE.get(name, "exact_match")] for name, t in entry["tasks"].items()]
        entry["score"] = sum(heads) / len(heads)
        entry["n"] = sum(t["n"] for t in entry["tasks"].values())
    return result


def can_run(model: Any, modality: str) -> bool:
    """Whether the model has a path for `modality` (text needs none); for a multi-media label
    (`image+audio`), a path for each of its modalities."""
    return all(m == "text" or m in model.paths for m in modality.split("+"))


def accuracy_row(model: Any, datasets: dict[str, Any], columns: Sequence[str], **kwargs: Any) -> tuple[list[float | None], dict]:
    """One accuracy-matrix row: each column's score, None where the model has no path or no data."""
    row: list[float | None] = []
    details: dict[str, Any] = {}
    for m in columns:
        ds = datasets.get(m)
        if ds is None or not can_run(model, m):
            row.append(None)
            continue
        items = [ds[i] for i in range(len(ds))]
        res = evaluate_items(model, items, **kwargs).get(m)
        row.append(res["score"] if res else None)
        details[m] = res
    return row, details
