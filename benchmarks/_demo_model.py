"""Shared by the demo benchmarks: the demo's base model (random weights: timing does not need training)
and batches of random media shaped like the demo's loaders output."""

from __future__ import annotations

import copy

import torch

from modweave.config import ModalitySpec
from modweave.data.digits import digits_texts
from modweave.demo import demo_config
from modweave.model import XModalLM

SHAPES = {"image": (3, 32, 32), "video": (3, 3, 32, 32), "depth": (3, 32, 32), "audio": (1, 100, 32),
          "point_cloud": (512, 3), "text": None}


def demo_base() -> tuple[XModalLM, list[ModalitySpec]]:
    """(the demo's base model, the demo's stage modality specs)."""
    cfg = demo_config()
    cfg.model.tokenizer.corpus = digits_texts()
    torch.manual_seed(0)
    model = XModalLM.build(cfg.model)
    model.end_stage()
    return model, [copy.deepcopy(s.modality) for s in cfg.stages]


def items(modality: str, n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[modality]
    return [{"id": f"{modality}-{i}", "modality": modality,
             "media": None if shape is None else torch.rand(shape, generator=g),
             "prompt": "Question: What digit is shown? Answer:", "answer": "seven"} for i in range(n)]
