"""Evaluation: task routing (generate / rank), scores per modality, accuracy rows, eval CLI."""

from __future__ import annotations

import pytest
import torch

from modweave.evaluate import accuracy_row, evaluate_items, rank_candidates


class StubModel:
    """Answers from a lookup table; scores a candidate by a fixed per-word log-likelihood."""

    def __init__(self, answers: dict[str, str], loglik: dict[str, float], paths=("image",)):
        self.answers, self.loglik, self.paths, self.training = answers, loglik, set(paths), True
        self.generate_calls = self.score_calls = 0

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def collator(self, train=True):
        return lambda items: {"items": list(items)}

    def generate(self, batch, max_new_tokens, num_beams):
        self.generate_calls += 1
        assert not self.training
        return [self.answers[it["id"]] for it in batch["items"]]

    def score(self, batch):
        self.score_calls += 1
        return torch.tensor([self.loglik[it["answer"]] for it in batch["items"]])


def _item(i, modality="image", task="qa", answer="seven", candidates=("six", "seven")):
    return {"id": str(i), "modality": modality, "media": None, "task": task, "prompt": "q",
            "answer": answer, "candidates": list(candidates)}


def test_qa_generate_exact_match_after_normalisation():
    model = StubModel({"0": "Seven.", "1": "the 7", "2": "six", "3": "seven"}, {})
    items = [_item(0), _item(1), _item(2), _item(3, modality="video")]
    out = evaluate_items(model, items)
    assert out["image"]["tasks"]["qa"] == {"exact_match": pytest.approx(2 / 3), "n": 3}
    assert out["video"]["score"] == 1.0
    assert model.training  # the model's mode is restored


def test_rank_mode_and_cls_pick_the_highest_summed_loglik():
    model = StubModel({}, {"six": -1.0, "seven": -3.0, "cat": -0.5, "dog": -2.0})
    items = [_item(0), _item(1, answer="six"), _item(2, task="cls", answer="dog", candidates=["cat", "dog"])]
    assert rank_candidates(model, items[:2], batch_size=3) == ["six", "six"]
    out = evaluate_items(model, items, qa_mode="rank", batch_size=3)
    assert out["image"]["tasks"]["qa"]["exact_match"] == 0.5
    assert out["image"]["tasks"]["cls"]["accuracy"] == 0.0
    assert out["image"]["score"] == 0.25  # mean of the tasks' headline scores
    assert model.generate_calls == 0


def test_caption_task_reports_bleu_cider_rouge():
    model = StubModel({"0": "a b c d", "1": "e f g h"}, {})
    items = [_item(0, task="caption", answer="a b c d"), _item(1, task="caption", answer="e f g h")]
    scores = evaluate_items(model, items, keep_predictions=True)["image"]["tasks"]["caption"]
    assert scores["cider"] == pytest.approx(10.0) and scores["bleu4"] == pytest.approx(1.0)
    assert scores["rouge_l"] == pytest.approx(1.0)
    assert scores["predictions"][0] == {"id": "0", "prediction": "a b c d", "answer": "a b c d"}


def test_accuracy_row_is_null_without_a_path_or_data():
    model = StubModel({"0": "seven", "1": "seven"}, {}, paths=("image",))
    data = {"image": [_item(0)], "audio": [_item(1, modality="audio")]}
    row, details = accuracy_row(model, data, ["text", "image", "audio"])
    assert row == [None, 1.0, None]  # text: no data; audio: no path
    assert set(details) == {"image"}
