"""Bad checkpoints, trainer states and options through the CLI: exit 2, one `error:` line naming the
file or key, no traceback, and no pre-existing file changed."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from modweave.checkpoint import FORMAT


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    from modweave.config import load_run_config
    from modweave.model import XModalLM
    from tinyfactory import TINY

    torch.manual_seed(0)
    model = XModalLM.build(load_run_config(TINY).model)
    out = tmp_path_factory.mktemp("ck") / "ck"
    model.end_stage(out)
    return out


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    from modweave.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def _one_error(argv: list[str], capsys, *needles: str) -> str:
    code, lines = _run(argv, capsys)
    assert code == 2 and len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"modweave {argv[0]}: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def _copy(ck: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(ck, dst)
    return dst


def _edit_manifest(ck: Path, fn) -> None:
    path = ck / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(fn(data)))


def _gen(ck: Path) -> list[str]:
    return ["generate", str(ck), "--modality", "text", "--prompt", "q"]


@pytest.mark.parametrize("edit,needles", [
    (lambda d: [d], ["manifest.json", "JSON list, not an object"]),
    (lambda d: {**d, "stages": []}, ["manifest.json", "'stages'", "non-empty"]),
    (lambda d: {**d, "stages": [{**d["stages"][0], "colour": "red"}]}, ["manifest.json", "stages[0].colour"]),
    (lambda d: {**d, "config": {**d["config"], "llm": {**d["config"]["llm"], "hidden_size": "x"}}},
     ["manifest.json", "llm.hidden_size"]),
    (lambda d: {**d, "config": {**d["config"], "connektor": {}}}, ["manifest.json", "connektor"]),
    (lambda d: {**d, "stages": [{**d["stages"][0], "name": 3}]}, ["manifest.json", "stages[0].name"]),
])
def test_bad_manifests_are_one_line_errors_naming_the_key(ck, tmp_path, capsys, edit, needles):
    bad = _copy(ck, tmp_path)
    _edit_manifest(bad, edit)
    before = (bad / "manifest.json").read_bytes()
    _one_error(_gen(bad), capsys, *needles)
    assert (bad / "manifest.json").read_bytes() == before


def test_generate_and_eval_option_errors(ck, tmp_path, capsys):
    media = tmp_path / "x.png"
    media.write_bytes(b"not read")
    _one_error([*_gen(ck), "--num-beams", "0"], capsys, "--num-beams must be at least 1")
    _one_error([*_gen(ck), "--num-beams", "-2"], capsys, "--num-beams")
    _one_error([*_gen(ck), "--media", str(media)], capsys, "--media", "--modality text")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "modality": "text", "prompt": "q", "answer": "a"}) + "\n")
    _one_error(["eval", str(ck), "--data", str(data), "--num-beams", "0"], capsys, "--num-beams must be at least 1")
    _one_error(["eval", str(ck), "--data", str(data), "--batch-size", "0"], capsys, "--batch-size")


# ------------------------------------------------------------------------------------------------
# select-layers never overwrites what it did not write


def _moextend_manifest(folder: Path) -> Path:
    folder.mkdir()
    stages = [{"name": "base", "modality": None, "method": "base"},
              {"name": "image:extender", "modality": "image", "method": "moextend", "phase": "extender",
               "spec": {"name": "image"}, "state": {"layers": [1], "donors": [[0]], "scores": [0.1, 0.3]}}]
    (folder / "manifest.json").write_text(json.dumps({"format": FORMAT, "config": {}, "stages": stages}))
    return folder


def test_select_layers_refuses_files_it_did_not_write_and_folders(tmp_path, capsys):
    ck = _moextend_manifest(tmp_path / "ck")
    manifest = (ck / "manifest.json").read_bytes()
    _one_error(["select-layers", str(ck), "--out", str(ck / "manifest.json")], capsys, "manifest.json",
               "refusing to overwrite")
    assert (ck / "manifest.json").read_bytes() == manifest
    _one_error(["select-layers", str(ck), "--out", str(tmp_path)], capsys, "is a folder")
    out = tmp_path / "sel.json"
    code, _ = _run(["select-layers", str(ck), "--out", str(out)], capsys)
    assert code == 0 and json.loads(out.read_text())["layers"] == [1]
    code, _ = _run(["select-layers", str(ck), "--out", str(out)], capsys)  # its own output: rewritten
    assert code == 0
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"mine")
    _one_error(["select-layers", str(ck), "--out", str(tmp_path / "b.json"), "--plot", str(notes)], capsys, "--plot")
    assert notes.read_bytes() == b"mine" and not (tmp_path / "b.json").exists()


# ------------------------------------------------------------------------------------------------
# trainer state on --resume


def _trainer_state(tmp_path: Path):
    from modweave.training.state import save_trainer_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    folder = save_trainer_state(tmp_path, "audio", 2, model, opt, sched, [[1, 0.5], [2, 0.4]])
    return folder, model, opt, sched


class NotATensor:
    pass


@pytest.mark.parametrize("damage,name,why", [
    ("pickle", "optimizer.pt", "does not unpickle"),
    ("truncate", "optimizer.pt", "unreadable optimizer state"),
    ("truncate", "params.safetensors", "unreadable parameters"),
    ("truncate", "state.json", "unreadable trainer state"),
])
def test_a_corrupt_or_pickled_trainer_state_names_the_file_and_the_fix(tmp_path, damage, name, why):
    from modweave.training.state import TrainerStateError, load_trainer_state

    folder, model, opt, sched = _trainer_state(tmp_path)
    target = folder / name
    if damage == "pickle":
        target.write_bytes(pickle.dumps({"state": NotATensor(), "param_groups": []}, protocol=2))
    else:
        target.write_bytes(target.read_bytes()[: 10])
    with pytest.raises(TrainerStateError) as info:
        load_trainer_state(folder, model, opt, sched)
    msg = str(info.value)
    assert str(target) in msg and why in msg and f"delete {folder.parent}" in msg and "--resume" in msg
    assert "weights_only=False" not in msg and "\n" not in msg


def test_an_intact_trainer_state_still_restores(tmp_path):
    from modweave.training.state import load_trainer_state

    folder, model, opt, sched = _trainer_state(tmp_path)
    weight = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.zero_()
    state = load_trainer_state(folder, model, opt, sched)
    assert state["step"] == 2 and torch.equal(model.weight, weight)


def test_sha256_null_is_an_error_and_no_verify_is_the_explicit_opt_out(ck, tmp_path, capsys):
    bad = _copy(ck, tmp_path)
    _edit_manifest(bad, lambda d: {**d, "stages": [{**d["stages"][0], "sha256": None}]})
    _one_error(_gen(bad), capsys, "stage 'base' has no sha256", "--no-verify")
    from modweave.cli import main

    assert main([*_gen(bad), "--no-verify", "--max-new-tokens", "1"]) == 0
    assert capsys.readouterr().out.startswith("greedy: ")
