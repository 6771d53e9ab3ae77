"""Metrics: task scores on strings (text.py) and continual-learning scores on an accuracy matrix."""

from .continual import continual_metrics
from .text import cider_d, corpus_bleu, corpus_rouge_l, exact_match, normalize_answer, rouge_l, tokenize

__all__ = ["continual_metrics", "cider_d", "corpus_bleu", "corpus_rouge_l", "exact_match", "normalize_answer",
           "rouge_l", "tokenize"]
