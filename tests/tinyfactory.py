"""Tiny-model helpers shared by the tests (importable as `tinyfactory`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"

# media shapes for the tiny config's encoders (one frame / chunk / cloud)
FRAME_SHAPES = {"image": (3, 16, 16), "video": (2, 3, 16, 16), "depth": (3, 16, 16),
                "audio": (2, 32, 16), "point_cloud": (64, 3)}


def make_items(modalities: list[str], seed: int = 0, answer: str = "seven") -> list[dict]:
    """Dataset-style items with random media for each modality (None for text)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i, m in enumerate(modalities):
        media = None if m == "text" else torch.rand(FRAME_SHAPES[m], generator=g)
        items.append({"id": f"{m}-{i}", "modality": m, "media": media, "task": "qa",
                      "prompt": "what digit is shown ?", "answer": answer})
    return items


# media shapes for configs/test-train.yaml's encoders (16-px images, 2-frame video, 1 x 16 x 16 audio)
TEST_TRAIN_SHAPES = {"image": (3, 16, 16), "video": (2, 3, 16, 16), "audio": (1, 16, 16), "depth": (3, 16, 16)}


def media_items(modalities: list[str], shapes: dict = TEST_TRAIN_SHAPES, seed: int = 1) -> list[dict]:
    """`make_items` with media of `shapes` (seeded), for models built from another config."""
    items = make_items(modalities)
    g = torch.Generator().manual_seed(seed)
    for it in items:
        if it["modality"] in shapes:
            it["media"] = torch.rand(shapes[it["modality"]], generator=g)
    return items


def pair_items(pairs: list[tuple[str, str]], shapes: dict = TEST_TRAIN_SHAPES, seed: int = 2) -> list[dict]:
    """Two-media items (one per pair of modalities), referenced from the prompt as <media:1>, <media:2>."""
    g = torch.Generator().manual_seed(seed)
    return [{"id": f"{a}+{b}-{i}", "modality": f"{a}+{b}", "media_modalities": [a, b],
             "media": [torch.rand(shapes[a], generator=g), torch.rand(shapes[b], generator=g)],
             "task": "qa", "prompt": "do <media:1> and <media:2> show the same digit ?", "answer": "yes"}
            for i, (a, b) in enumerate(pairs)]
