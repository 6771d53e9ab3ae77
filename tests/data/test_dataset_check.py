"""MediaDataset items, data check reports, and the data CLI handlers' exit codes and one-line errors."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch

from modweave.data.check import check_file
from modweave.data.commands import add_data_commands
from modweave.data.dataset import MediaDataset, load_meta
from modweave.data.formats import AnnotationError, read_jsonl
from modweave.modalities import list_modalities

SHAPES = {"image": (3, 32, 32), "video": (3, 3, 32, 32), "audio": (2, 64, 32), "depth": (1, 3, 32, 32), "point_cloud": (256, 3)}


@pytest.mark.parametrize("modality", list_modalities())
def test_dataset_items(digits_root, modality, small):
    ds = MediaDataset.from_file(digits_root / f"{modality}_test.jsonl", settings_by_modality=small)
    assert len(ds) == 8
    item = ds[1]
    assert set(item) == {"id", "modality", "media", "media_modalities", "task", "prompt", "answer", "candidates"}
    assert item["modality"] == modality and item["answer"] in item["candidates"]
    assert item["media_modalities"] == ([] if modality == "text" else [modality])
    if modality == "text":
        assert item["media"] is None
    else:
        assert item["media"].dtype == torch.float32 and tuple(item["media"].shape) == SHAPES[modality]


def test_dataset_refuses_escaping_media(digits_root, tmp_path):
    recs = read_jsonl(digits_root / "image_train.jsonl")[:1]
    recs[0].media = "../../etc/passwd.png"
    with pytest.raises(AnnotationError, match="escapes the data root"):
        MediaDataset(recs, digits_root)[0]
    with pytest.raises(ValueError, match="unknown modality"):
        MediaDataset([], digits_root, {"smell": {}})


def test_load_meta(digits_root, tmp_path):
    assert load_meta(digits_root)["benchmark"] == "mcl-digits"
    with pytest.raises(AnnotationError, match="meta.json not found"):
        load_meta(tmp_path)


def test_check_counts_every_modality(digits_root):
    for m in list_modalities():
        report = check_file(digits_root / f"{m}_train.jsonl", progress=False)
        assert report.ok and dict(report.counts) == {(m, "qa"): 12}


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_data_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def _copy(digits_root: Path, tmp_path: Path, modality: str) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(digits_root, root)
    return root / f"{modality}_train.jsonl"


def _break_first_media(jsonl: Path, how: str) -> Path:
    rec = json.loads(jsonl.read_text().splitlines()[0])
    media = jsonl.parent / rec["media"]
    if how == "corrupt":
        media.write_bytes(b"junk" * 10)
    elif how == "missing":
        media.unlink()
    return media


def test_cli_digits_writes_and_check_passes(tmp_path, capsys):
    assert _run(["data", "digits", "--out", str(tmp_path / "b"), "--n-train", "2", "--n-test", "1", "--modalities", "text,audio", "--workers", "1"]) == 0
    assert "wrote MCL-Digits" in capsys.readouterr().out
    assert _run(["data", "check", str(tmp_path / "b/audio_train.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "audio" in out and "4 records ok, 0 problems" in out


def _assert_one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err
    for n in needles:
        assert n in err


@pytest.mark.parametrize("modality, how", [("image", "corrupt"), ("audio", "corrupt"), ("video", "corrupt"), ("depth", "missing"), ("point_cloud", "corrupt")])
def test_cli_check_reports_bad_media_by_file_and_line(digits_root, tmp_path, capsys, modality, how):
    jsonl = _copy(digits_root, tmp_path, modality)
    media = _break_first_media(jsonl, how)
    assert _run(["data", "check", str(jsonl)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2  # both questions about the sample share the broken file
    assert lines[0].startswith(f"error: {jsonl}:1: {media}: ") and "Traceback" not in captured.err
    assert "10 records ok, 2 problems" in captured.out


def test_cli_check_empty_point_cloud_and_wrong_extension(digits_root, tmp_path, capsys):
    from modweave.modalities.ply import write_ply

    jsonl = _copy(digits_root, tmp_path, "point_cloud")
    write_ply(_break_first_media(jsonl, "keep"), torch.zeros(0, 3).numpy())
    recs = jsonl.read_text().splitlines()
    recs[2] = recs[2].replace(".ply", ".txt")
    (jsonl.parent / json.loads(recs[2])["media"]).write_text("1 2 3")
    jsonl.write_text("\n".join(recs) + "\n")
    assert _run(["data", "check", str(jsonl)]) == 2
    err = capsys.readouterr().err
    assert "empty point cloud" in err and f"{jsonl}:3:" in err and "wrong extension '.txt'" in err


@pytest.mark.parametrize(
    "line, needle",
    [("{oops", "malformed JSON"), ('{"id": "x", "modality": "smell", "media": null, "task": "qa", "prompt": "p", "answer": "a"}', "unknown modality 'smell'")],
)
def test_cli_check_bad_annotation_line(tmp_path, capsys, line, needle):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "t", "modality": "text", "media": null, "task": "qa", "prompt": "p", "answer": "a"}\n' + line + "\n")
    assert _run(["data", "check", str(path)]) == 2
    _assert_one_line_error(capsys, f"{path}:2:", needle)


def test_cli_check_root_escape_and_missing_file(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "i", "modality": "image", "media": "../x.png", "task": "qa", "prompt": "p", "answer": "a"}\n')
    assert _run(["data", "check", str(path), "--root", str(tmp_path)]) == 2
    _assert_one_line_error(capsys, f"{path}:1:", "escapes the data root")
    assert _run(["data", "check", str(tmp_path / "nope.jsonl")]) == 2
    _assert_one_line_error(capsys, "nope.jsonl", "not found")


def test_cli_digits_bad_input(digits_root, tmp_path, capsys):
    assert _run(["data", "digits", "--out", str(tmp_path / "x"), "--modalities", "image,smell"]) == 2
    _assert_one_line_error(capsys, "unknown modality 'smell'")
    assert _run(["data", "digits", "--out", str(digits_root)]) == 2
    _assert_one_line_error(capsys, "already exists")
    assert not (tmp_path / "x").exists()
