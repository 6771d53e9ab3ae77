"""Run folders and resume: no command writes over another run or over the user's files; `--resume`
says what it does; interruptions and OS errors end in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modweave.cli import main
from modweave.runs import OWNER_FILE, check_run_folder, claim_run_folder, first_difference, run_kind

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "test-train.yaml"
QUICK = ["eval.enabled=false", "train.steps=1", "train.base.steps=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error(capsys, cmd: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"modweave {cmd}: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_mcl_digits_is_never_written_over_a_users_folder(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x").write_text("keep")
    rc = main(["train", str(CONFIG), f"data.root={mine}", "--out", str(tmp_path / "run")])
    assert rc == 2
    line = _one_error(capsys, "train")
    assert str(mine) in line and "data.root" in line
    assert _snapshot(mine) == {"x": b"keep"}
    assert not (tmp_path / "run").exists()


def test_mcl_digits_is_written_into_a_new_folder(tmp_path):
    root = tmp_path / "new"
    assert main(["train", str(CONFIG), f"data.root={root}", *QUICK, "--out", str(tmp_path / "run")]) == 0
    assert (root / "meta.json").is_file()
    assert run_kind(tmp_path / "run") == "train"


@pytest.mark.parametrize("owner_files, kind, expect", [
    ({"demo.json": "{}"}, "train", "holds a modweave demo run"),
    ({OWNER_FILE: '{"kind": "demo"}'}, "train", "holds a modweave demo run"),
    ({"progress.json": "{}"}, "demo", "holds a modweave train run"),
    ({OWNER_FILE: '{"kind": "train"}'}, "demo", "holds a modweave train run"),
    ({"notes.txt": "mine"}, "train", "not a modweave run folder"),
    ({"notes.txt": "mine"}, "demo", "not a modweave run folder"),
])
def test_a_folder_owned_by_something_else_is_refused_untouched(tmp_path, owner_files, kind, expect):
    for name, text in owner_files.items():
        (tmp_path / name).write_text(text)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=expect):
        claim_run_folder(tmp_path, kind)
    assert _snapshot(tmp_path) == before


def test_claiming_is_idempotent_and_never_changes_contents(tmp_path):
    run = claim_run_folder(tmp_path / "r", "train")
    (run / "progress.json").write_text("{}")
    claim_run_folder(run, "train")
    assert json.loads((run / OWNER_FILE).read_text())["kind"] == "train"
    assert (run / "progress.json").read_text() == "{}"
    assert check_run_folder(tmp_path / "missing", "demo") == tmp_path / "missing"
    assert not (tmp_path / "missing").exists()  # a check writes nothing


@pytest.mark.parametrize("argv", [
    ["train", str(CONFIG), "data.root={data}", "--out", "{out}"],
    ["demo", "--quick", "--out", "{out}"],
])
def test_out_that_is_a_file_is_one_line_error(tmp_path, capsys, argv):
    out = tmp_path / "file.txt"
    out.write_text("keep")
    rc = main([a.replace("{out}", str(out)).replace("{data}", str(tmp_path / "d")) for a in argv])
    assert rc == 2
    assert "is a file" in _one_error(capsys, argv[0])
    assert out.read_text() == "keep"


def test_train_into_a_demo_folder_and_demo_into_a_train_run_are_refused(tmp_path, capsys):
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "demo.json").write_text('{"seed": 0}')
    (demo / "report.json").write_text('{"methods": {"ana": {}}}')
    before = _snapshot(demo)
    assert main(["train", str(CONFIG), f"data.root={tmp_path / 'd'}", "--out", str(demo)]) == 2
    assert "demo run" in _one_error(capsys, "train")
    assert _snapshot(demo) == before

    run = tmp_path / "run"
    assert main(["train", str(CONFIG), f"data.root={tmp_path / 'd'}", *QUICK, "--out", str(run)]) == 0
    capsys.readouterr()
    before = _snapshot(run)
    assert main(["demo", "--quick", "--out", str(run)]) == 2
    assert "train run" in _one_error(capsys, "demo")
    assert _snapshot(run) == before  # no demo.json left behind to block the next correct call
    assert main(["train", str(CONFIG), f"data.root={tmp_path / 'd'}", *QUICK, "--out", str(run), "--resume"]) == 0


def test_resume_refuses_a_changed_config_and_names_the_key(tmp_path, capsys):
    run, data = tmp_path / "run", f"data.root={tmp_path / 'd'}"
    assert main(["train", str(CONFIG), data, *QUICK, "--out", str(run)]) == 0
    capsys.readouterr()
    before = _snapshot(run)
    assert main(["train", str(CONFIG), data, *QUICK, "train.lr=0.5", "--out", str(run), "--resume"]) == 2
    line = _one_error(capsys, "train")
    assert "'train.lr'" in line and "--force-config" in line
    assert _snapshot(run) == before
    assert main(["train", str(CONFIG), data, *QUICK, "train.lr=0.5", "--out", str(run), "--resume",
                 "--force-config"]) == 0
    progress = json.loads((run / "progress.json").read_text())
    assert progress["config"]["train"]["lr"] == 0.5  # the run now records the config it continued with


def test_resume_on_a_folder_that_never_started_says_so(tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level("WARNING", logger="modweave"):
        assert main(["train", str(CONFIG), f"data.root={tmp_path / 'd'}", *QUICK, "--out", str(run), "--resume"]) == 0
    assert any("no run to resume" in r.getMessage() for r in caplog.records)


def test_interrupt_tells_how_to_continue(tmp_path, capsys, monkeypatch):
    import modweave.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(modweave.train, "run_training", interrupted)
    assert main(["train", str(CONFIG), "--out", str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err.strip() == "modweave train: interrupted: rerun with --resume to continue"


def test_os_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import modweave.train

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "progress.json"))

    monkeypatch.setattr(modweave.train, "run_training", disk_full)
    assert main(["train", str(CONFIG), "--out", str(tmp_path / "run")]) == 2
    line = _one_error(capsys, "train")
    assert "No space left on device" in line and "progress.json" in line


def test_report_merge_keeps_the_folders_own_methods(tmp_path):
    from modweave.report import merge_reports, write_report

    def report(method: str) -> dict:
        return {"benchmark": "mcl-digits", "modalities": ["text", "image"], "seed": 0, "methods": {method: {
            "acc_matrix": [[1.0, 0.5]], "learned_at": [0, 0], "avg_acc": 0.75, "plasticity": None,
            "forgetting": None, "bwt": None, "trainable_params": {"base": 1}, "total_params": 2, "train_seconds": {"base": 1.0}}}}

    for name in ("own", "other"):
        write_report(tmp_path / name, report(name), render_files=False)
    merged = merge_reports([tmp_path / "other"], tmp_path / "own")
    assert list(merged["methods"]) == ["own", "other"]
    assert list(json.loads((tmp_path / "own" / "report.json").read_text())["methods"]) == ["own", "other"]


def test_first_difference_names_the_key():
    assert first_difference({"a": {"b": 1}}, {"a": {"b": 2}}) == ("a.b", 1, 2)
    assert first_difference({"s": [{"m": "x"}]}, {"s": [{"m": "y"}]}) == ("s[0].m", "x", "y")
    assert first_difference({"s": [1]}, {"s": [1, 2]}) == ("s[1]", "(missing)", 2)
    assert first_difference({"a": 1}, {"a": 1}) is None


def _grow_yaml(tmp_path: Path) -> Path:
    """Only the new stage: depth through ana (the model comes from the parent checkpoint)."""
    import yaml

    data = yaml.safe_load(CONFIG.read_text())
    path = tmp_path / "grow.yaml"
    path.write_text(yaml.safe_dump({
        "name": "grow", "train": data["train"], "eval": data["eval"],
        "data": {"digits": {**data["data"]["digits"], "modalities": ["text", "image", "video", "audio", "depth"]},
                 "heldout": 2},
        "stages": [{"modality": {"name": "depth", "encoder": "image", "cue": " depth: ", "loader": {"size": 16}},
                    "method": "ana"}]}))
    return path


def test_grow_an_existing_checkpoint_from_the_cli(tmp_path, capsys):
    import torch

    from modweave.model import XModalLM

    data = f"data.root={tmp_path / 'd'}"
    parent = tmp_path / "parent"
    five = "data.digits.modalities=[text,image,video,audio,depth]"
    assert main(["train", str(CONFIG), data, five, "--out", str(parent)]) == 0
    before = _snapshot(parent)
    child = tmp_path / "child"
    assert main(["train", str(_grow_yaml(tmp_path)), data, "--from", str(parent / "checkpoint"),
                 "--out", str(child)]) == 0
    assert _snapshot(parent) == before  # the parent is read, never written
    manifest = json.loads((child / "checkpoint" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["base", "video", "audio", "depth"]
    assert manifest["parent"]["stages"] == 3
    files = sorted(p.name for p in (child / "checkpoint").glob("*.safetensors"))
    assert len(files) == 1 and "depth" in files[0]  # the parent's stages are referenced, not copied

    grown = XModalLM.from_pretrained(child / "checkpoint")
    assert grown.modalities == ["image", "video", "audio", "depth"]
    old = XModalLM.from_pretrained(parent / "checkpoint")
    back = XModalLM.from_pretrained(child / "checkpoint", upto="audio")  # reaches into the parent's stages
    theirs = back.state_dict()
    assert old.state_dict().keys() == theirs.keys()
    for k, v in old.state_dict().items():
        assert torch.equal(v, theirs[k]), k
    report = json.loads((child / "report.json").read_text())
    entry = report["methods"]["ana"]
    assert report["modalities"] == ["text", "image", "video", "audio", "depth"]
    assert entry["acc_matrix"][0][:4] == json.loads((parent / "report.json").read_text())["methods"][
        "test-train"]["acc_matrix"][-1][:4]  # the parent, evaluated as this run's starting row
    assert entry["acc_matrix"][1][:4] == entry["acc_matrix"][0][:4]  # ana: nothing of the parent forgotten

    # resume finds the parent by itself; a config with a model section or a known modality is refused
    assert main(["train", str(_grow_yaml(tmp_path)), data, "--out", str(child), "--resume"]) == 0
    capsys.readouterr()
    assert main(["train", str(CONFIG), data, "--from", str(parent / "checkpoint"), "--out", str(tmp_path / "c2")]) == 2
    assert "remove the 'model' section" in _one_error(capsys, "train")


def test_a_spec_num_frames_reaches_the_loader_or_is_refused(tmp_path, digits_root):
    from modweave.config import ConfigError, load_run_config
    from modweave.train import ContinualTrainer

    def trainer(*overrides: str) -> ContinualTrainer:
        cfg = load_run_config(CONFIG, [f"data.root={digits_root}", *overrides])
        return ContinualTrainer(cfg, tmp_path / "run")

    t = trainer("stages.0.modality.num_frames=3", "stages.0.modality.loader.num_frames=3")
    assert t.cfg.stages[0].modality.loader["num_frames"] == 3
    assert t.data.train("video")[0]["media"].shape[0] == 3
    t = trainer("stages.0.modality.num_frames=null", "stages.0.modality.loader={size: 16}")
    assert t.data.train("video")[0]["media"].shape[0] == 5  # the loader's own default
    t = trainer("stages.0.modality.num_frames=4", "stages.0.modality.loader={size: 16}")
    assert t.cfg.stages[0].modality.loader == {"size": 16, "num_frames": 4}  # what the checkpoint records
    with pytest.raises(ConfigError, match=r"stages\[0\].modality.*disagrees"):
        trainer("stages.0.modality.num_frames=3")  # the loader says 2
    with pytest.raises(ConfigError, match=r"model.base_modalities\[0\].*at most 1 frame"):
        trainer("model.base_modalities.0.num_frames=2")


def test_tiny_preset_runs_on_mcl_digits_and_unknown_words_warn(tmp_path, caplog):
    tiny = CONFIG.parent / "tiny.yaml"
    fast = ["train.steps=1", "train.base.steps=1", "eval.enabled=false", "train.batch_size=4"]
    root = f"data.root={tmp_path / 'd'}"
    with caplog.at_level("WARNING", logger="modweave"):
        assert main(["train", str(tiny), root, *fast, "--out", str(tmp_path / "a")]) == 0
    warned = [r.getMessage() for r in caplog.records if "map to <unk>" in r.getMessage()]
    assert warned and "words in the run's prompts and answers" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="modweave"):  # an empty corpus is learnt from the data: no <unk>
        assert main(["train", str(tiny), root, *fast, "model.tokenizer.corpus=[]", "--out", str(tmp_path / "b")]) == 0
    assert not [r for r in caplog.records if "map to <unk>" in r.getMessage()]
    from modweave.model import XModalLM

    tok = XModalLM.from_pretrained(tmp_path / "b" / "checkpoint").tokenizer
    ids = tok("what digit is shown ?", add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids
