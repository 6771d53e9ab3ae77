"""Shared fixtures: a tiny XModalLM from configs/tiny.yaml and helpers to make batches of random media."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modweave.config import load_run_config
from modweave.model import XModalLM

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"

# media shapes for the tiny config's encoders (one frame / chunk / cloud)
FRAME_SHAPES = {"image": (3, 16, 16), "video": (2, 3, 16, 16), "depth": (3, 16, 16),
                "audio": (2, 32, 16), "point_cloud": (64, 3)}


@pytest.fixture
def tiny_cfg():
    return load_run_config(TINY)


@pytest.fixture
def tiny_model(tiny_cfg) -> XModalLM:
    torch.manual_seed(0)
    model = XModalLM.build(tiny_cfg.model)
    model.end_stage()
    model.eval()
    return model


def make_items(modalities: list[str], seed: int = 0, answer: str = "seven") -> list[dict]:
    """Dataset-style items with random media for each modality (None for text)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i, m in enumerate(modalities):
        media = None if m == "text" else torch.rand(FRAME_SHAPES[m], generator=g)
        items.append({"id": f"{m}-{i}", "modality": m, "media": media, "task": "qa",
                      "prompt": "what digit is shown ?", "answer": answer})
    return items
