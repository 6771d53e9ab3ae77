"""`data check` on a data folder, empty annotation files, and the data root's symlink containment."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modweave.cli import main
from modweave.data.check import annotation_files, check_file, check_folder
from modweave.data.dataset import MediaDataset, read_records
from modweave.data.formats import AnnotationError, read_jsonl, resolve_media
from modweave.modalities import list_modalities


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["data", "check", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.out, captured.err


def _record(media, modality: str = "image", rid: str = "r1") -> str:
    return json.dumps({"id": rid, "modality": modality, "media": media, "task": "qa", "prompt": "p", "answer": "a"}) + "\n"


# ---- a folder ----------------------------------------------------------------------------------
def test_check_folder_checks_every_annotation_file(digits_root, tmp_path, capsys):
    root = tmp_path / "mcl"
    shutil.copytree(digits_root, root)
    files, skipped = annotation_files(root)
    assert [p.name for p in skipped] == ["meta.json"]  # an object without "annotations": not records
    assert {p.name for p in files} == {f"{m}_{s}.jsonl" for m in [*list_modalities(), "xmodal"] for s in ("train", "test")}
    rc, out, err = _cli(capsys, str(root / "image_train.jsonl"), "--root", str(root))  # one file: as before
    assert rc == 0 and out.splitlines()[-1] == "12 records ok, 0 problems"
    rc, out, err = _cli(capsys, str(root))
    assert rc == 0 and err == ""
    n = sum(len(read_jsonl(p)) for p in files)
    assert f"{len(files)} annotation files, {n} records ok, 0 problems" in out and "skipped 1 .json" in out
    assert [line[3:] for line in out.splitlines() if line.startswith("== ")] == [str(p) for p in files]


def test_check_folder_reports_each_bad_file_and_goes_on(digits_root, tmp_path, capsys):
    root = tmp_path / "mcl"
    shutil.copytree(digits_root, root)
    (root / "extra").mkdir()
    (root / "extra" / "empty.jsonl").write_text("\n")
    (root / "extra" / "lavis.json").write_text(json.dumps([{"image": "missing.png", "caption": "c"}]))
    rc, out, err = _cli(capsys, str(root))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert f"{root / 'extra' / 'empty.jsonl'}: no records" in err
    assert f"{root / 'extra' / 'lavis.json'}[0]: {root / 'missing.png'}: file not found" in err  # media vs the folder
    assert "2 problems" in out.splitlines()[-1]


def test_check_folder_function(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "sub" / "a.jsonl").write_text(_record("x.png"))  # media relative to the folder, not sub/
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "b.jsonl").write_text("junk")
    reports, skipped = check_folder(tmp_path, progress=False)
    assert list(reports) == [tmp_path / "sub" / "a.jsonl"] and skipped == []
    assert reports[tmp_path / "sub" / "a.jsonl"].ok and dict(reports[tmp_path / "sub" / "a.jsonl"].counts) == {("image", "qa"): 1}


def test_check_folder_without_annotations(tmp_path, capsys):
    (tmp_path / "meta.json").write_text("{}")
    rc, _, err = _cli(capsys, str(tmp_path))
    assert rc == 2 and err.strip() == f"error: {tmp_path}: no annotation files (.jsonl, or LAVIS / LLaVA .json) under this folder"


# ---- empty annotation files ------------------------------------------------------------------------
@pytest.mark.parametrize("name, text", [("e.jsonl", ""), ("b.jsonl", "\n  \n"), ("l.json", "[]")])
def test_empty_annotation_file_is_an_error(tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_text(text)
    rc, out, err = _cli(capsys, str(path))
    assert rc == 2 and err.strip() == f"error: {path}: no records (the annotation file is empty)" and out == ""
    with pytest.raises(AnnotationError, match="no records"):
        MediaDataset.from_file(path)  # what `eval --data` reads
    assert read_records(path, allow_empty=True) == []


# ---- symlinks out of the data root -------------------------------------------------------------------
@pytest.fixture
def linked_root(tmp_path) -> Path:
    """``root/`` holding a real image, a link to an image outside, a link to one inside, and a frame folder
    with one frame linked from outside."""
    outside, root = tmp_path / "outside", tmp_path / "root"
    outside.mkdir()
    root.mkdir()
    for p in (outside / "secret.png", root / "own.png", outside / "f1.png"):
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(p)
    os.symlink(outside / "secret.png", root / "leak.png")
    os.symlink(root / "own.png", root / "alias.png")
    (root / "clip").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "clip" / "f0.png")
    os.symlink(outside / "f1.png", root / "clip" / "f1.png")
    return root


def test_resolve_media_refuses_links_out_unless_allowed(linked_root):
    assert resolve_media("own.png", linked_root) == linked_root / "own.png"
    assert resolve_media("alias.png", linked_root) == linked_root / "alias.png"  # a link inside the root is fine
    with pytest.raises(ValueError, match=r"media path 'leak.png' resolves through a symlink to .*outside/secret.png, "
                                         r"outside the data root .*root \(set data.follow_symlinks: true"):
        resolve_media("leak.png", linked_root)
    with pytest.raises(ValueError, match="media path 'clip/f1.png' resolves through a symlink"):
        resolve_media("clip", linked_root)  # a frame folder's files are read too
    with pytest.raises(ValueError, match="'leak.png' resolves through a symlink"):
        resolve_media({"depth": "own.png", "rgb": "leak.png"}, linked_root)
    assert resolve_media("leak.png", linked_root, follow_symlinks=True) == linked_root / "leak.png"
    assert resolve_media("clip", linked_root, follow_symlinks=True) == linked_root / "clip"


def test_root_itself_behind_a_symlink_is_fine(linked_root, tmp_path):
    os.symlink(linked_root, tmp_path / "via")
    assert resolve_media("own.png", tmp_path / "via") == tmp_path / "via" / "own.png"


def test_dataset_and_check_refuse_links_out(linked_root, capsys):
    ann = linked_root / "a.jsonl"
    ann.write_text(_record("own.png") + _record("leak.png", rid="r2"))
    ds = MediaDataset.from_file(ann)
    assert ds[0]["media"].shape == (3, 224, 224)
    with pytest.raises(AnnotationError, match=r"a.jsonl:2: media path 'leak.png' resolves through a symlink"):
        ds[1]
    assert MediaDataset.from_file(ann, follow_symlinks=True)[1]["media"].shape == (3, 224, 224)
    rc, out, err = _cli(capsys, str(ann))
    assert rc == 2 and err.strip().splitlines() == [f"error: {ann}:2: media path 'leak.png' resolves through a symlink to "
                                                    f"{(linked_root.parent / 'outside' / 'secret.png').resolve()}, outside "
                                                    f"the data root {linked_root.resolve()} (set data.follow_symlinks: true "
                                                    "to allow links out of the root)"]
    assert _cli(capsys, str(ann), "--follow-symlinks")[0] == 0
    assert check_file(ann, progress=False, follow_symlinks=True).ok
