"""Bad configuration input: one `modweave <cmd>: error:` line naming the file or key, exit 2, no
traceback, and nothing written (no run folder, no MCL-Digits) because the config is checked first."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from modweave.cli import main

REPO = Path(__file__).resolve().parents[1]
VALID = yaml.safe_load((REPO / "configs" / "test-train.yaml").read_text())


def _set(node, dotted: str, value) -> None:
    """`node[a][b]...[z] = value` for `dotted` = "a.b...z" (numbers index lists)."""
    *path, last = dotted.split(".")
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _write(tmp_path: Path, changes: dict | None = None, text: str | bytes | None = None) -> Path:
    """The valid test preset with `changes` applied (data.root: a folder that does not exist yet),
    or the raw `text`, written to tmp_path/bad.yaml."""
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    data = yaml.safe_load(yaml.safe_dump(VALID))
    data["data"]["root"] = str(tmp_path / "data")
    for key, value in (changes or {}).items():
        _set(data, key, value)
    path.write_text(yaml.safe_dump(data))
    return path


def _one_error_line(capsys, cmd: str) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"modweave {cmd}: error: "), lines[0]
    assert captured.out == ""
    return lines[0]


# (id, changes to the valid preset, overrides, what the message must name)
BAD_VALUES = [
    ("str-for-int", {"model.llm.hidden_size": "x"}, [], "'model.llm.hidden_size'"),
    ("str-for-float", {"train.lr": "fast"}, [], "'train.lr'"),
    ("str-for-optional-int", {"data.max_train": "lots"}, [], "'data.max_train'"),
    ("bool-for-int", {"train.steps": True}, [], "'train.steps'"),
    ("bool-for-int-nested", {"model.connector.num_query_tokens": False}, [], "'model.connector.num_query_tokens'"),
    ("float-for-int", {"eval.batch_size": 2.5}, [], "'eval.batch_size'"),
    ("str-for-list", {"model.tokenizer.corpus": "zero one"}, [], "'model.tokenizer.corpus'"),
    ("str-for-bool", {"base_train.llm": "yes"}, [], "'base_train.llm'"),
    ("bool-for-mapping", {"base_train": True}, [], "'base_train'"),
    ("mapping-for-list", {"stages": {"video": {}}}, [], "'stages'"),
    ("short-betas", {"train.betas": [0.9]}, [], "'train.betas'"),
    ("encoder-width-str", {"model.base_modalities.0.encoder.width": "wide"}, [],
     "'model.base_modalities[0].encoder.width'"),
    ("typo-base_train", {"base_train.lmm": True}, [], "'base_train.lmm'"),
    ("typo-train.base", {"train.base.stpes": 4}, [], "'train.base.stpes'"),
    ("bad-train.base-value", {"train.base.steps": -4}, [], "'train.base.steps'"),
    ("typo-data.digits", {"data.digits.n_trian": 6}, [], "'data.digits.n_trian'"),
    ("data.digits-overwrite", {"data.digits.overwrite": True}, [], "'data.digits.overwrite'"),
    ("stage-train-type", {"stages.1.train": {"lr": "fast"}}, [], "'stages[1].train.lr'"),
    ("stage-train-typo", {"stages.1.train": {"stpes": 2}}, [], "'stages[1].train.stpes'"),
    ("stage-phase-value", {"stages.1.train": {"phases": {"train": {"steps": -1}}}}, [],
     "'stages[1].train.phases.train.steps'"),
    ("unknown-method", {"stages.1.method": "lorra"}, [], "'stages[1].method'"),
    ("typo-method-settings", {"stages.1.settings": {"rnak": 4}}, [], "'stages[1].settings"),
    ("unknown-phase", {"stages.1.train": {"phases": {"align": {"steps": 1}}}}, [], "'stages[1].train.phases.align'"),
    ("heldout-negative", {"data.heldout": -4}, [], "'data.heldout'"),
    ("max-test-zero", {"data.max_test": 0}, [], "'data.max_test'"),
    ("eval-batch-zero", {"eval.batch_size": 0}, [], "'eval.batch_size'"),
    ("max-new-tokens-zero", {"eval.max_new_tokens": 0}, [], "'eval.max_new_tokens'"),
    ("num-beams-zero", {"eval.num_beams": 0}, [], "'eval.num_beams'"),
    ("steps-negative", {"train.steps": -1}, [], "'train.steps'"),
    ("batch-zero", {"train.batch_size": 0}, [], "'train.batch_size'"),
    ("grad-accum-zero", {"train.grad_accum": 0}, [], "'train.grad_accum'"),
    ("lr-negative", {"train.lr": -0.1}, [], "'train.lr'"),
    ("lr-nan", {"train.lr": float("nan")}, [], "'train.lr'"),
    ("grad-norm-zero", {"train.max_grad_norm": 0}, [], "'train.max_grad_norm'"),
    ("layers-zero", {"model.llm.num_layers": 0}, [], "'model.llm.num_layers'"),
    ("frames-zero", {"stages.0.modality.num_frames": 0}, [], "'stages[0].modality.num_frames'"),
    ("precision-choice", {"train.mixed_precision": "fp8"}, [], "'train.mixed_precision'"),
    ("qa-mode-choice", {"eval.qa_mode": "guess"}, [], "'eval.qa_mode'"),
    ("override-index-out-of-range", {}, ["stages.9.method=ana"], "'stages.9.method'"),
    ("override-index-not-a-number", {}, ["stages.x.method=ana"], "'stages.x.method'"),
    ("override-bad-yaml", {}, ["train.steps=[1"], "'train.steps=[1'"),
    ("override-type", {}, ["model.llm.hidden_size=x"], "'model.llm.hidden_size'"),
    ("override-typo", {}, ["train.stpes=3"], "'train.stpes'"),
]

BAD_FILES = [
    ("yaml-syntax", "name: x\nmodel: {llm: [\ntrain: {steps: 3}\n", "line 4"),
    ("yaml-tab", "name: x\n\tmodel: 3\n", "line 2"),
    ("not-utf8", b"\xff\xfe\x00name", "UTF-8"),
    ("top-level-list", "- name: x\n", "mapping"),
]


def _rows(rows):
    return [pytest.param(*r[1:], id=r[0]) for r in rows]


@pytest.mark.parametrize("changes, overrides, key", _rows(BAD_VALUES))
def test_train_refuses_bad_values_before_writing(tmp_path, capsys, changes, overrides, key):
    cfg = _write(tmp_path, changes)
    rc = main(["train", str(cfg), *overrides, "--out", str(tmp_path / "run")])
    line = _one_error_line(capsys, "train")
    assert rc == 2 and key in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("text, where", _rows(BAD_FILES))
def test_train_refuses_bad_files(tmp_path, capsys, text, where):
    cfg = _write(tmp_path, text=text)
    rc = main(["train", str(cfg), "--out", str(tmp_path / "run")])
    line = _one_error_line(capsys, "train")
    assert rc == 2 and str(cfg) in line and where in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, key", [
    pytest.param(["train.stpes=3"], "'train.stpes'", id="override-typo-train"),
    pytest.param(["eval.num_beams=0"], "'eval.num_beams'", id="override-range"),
    pytest.param(["base_train.conector=true"], "'base_train.conector'", id="override-typo-base_train"),
    pytest.param(["--memory", "--micro-batch", "-1"], "--micro-batch", id="micro-batch-negative"),
    pytest.param(["--memory", "--micro-batch", "0"], "--micro-batch", id="micro-batch-zero"),
    pytest.param(["--memory", "--seq-len", "-5"], "--seq-len", id="seq-len-negative"),
    pytest.param(["--micro-batch", "2"], "--micro-batch", id="memory-flag-without-memory"),
    pytest.param(["--quantization", "4bit"], "--quantization", id="quantization-without-memory"),
])
def test_params_refuses_bad_input(tmp_path, capsys, args, key):
    cfg = _write(tmp_path)
    rc = main(["params", str(cfg), *args])
    line = _one_error_line(capsys, "params")
    assert rc == 2 and key in line
    assert not (tmp_path / "data").exists()


def test_the_valid_preset_passes(tmp_path, capsys):
    # the rows above fail because of their change, not because the starting point is wrong
    assert main(["params", str(_write(tmp_path)), "--memory", "--micro-batch", "2"]) == 0
    assert "base" in capsys.readouterr().out


def test_yaml_scientific_notation_is_a_number(tmp_path):
    from modweave.config import load_run_config
    from modweave.training.config import TrainConfig, parse_section

    cfg = load_run_config(_write(tmp_path), ["train.lr=1e-4"])  # YAML 1.1 reads `1e-4` as a string
    assert parse_section(TrainConfig, cfg.train, "train").lr == 1e-4


def test_base_train_keys_are_set_base_trainable_flags():
    from modweave.config import BaseTrainConfig
    from modweave.model import XModalLM

    params = [p for p in inspect.signature(XModalLM.set_base_trainable).parameters if p != "self"]
    assert [f.name for f in dataclasses.fields(BaseTrainConfig)] == params


def test_encoder_options_hook_is_checked(tmp_path, monkeypatch):
    """The hook an encoder kind uses to declare its options: unknown or mistyped ones are refused."""
    import modweave.encoders
    from modweave.config import ConfigError, load_run_config

    @dataclasses.dataclass
    class PatchOptions:
        image_size: int = 32
        patch: int = 4

    monkeypatch.setattr(modweave.encoders, "encoder_options",
                        lambda kind: PatchOptions if kind == "tiny-image" else None, raising=False)
    load_run_config(_write(tmp_path))  # the preset's own options pass
    with pytest.raises(ConfigError, match=r"'model\.base_modalities\[0\]\.encoder\.options\.pach'"):
        load_run_config(_write(tmp_path, {"model.base_modalities.0.encoder.options.pach": 4}))
    with pytest.raises(ConfigError, match=r"'model\.base_modalities\[0\]\.encoder\.options\.patch'"):
        load_run_config(_write(tmp_path, {"model.base_modalities.0.encoder.options.patch": "4"}))


def test_unreadable_file_is_one_line(tmp_path, capsys, monkeypatch):
    cfg = _write(tmp_path)

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)  # tests may run as root, where chmod 000 still reads
    assert main(["params", str(cfg)]) == 2
    line = _one_error_line(capsys, "params")
    assert str(cfg) in line and "Permission denied" in line


def test_run_sections_are_the_trainers_settings(tmp_path):
    # the typed sections a run trains with: base overrides, stage overrides and phases applied
    from modweave.config import load_run_config
    from modweave.training.config import run_sections

    cfg = load_run_config(_write(tmp_path, {"stages.1.train": {"lr": 0.01, "phases": {"train": {"steps": 7}}}}))
    s = run_sections(cfg)
    assert (s.train.steps, s.base.steps, s.eval.max_new_tokens, s.data.heldout) == (3, 4, 2, 2)
    assert [list(p) for p in s.stages] == [["train"], ["train"]]
    assert (s.stages[0]["train"].lr, s.stages[1]["train"].lr, s.stages[1]["train"].steps) == (0.001, 0.01, 7)


def test_builtin_encoder_options_typo_is_refused(tmp_path):
    # checked on the parse alone: without the hook the typo passes and a CLI run would train
    from modweave.config import ConfigError, load_run_config

    with pytest.raises(ConfigError, match=r"'model\.base_modalities\[0\]\.encoder\.options\.pach'"):
        load_run_config(_write(tmp_path, {"model.base_modalities.0.encoder.options.pach": 4}))
