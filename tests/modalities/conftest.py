"""Shared fixtures: a tiny MCL-Digits written once per session, and small loader settings.

Exposed as fixtures only (no ``from conftest import``: the repository's root conftest shadows it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

# small settings so every load takes milliseconds
SMALL_SETTINGS = {
    "image": {"size": 32},
    "video": {"num_frames": 3, "size": 32},
    "audio": {"num_chunks": 2, "chunk_frames": 64, "n_mels": 32},
    "depth": {"size": 32},
    "point_cloud": {"num_points": 256},
    "text": {},
}


@pytest.fixture(scope="session")
def small() -> dict:
    return SMALL_SETTINGS


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    from modweave.data.digits import write_digits

    out = tmp_path_factory.mktemp("digits") / "mcl"
    write_digits(out, seed=0, n_train=6, n_test=4, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def first_media() -> Callable[[Path, str], Path]:
    """``first_media(root, modality)``: the media file of the first training record."""

    def find(root: Path, modality: str) -> Path:
        rec = json.loads((root / f"{modality}_train.jsonl").read_text().splitlines()[0])
        return root / rec["media"]

    return find
