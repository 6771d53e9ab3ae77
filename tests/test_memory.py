"""`modweave params --memory`: the GPU memory estimate's parts, checked against hand counts on tiny.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modweave.config import load_run_config
from modweave.memory import estimate_memory
from modweave.model import XModalLM

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def cfg():
    return load_run_config(TINY)


def test_weights_and_optimizer_are_exact_byte_counts(cfg):
    est = estimate_memory(cfg, micro_batch=2, seq_len=32)
    model = XModalLM.build(cfg.model, device="meta")
    model.set_base_trainable(**cfg.base_train)
    params = list(model.parameters())
    base = est["stages"]["base"]
    assert base["weights"] == sum(p.numel() * 4 for p in params)  # tiny is all fp32
    assert base["optimizer"] == sum(p.numel() * (4 + 8) for p in params if p.requires_grad)
    assert base["batch"] == 2 and base["seq"] == 32
    assert base["total"] == base["weights"] + base["optimizer"] + base["activations"]
    assert list(est["stages"]) == ["base", "video", "audio", "point_cloud"]


def test_activation_estimate_scales_and_checkpointing_reduces(cfg):
    one = estimate_memory(cfg, micro_batch=1, seq_len=64)["stages"]["video"]["activations"]
    two = estimate_memory(cfg, micro_batch=2, seq_len=64)["stages"]["video"]["activations"]
    assert two == pytest.approx(2 * one)
    ckpt = estimate_memory(cfg, micro_batch=2, seq_len=64, grad_checkpointing=True)["stages"]["video"]
    assert ckpt["activations"] < two


def test_quantization_shrinks_only_frozen_llm_matrices(cfg):
    full = estimate_memory(cfg, seq_len=16)["inference"]["weights"]
    q4 = estimate_memory(cfg, seq_len=16, quantization="4bit")["inference"]["weights"]
    q8 = estimate_memory(cfg, seq_len=16, quantization="8bit")["inference"]["weights"]
    assert q4 < q8 < full
    with pytest.raises(ValueError, match="quantization"):
        estimate_memory(cfg, quantization="3bit")


def test_cli_prints_the_table():
    out = subprocess.run([sys.executable, "-m", "modweave.cli", "params", str(TINY), "--memory",
                          "--grad-checkpointing"], capture_output=True, text=True, check=True).stdout
    assert "grads+adam" in out and "point_cloud" in out and "grad checkpointing on" in out
