"""report.json schema, markdown, figures, merging methods, `modweave report`."""

from __future__ import annotations

import json

import pytest

from modweave.report import add_method, check_report, markdown, merge_reports, render

ENTRY = {"acc_matrix": [[0.9, 0.8, None], [0.9, 0.7, 0.5]], "avg_acc": 0.7, "plasticity": 0.5, "forgetting": 0.1,
         "bwt": -0.1, "trainable_params": {"base": 1000, "video": 10}, "total_params": 1010,
         "train_seconds": {"base": 1.0, "video": 0.5}, "stages": ["base", "video"]}


def test_add_method_writes_schema_markdown_and_figures(tmp_path):
    add_method(tmp_path, "frozen", ENTRY, benchmark="mcl-digits", modalities=["text", "image", "video"], seed=0,
               losses={"base": [[1, 2.0], [2, 1.5]], "video": [[1, 1.2]]})
    report = add_method(tmp_path, "lora", {**ENTRY, "avg_acc": 0.75}, benchmark="mcl-digits",
                        modalities=["text", "image", "video"], seed=0, losses={"video": [[1, 1.0]]})
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == report
    assert set(on_disk) == {"benchmark", "modalities", "seed", "methods"}
    assert list(on_disk["methods"]) == ["frozen", "lora"]
    md = (tmp_path / "report.md").read_text()
    assert "| lora | 0.750 |" in md and "| video | 0.900 | 0.700 | 0.500 |" in md and "–" in md
    for name in ("accuracy_matrix.png", "loss_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(json.loads((tmp_path / "loss_history.json").read_text())) == {"frozen", "lora"}
    with pytest.raises(ValueError, match="modalities"):
        add_method(tmp_path, "x", ENTRY, benchmark="b", modalities=["text"], seed=0)


def test_check_report_names_the_missing_key():
    with pytest.raises(ValueError, match="'bwt'"):
        check_report({"benchmark": "b", "modalities": ["a", "b", "c"], "seed": 0,
                      "methods": {"m": {k: v for k, v in ENTRY.items() if k != "bwt"}}})
    with pytest.raises(ValueError, match="row 0"):
        check_report({"benchmark": "b", "modalities": ["a"], "seed": 0, "methods": {"m": ENTRY}})


def test_merge_and_report_cli(tmp_path, capsys):
    from modweave.cli import main

    for name in ("a", "b"):
        add_method(tmp_path / name, name, ENTRY, benchmark="mcl-digits", modalities=["text", "image", "video"],
                   seed=0, losses={"base": [[1, 1.0]]}, render_files=False)
    merged = merge_reports([tmp_path / "a", tmp_path / "b" / "report.json"], tmp_path / "all")
    assert list(merged["methods"]) == ["a", "b"]
    (tmp_path / "all" / "report.md").unlink()
    assert main(["report", str(tmp_path / "all")]) == 0
    assert (tmp_path / "all" / "report.md").exists() and "report.md" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_markdown_without_stage_names():
    entry = {k: v for k, v in ENTRY.items() if k != "stages"}
    md = markdown({"benchmark": "b", "modalities": ["t", "i", "v"], "seed": 1, "methods": {"m": entry}})
    assert "| stage 1 | 0.900 | 0.700 | 0.500 |" in md


def test_render_needs_a_report(tmp_path):
    with pytest.raises(FileNotFoundError):
        render(tmp_path)
