"""`modweave params`: per-stage counts on the meta device equal the real model's."""

from __future__ import annotations

import json

from modweave.cli import main
from modweave.params import stage_param_counts
from modweave.utils import count_params

from tinyfactory import TINY


def test_meta_counts_equal_real_counts(tiny_cfg):
    meta = stage_param_counts(tiny_cfg, device="meta")
    real = stage_param_counts(tiny_cfg, device="cpu")
    assert meta == real
    assert list(meta["stages"]) == ["base", "video", "audio", "point_cloud"]


def test_counts_follow_each_method(tiny_cfg):
    counts = stage_param_counts(tiny_cfg)["stages"]
    ref = stage_param_counts(tiny_cfg)["reference_connector"]
    # frozen: LayerNorm (2 x 64) + query tokens (4 x 64) of the video path
    assert counts["video"]["trainable"] == 2 * 64 + 4 * 64
    # separate: a whole new connector + audio path (LayerNorm 2 x 32, Linear 32->64, queries 4 x 64)
    assert counts["audio"]["trainable"] == ref + 2 * 32 + 32 * 64 + 64 + 4 * 64
    assert counts["audio"]["total"] - counts["video"]["total"] > ref  # the copy adds a connector
    assert counts["base"]["trainable"] < counts["base"]["total"]  # encoders stay frozen


def test_cli_json_shape(capsys):
    assert main(["params", str(TINY), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["stages"]["base"]) == {"trainable", "total"}


def test_cli_bad_key_is_one_line(capsys):
    assert main(["params", str(TINY), "model.llm.bogus=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.llm.bogus" in err[0]


def test_count_params_counts_shared_once():
    import torch

    lin = torch.nn.Linear(3, 3)
    seq = torch.nn.Sequential(lin, lin)
    assert count_params(seq) == 12


def test_memory_flags_without_memory_are_refused(capsys):
    """--no-grad-checkpointing (a forced default) is still a memory-only flag: one line, exit 2."""
    for flag in ("--grad-checkpointing", "--no-grad-checkpointing"):
        assert main(["params", str(TINY), flag]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--grad-checkpointing applies to the memory estimate only" in err[0]
