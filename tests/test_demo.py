"""`modweave demo`: the quick pipeline end to end on a reduced budget, its report schema, CLI help/errors."""

from __future__ import annotations

import json

import pytest

from modweave.cli import main
from modweave.demo import DEMO_METHODS, demo_config, method_config
from modweave.methods import list_methods
from modweave.report import check_report

TINY_BUDGET = ["train.base.steps=6", "train.steps=2", "train.batch_size=8", "data.max_test=8", "data.heldout=8",
               "train.progress=false", "data.digits.n_train=24", "data.digits.n_test=8"]


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--methods", "ana,frozen", *TINY_BUDGET]) == 0
    report = json.loads((out / "report.json").read_text())
    check_report(report)
    assert report["benchmark"] == "mcl-digits"
    assert report["modalities"] == ["text", "image", "video", "audio", "depth", "point_cloud"]
    assert set(report["methods"]) == {"ana", "frozen"}
    for entry in report["methods"].values():
        assert len(entry["acc_matrix"]) == 5  # base + 4 stages
        assert set(entry["trainable_params"]) == {"base", "video", "audio", "depth", "point_cloud"}
    # PathWeave keeps every earlier modality exactly: its accuracy on them never moves
    ana = report["methods"]["ana"]["acc_matrix"]
    for j in range(2):  # text, image (base modalities)
        assert len({row[j] for row in ana}) == 1
    assert report["methods"]["ana"]["forgetting"] == 0.0
    assert (out / "report.md").exists() and (out / "accuracy_matrix.png").exists()
    printed = capsys.readouterr().out
    assert "ana" in printed and "forget." in printed and "report.md" in printed
    # the base was trained once and shared: both runs hold the same base stage file
    a = (out / "ana" / "checkpoint" / "stage-00-base.safetensors").read_bytes()
    b = (out / "frozen" / "checkpoint" / "stage-00-base.safetensors").read_bytes()
    assert a == b


def test_every_demo_method_is_registered():
    assert set(DEMO_METHODS) <= set(list_methods())


@pytest.mark.parametrize("method", DEMO_METHODS)
def test_method_config_routes_every_stage(method):
    cfg = method_config(demo_config(), method)
    assert [s.method for s in cfg.stages] == [method] * 4
    assert [s.modality.name for s in cfg.stages] == ["video", "audio", "depth", "point_cloud"]


def test_quick_reduces_the_budget():
    full, quick = demo_config(), demo_config(quick=True)
    assert quick.train["steps"] < full.train["steps"]
    assert quick.train["base"]["steps"] < full.train["base"]["steps"]


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--quick", "--methods", "--out", "--seed"):
        assert flag in text


def test_unknown_method_is_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--methods", "magic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method 'magic'" in err[0]


def test_bad_override_names_the_key(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "train.bogus=1"]) == 2
    assert "train.bogus" in capsys.readouterr().err


def test_a_different_budget_in_the_same_folder_is_refused(tmp_path, capsys):
    from modweave.demo import _claim

    _claim(tmp_path, {"seed": 0, "quick": True, "overrides": []})
    _claim(tmp_path, {"seed": 0, "quick": True, "overrides": []})  # same budget: resumes
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "use another --out" in capsys.readouterr().err


def test_demo_data_seed_comes_from_seed_flag(tmp_path, capsys):
    from modweave.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "data.digits.seed=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.digits.seed" in err[0] and "--seed" in err[0]
    assert not (tmp_path / "d").exists()
