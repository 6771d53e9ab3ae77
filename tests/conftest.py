"""Shared fixtures: a tiny XModalLM from configs/tiny.yaml (helpers live in tinyfactory.py), a tiny
MCL-Digits written once per session, and small loader settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
import torch

from modweave.config import load_run_config
from modweave.model import XModalLM
from tinyfactory import TINY


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
    write_digits(out, seed=0, n_train=6, n_test=4, workers=1, progress=False, pairs=12)  # 12 per pair: 4 of each kind
    return out


@pytest.fixture(scope="session")
def first_media() -> Callable[[Path, str], Path]:
    """``first_media(root, modality)``: the media file of the first training record."""

    def find(root: Path, modality: str) -> Path:
        rec = json.loads((root / f"{modality}_train.jsonl").read_text().splitlines()[0])
        return root / rec["media"]

    return find


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: on 2 shared cores, several BLAS threads per process make tiny
    matmuls ~100x slower when other processes (xdist workers, DDP ranks) compete for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
