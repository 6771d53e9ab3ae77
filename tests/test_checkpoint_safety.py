"""Checkpoints under bad input: no silently wrong model, no code from a checkpoint, no file overwritten
that the library did not write, deterministic and normally-permissioned output files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modweave.checkpoint import CheckpointError
from modweave.model import XModalLM

from tinyfactory import make_items


def _manifest(ck: Path) -> dict:
    return json.loads((ck / "manifest.json").read_text())


def _write_manifest(ck: Path, data) -> None:
    (ck / "manifest.json").write_text(json.dumps(data))


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def saved(tiny_model, tmp_path) -> Path:
    ck = tmp_path / "ck"
    tiny_model.save_pretrained(ck)
    return ck


def _rewrite_stage(ck: Path, name: str, tensors: dict) -> None:
    """Replace a stage file and give the manifest its new checksum (so only the content is wrong)."""
    path = ck / name
    save_file(tensors, str(path))
    data = _manifest(ck)
    for s in data["stages"]:
        if s["file"] == name:
            s["sha256"] = _sha(path)
    _write_manifest(ck, data)


def test_a_stage_file_missing_tensors_fails_listing_them(saved):
    name = "stage-00-base.safetensors"
    tensors = load_file(str(saved / name))
    dropped = sorted(k for k in tensors if k.startswith("paths.image."))
    _rewrite_stage(saved, name, {k: v for k, v in tensors.items() if k not in dropped})
    with pytest.raises(CheckpointError, match=rf"lacks {len(dropped)} tensor\(s\) of stage 'base'.*{dropped[0]}"):
        XModalLM.from_pretrained(saved)


def test_a_stage_without_file_fails(saved):
    data = _manifest(saved)
    data["stages"][0]["file"] = None
    _write_manifest(saved, data)
    with pytest.raises(CheckpointError, match=r"stage 'base' has no file"):
        XModalLM.from_pretrained(saved)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_stage_files_must_stay_inside_the_checkpoint(saved, tmp_path, kind):
    name = "stage-00-base.safetensors"
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((saved / name).read_bytes())
    data = _manifest(saved)
    if kind == "dotdot":
        data["stages"][0]["file"] = "../outside.safetensors"
    elif kind == "absolute":
        data["stages"][0]["file"] = str(outside)
    else:
        (saved / name).unlink()
        (saved / name).symlink_to(outside)
    _write_manifest(saved, data)
    with pytest.raises(CheckpointError, match="outside the checkpoint folder" if kind == "symlink" else "plain name"):
        XModalLM.from_pretrained(saved)


def test_sha256_null_is_refused_unless_verify_is_off(saved):

    data = _manifest(saved)
    data["stages"][0]["sha256"] = None
    _write_manifest(saved, data)
    with pytest.raises(CheckpointError, match=r"stage 'base' has no sha256.*verify=False"):
        XModalLM.from_pretrained(saved)
    assert XModalLM.from_pretrained(saved, verify=False).modalities == ["image"]


def test_non_finite_weights_warn_naming_tensor_and_file(saved, caplog):
    name = "stage-00-base.safetensors"
    tensors = load_file(str(saved / name))
    key = "paths.image.query_tokens"
    tensors[key][0, 0] = float("nan")
    _rewrite_stage(saved, name, tensors)
    with caplog.at_level(logging.WARNING, logger="modweave"):
        XModalLM.from_pretrained(saved)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(key in m and name in m and "NaN or inf" in m for m in warned), warned


def test_stage_files_are_byte_identical_for_identical_tensors(tiny_model, tmp_path):
    """safetensors writes its metadata map in a random order: one metadata key keeps the bytes stable."""
    shas = set()
    for i in range(6):
        tiny_model.save_pretrained(tmp_path / f"ck{i}")
        shas.add(_manifest(tmp_path / f"ck{i}")["stages"][0]["sha256"])
    assert len(shas) == 1
    with safe_open(str(tmp_path / "ck0" / "stage-00-base.safetensors"), "pt") as fh:
        assert list(fh.metadata()) == ["modweave"]
        assert json.loads(fh.metadata()["modweave"]) == {"format": "modweave-checkpoint/1", "stage": "base"}


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_output_files_follow_the_umask(tiny_model, tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        tiny_model.save_pretrained(tmp_path / "ck")
    finally:
        os.umask(old)
    for name in ("manifest.json", "stage-00-base.safetensors"):
        assert (tmp_path / "ck" / name).stat().st_mode & 0o777 == mode, name


# ------------------------------------------------------------------------------------------------
# no code from a checkpoint


def _add_custom_tokenizer_code(tok_dir: Path, marker: Path) -> None:
    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    cfg["tokenizer_class"] = "EvilTokenizer"
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    (tok_dir / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                     "from transformers import PreTrainedTokenizerFast\n"
                                     "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n")


def test_a_tokenizer_with_custom_code_is_refused_and_nothing_runs(saved, tmp_path, monkeypatch, capsys):
    import io

    from modweave.cli import main

    marker = tmp_path / "ran.txt"
    _add_custom_tokenizer_code(saved / "tokenizer", marker)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\ny\n"))  # `echo y |` must not matter
    assert main(["generate", str(saved), "--modality", "text", "--prompt", "q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "custom code" in err[0] and "tokenizer" in err[0] and "Traceback" not in err[0]
    assert not marker.exists()


def test_hf_tokenizer_loads_never_run_checkpoint_code(saved, tmp_path, monkeypatch):
    import io

    from modweave.config import TokenizerConfig
    from modweave.tokenizer import build_tokenizer

    marker = tmp_path / "ran.txt"
    _add_custom_tokenizer_code(saved / "tokenizer", marker)
    (saved / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
        {**json.loads((saved / "tokenizer" / "tokenizer_config.json").read_text()), "tokenizer_class": None}))
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    with pytest.raises(ValueError, match="never runs code") as info:
        build_tokenizer(TokenizerConfig(kind="hf", name_or_path=str(saved / "tokenizer")))
    assert "\n" not in str(info.value) and "trust_remote_code=True" not in str(info.value)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------
# saves refuse folders they would break


def test_save_refuses_a_folder_with_other_files(tiny_model, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(CheckpointError, match=r"not empty and not a modweave checkpoint.*notes.txt"):
        tiny_model.save_pretrained(mine)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        tiny_model.save_pretrained(tmp_path / "file")


def test_save_refuses_another_models_checkpoint_and_both_stay_intact(tiny_model, tiny_cfg, saved):
    before = {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()}
    torch.manual_seed(1)
    other = XModalLM.build(tiny_cfg.model)
    with torch.no_grad():
        other.paths["image"].query_tokens.add_(1.0)
    other.end_stage()
    with pytest.raises(CheckpointError, match="another model's checkpoint"):
        other.save_pretrained(saved)
    with pytest.raises(CheckpointError, match="another model's checkpoint"):
        other.end_stage(saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()} == before
    XModalLM.from_pretrained(saved)


def test_resaving_the_same_model_and_growing_it_in_place_work(tiny_model, saved):
    tiny_model.save_pretrained(saved)  # nothing new: allowed, nothing breaks
    tiny_model.add_modality("video", method="frozen", encoder="image", cue=" video: ")
    tiny_model.end_stage(saved)
    assert [s["name"] for s in _manifest(saved)["stages"]] == ["base", "video"]
    reloaded = XModalLM.from_pretrained(saved)
    reloaded.save_pretrained(saved)  # a reloaded model is the same lineage
    with pytest.raises(CheckpointError, match="would drop stage 'video'"):
        XModalLM.from_pretrained(saved, upto="base").save_pretrained(saved)
    assert [s["name"] for s in _manifest(saved)["stages"]] == ["base", "video"]


# ------------------------------------------------------------------------------------------------
# referenced modules (hub / local encoders) are not copied


def _clip_dir(path: Path, seed: int) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=16, patch_size=8)).save_pretrained(str(path))
    return path


def test_a_local_hf_encoder_is_referenced_not_copied_and_checked_at_load(tiny_model, tmp_path, caplog):

    clip = _clip_dir(tmp_path / "clip", seed=0)
    ck = tmp_path / "ck"
    tiny_model.end_stage(ck)
    tiny_model.add_modality("video", method="frozen", encoder={"kind": "hf-vision", "name_or_path": str(clip)},
                            cue=" video: ")
    with torch.no_grad():
        for p in tiny_model.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.1)
    tiny_model.end_stage(ck)
    with safe_open(str(ck / "stage-01-video.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert keys and all(k.startswith("paths.video.") for k in keys)  # no encoder tensor copied
    ref = _manifest(ck)["external"]["encoders.video"]
    assert ref["stage"] == "video" and ref["name_or_path"] == str(clip)
    assert ref["files"]["model.safetensors"]["sha256"] == _sha(clip / "model.safetensors")

    items = make_items(["video", "image"])
    expected = tiny_model(tiny_model.collator()(items)).logits
    loaded = XModalLM.from_pretrained(ck)
    enc, enc0 = loaded.encoders["video"].state_dict(), tiny_model.encoders["video"].state_dict()
    assert enc.keys() == enc0.keys() and all(torch.equal(enc[k], enc0[k]) for k in enc)
    assert torch.equal(loaded(loaded.collator()(items)).logits, expected)

    _clip_dir(clip, seed=1)  # the local checkpoint changes under the stage that was trained on it
    with pytest.raises(CheckpointError, match=r"encoders.video of stage 'video' .*model.safetensors changed"):
        XModalLM.from_pretrained(ck)
    with caplog.at_level(logging.WARNING, logger="modweave"):
        XModalLM.from_pretrained(ck, verify=False)
    assert any("model.safetensors changed" in r.getMessage() for r in caplog.records)


def test_a_local_hf_llm_base_is_referenced_not_copied(tiny_cfg, tmp_path):
    """An `llm.kind: hf` base from a local folder: the base stage file keeps its own tensors (paths,
    connector) but not the LLM's; the reload reads the LLM from the folder again, checked by hash."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from modweave.tokenizer import build_tokenizer

    tok = build_tokenizer(tiny_cfg.model.tokenizer)
    torch.manual_seed(0)
    llm_dir = tmp_path / "llm"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                 pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                 eos_token_id=tok.eos_token_id)).save_pretrained(str(llm_dir))
    cfg = tiny_cfg.model
    cfg.llm.kind, cfg.llm.name_or_path = "hf", str(llm_dir)
    model = XModalLM.build(cfg)
    model.end_stage(tmp_path / "ck")
    with safe_open(str(tmp_path / "ck" / "stage-00-base.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert keys and not any(k.startswith("llm.") for k in keys)
    assert _manifest(tmp_path / "ck")["external"]["llm"]["files"]["model.safetensors"]["sha256"] == \
        _sha(llm_dir / "model.safetensors")
    items = make_items(["image", "text"])
    loaded = XModalLM.from_pretrained(tmp_path / "ck")
    assert torch.equal(loaded(loaded.collator()(items)).logits, model(model.collator()(items)).logits)


HUB_SCRIPT = r"""
import json, logging, shutil, sys
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[2])
from test_checkpoint_safety import _clip_dir
from modweave.checkpoint import CheckpointError
from modweave.config import load_run_config
from modweave.model import XModalLM
from tinyfactory import TINY

cache = Path(sys.argv[1]) / "hub" / "models--tiny--clip"
def commit(c, seed=None, like=None):
    snap = cache / "snapshots" / (c * 40)
    if like:
        shutil.copytree(cache / "snapshots" / (like * 40), snap)
    else:
        _clip_dir(snap, seed)
    (cache / "refs").mkdir(parents=True, exist_ok=True)
    (cache / "refs" / "main").write_text(c * 40)
commit("a", seed=0)
torch.manual_seed(0)
model = XModalLM.build(load_run_config(TINY).model)
ck = Path(sys.argv[1]) / "ck"
model.end_stage(ck)
model.add_modality("video", method="frozen", encoder={"kind": "hf-vision", "name_or_path": "tiny/clip"}, cue=" v: ")
model.end_stage(ck)
ref = json.loads((ck / "manifest.json").read_text())["external"]["encoders.video"]
assert ref["revision"] == "a" * 40 and "model.safetensors" in ref["files"], ref
from safetensors.torch import load_file
keys = set(load_file(str(ck / "stage-01-video.safetensors")))
assert keys and all(k.startswith("paths.video.") for k in keys), keys
XModalLM.from_pretrained(ck)
commit("b", like="a")  # a new commit, same weights: a warning only
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
XModalLM.from_pretrained(ck)
commit("c", seed=1)  # new weights
try:
    XModalLM.from_pretrained(ck)
    print("LOADED")
except CheckpointError as err:
    print("REFUSED", err)
"""


@pytest.mark.slow
def test_a_hub_encoder_is_pinned_by_revision_and_content(tmp_path):
    """A hub id from the local HF cache (no network): the reference records the snapshot's commit and its
    files' hashes; a new commit with the same weights warns, one with new weights is refused."""
    import subprocess
    import sys

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", HUB_SCRIPT, str(tmp_path), str(tests)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "now loads revision " + "b" * 40 in out.stdout
    assert "REFUSED" in out.stdout and "model.safetensors changed" in out.stdout
