"""`modweave params --memory`: the GPU memory estimate's parts, checked against hand counts on tiny.yaml."""

from __future__ import annotations

import re
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


def test_checkpointing_follows_the_preset_unless_forced():
    """Like the batch size, gradient checkpointing defaults to what the trainer would do: each phase's
    train.gradient_checkpointing. The flag forces it either way."""
    on = load_run_config(TINY, ["train.gradient_checkpointing=true"])
    preset = estimate_memory(on, seq_len=64)["stages"]
    forced_on = estimate_memory(cfg_off := load_run_config(TINY), seq_len=64, grad_checkpointing=True)["stages"]
    forced_off = estimate_memory(on, seq_len=64, grad_checkpointing=False)["stages"]
    assert preset == forced_on and all(r["grad_checkpointing"] for r in preset.values())
    assert forced_off == estimate_memory(cfg_off, seq_len=64)["stages"]
    assert forced_off["video"]["activations"] > preset["video"]["activations"]


def test_cli_no_grad_checkpointing_and_the_default_header(capsys):
    from modweave.cli import main

    assert main(["params", str(TINY), "--memory", "--no-grad-checkpointing"]) == 0
    assert "grad checkpointing off)" in capsys.readouterr().out
    assert main(["params", str(TINY), "train.gradient_checkpointing=true", "--memory"]) == 0
    assert "grad checkpointing on (the preset's train.gradient_checkpointing)" in capsys.readouterr().out


PAPER_SCALE = Path(__file__).resolve().parents[1] / "docs" / "paper-scale.md"


def _doc_memory_rows() -> list[tuple[list[str], list[tuple[str, str]], list[str]]]:
    """docs/paper-scale.md's estimate table: (argv, [(stage, "BxS")], [total GiB as printed])."""
    text = PAPER_SCALE.read_text()
    table = text[text.index("| command | stage batch x seq | total |"):].split("\n\n")[0].splitlines()[2:]
    rows, stages = [], None
    for line in table:
        command, stage_cell, total_cell = (c.strip() for c in line.strip("|").split("|"))
        argv = re.search(r"`modweave (.*?)`", command).group(1).split()
        if stage_cell != "same":  # "same": the row above's stages
            stages = [tuple(part.split()) for part in stage_cell.split(" / ")]
        rows.append((argv, stages, total_cell.split(" / ")))
    return rows


def test_paper_scale_memory_table_is_what_the_command_prints(capsys):
    """Every row of the doc's table, rerun through the CLI (meta device, no download): the stages, their
    batch x seq and the totals equal the printed table's, digit for digit."""
    from modweave.cli import main

    rows = _doc_memory_rows()
    assert len(rows) >= 4 and {argv[1] for argv in (r[0] for r in rows)} == {
        "configs/pathweave/instructblip-vicuna7b.yaml", "configs/moextend/mixtral-8x7b-clip336.yaml"}
    repo = PAPER_SCALE.parents[1]
    for argv, stages, totals in rows:
        argv = [argv[0], str(repo / argv[1]), *argv[2:]]
        assert main(argv) == 0
        printed = capsys.readouterr().out.splitlines()[2:]
        printed = [line.split() for line in printed if line and not line.startswith(("inference", "("))]
        assert [(p[0], f"{p[1]}x{p[2]}") for p in printed] == stages, argv
        assert [p[-1] for p in printed] == totals, argv
