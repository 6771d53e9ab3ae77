"""Shared fixtures: a tiny XModalLM from configs/tiny.yaml (helpers live in tinyfactory.py)."""

from __future__ import annotations

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
