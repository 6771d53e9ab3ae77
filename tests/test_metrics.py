"""Task metrics and continual metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from modweave.metrics import (continual_metrics, cider_d, corpus_bleu, corpus_rouge_l, exact_match,
                              normalize_answer, rouge_l)


@pytest.mark.parametrize("raw, norm", [
    ("The Seven.", "7"), ("an apple!", "apple"), ("3.5", "3.5"), ("Left", "left"),
    ("  two   dogs, a cat ", "2 dogs cat"), ("yes/no", "yes no"), ("it's", "it s"),
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_exact_match_uses_normalisation_and_any_reference():
    assert exact_match("Seven", "7") == 1.0
    assert exact_match("the seven.", ["six", "seven"]) == 1.0
    assert exact_match("seventy", "seven") == 0.0


def test_bleu_identical_is_one_and_brevity_penalty():
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    # every n-gram precision is 1 (5/5, 4/4, 3/3, 2/2); hyp 5 tokens vs ref 6: BP = exp(1 - 6/5)
    assert corpus_bleu(["the cat sat on the"], ["the cat sat on the mat"]) == pytest.approx(math.exp(-0.2))
    # no matching 4-gram: 0 without smoothing
    assert corpus_bleu(["the cat the cat"], ["the cat sat on the mat"]) == 0.0


def test_bleu_clips_counts_and_picks_closest_reference():
    # unigrams: 'the' x4 in hyp, clipped to 2 -> p1 = 2/4; bigrams 'the the' none -> 0
    assert corpus_bleu(["the the the the"], ["the cat the mat"]) == 0.0
    # closest reference length is 5 (|5-5|), not 2: BP = 1 and all precisions 1
    assert corpus_bleu(["a b c d e"], [["a b", "a b c d e"]]) == pytest.approx(1.0)


def test_rouge_l_hand_case():
    # LCS 3; P = 3/3, R = 3/4; F_beta(1.2) = (1 + 1.44) * 1 * 0.75 / (0.75 + 1.44 * 1)
    expected = 2.44 * 0.75 / (0.75 + 1.44)
    assert rouge_l("the cat sat", "the cat sat down") == pytest.approx(expected)
    assert rouge_l("x y", "a b") == 0.0
    assert corpus_rouge_l(["the cat sat", "a b"], ["the cat sat down", "a b"]) == pytest.approx((expected + 1) / 2)


def test_cider_d_hand_cases():
    # two samples with disjoint vocabularies: every n-gram has df 1 -> idf log(2); identical pairs -> 10
    assert cider_d(["a b c d", "e f g h"], ["a b c d", "e f g h"]) == pytest.approx(10.0)
    # sample 1: hyp "a" vs ref "a b": n=1 cosine = log2^2 / (log2 * sqrt(2) log2) = 1/sqrt(2), n>=2: 0,
    #           length penalty exp(-1/72) -> 10 * (1/sqrt(2)) * exp(-1/72) / 4
    # sample 2: hyp = ref "c d": n=1 and n=2 cosine 1, n=3,4 empty (0) -> 10 * 2 / 4 = 5
    s1 = 10 * (1 / math.sqrt(2)) * math.exp(-1 / 72) / 4
    assert cider_d(["a", "c d"], ["a b", "c d"]) == pytest.approx((s1 + 5.0) / 2)
    # one sample alone: idf is log(1/1) = 0 everywhere
    assert cider_d(["a b"], ["a b"]) == 0.0


def test_continual_metrics_hand_computed():
    # columns text, image (learned in the base row 0), video (row 1), audio (row 2); T = 2
    acc = [[0.9, 0.8, None, None],
           [0.9, 0.6, 0.5, None],
           [0.8, 0.85, 0.4, 0.6]]
    out = continual_metrics(acc, [0, 0, 1, 2], ["text", "image", "video", "audio"])
    # average accuracy: mean of the last row = (0.8 + 0.85 + 0.4 + 0.6) / 4 = 0.6625
    assert out["avg_acc"] == pytest.approx(0.6625)
    # plasticity over added modalities: video a[1][2] = 0.5, audio a[2][3] = 0.6 -> 0.55
    assert out["plasticity"] == pytest.approx(0.55)
    assert out["plasticity_per_modality"] == {"text": 0.9, "image": 0.8, "video": 0.5, "audio": 0.6}
    # forgetting (max over l in [l_j, T-1]): text max(.9,.9)-.8 = .1; image max(.8,.6)-.85 = -.05;
    # video max(.5)-.4 = .1 -> (0.1 - 0.05 + 0.1) / 3 = 0.05 (audio, learned last, is not counted)
    assert out["forgetting"] == pytest.approx(0.05)
    # BWT: text .8-.9 = -.1; image .85-.8 = .05; video .4-.5 = -.1 -> -0.05
    assert out["bwt"] == pytest.approx(-0.05)
    assert out["fwt"] is None
    # FWT: a[l_j - 1][j] - reference: video a[0][2] is None (no path) -> skipped; audio a[1][3] None too
    assert continual_metrics(acc, [0, 0, 1, 2], reference=[0.1, 0.1, 0.1, 0.1])["fwt"] is None
    zero_shot = [[0.9, 0.8, 0.2, 0.1], [0.9, 0.6, 0.5, 0.3], [0.8, 0.85, 0.4, 0.6]]
    # video 0.2 - 0.1 = 0.1, audio 0.3 - 0.1 = 0.2 -> 0.15
    assert continual_metrics(zero_shot, [0, 0, 1, 2], reference=[0.1] * 4)["fwt"] == pytest.approx(0.15)


def test_continual_metrics_forgetting_uses_best_not_first_score():
    # column 0 rises then falls: first 0.2, best 0.9 (row 1), final 0.5 -> forgetting .4, BWT +.3
    out = continual_metrics([[0.2, None], [0.9, 0.7], [0.5, 0.7]], [0, 1])
    assert out["forgetting"] == pytest.approx((0.4 + 0.0) / 2)
    assert out["bwt"] == pytest.approx((0.3 + 0.0) / 2)


def test_continual_metrics_single_row_and_bad_shapes():
    out = continual_metrics([[0.5, None]], [0, 1])
    assert out["avg_acc"] == 0.5 and out["forgetting"] is None and out["bwt"] is None and out["plasticity"] is None
    with pytest.raises(ValueError):
        continual_metrics([[0.5]], [0, 1])
