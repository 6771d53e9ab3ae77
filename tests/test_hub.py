"""Hub-ready checkpoints, offline: the model card parses back with huggingface_hub and carries the
metadata, a Hub id resolves through a pre-populated cache with HF_HUB_OFFLINE=1, and push refuses
with one line what it cannot do (no token, offline, a grown checkpoint, a bad repo id)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.file_download import repo_folder_name

from modweave.checkpoint import CheckpointError
from modweave.cli import build_parser, main
from modweave.config import load_run_config
from modweave.hub import ALLOW_PATTERNS, is_repo_id, push_checkpoint, resolve_checkpoint
from modweave.model import XModalLM
from modweave.model_card import MARKER, write_model_card

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "test-train.yaml"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> tuple[XModalLM, Path]:
    """A tiny model grown by video (frozen) and audio (lora), saved stage by stage, trainer layout."""
    cfg = load_run_config(CONFIG)
    torch.manual_seed(0)
    model = XModalLM.build(cfg.model)
    ckpt = tmp_path_factory.mktemp("run") / "checkpoint"
    model.end_stage(ckpt)
    for st in cfg.stages:
        model.add_modality(st.modality, method=st.method, settings={"rank": 2} if st.method == "lora" else {})
        model.end_stage(ckpt)
    return model.eval(), ckpt


def test_every_checkpoint_folder_gets_a_card_that_parses_back_with_the_metadata(grown):
    model, ckpt = grown
    card = ModelCard.load(ckpt / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "modweave"
    assert {"modality:image", "modality:video", "modality:audio", "method:frozen", "method:lora"} <= set(meta["tags"])
    assert "base_model" not in meta  # a tiny built LLM has no Hub id to name
    # the stage list with the counts taken from the model: lora's trained count = its LoRA matrices + path
    from modweave.checkpoint import _trained

    lora_trained = sum(dict(model.named_parameters())[k].numel() for k in _trained(model, 2))
    assert lora_trained > 0 and f"| 2 | audio | audio | lora | train | {lora_trained:,} |" in card.text
    assert "peft/audio/" in card.text and MARKER in card.text
    layout = sorted(p.name for p in ckpt.iterdir())
    assert layout == ["README.md", "manifest.json", "peft", "stage-00-base.safetensors",
                      "stage-01-video.safetensors", "stage-02-audio.safetensors", "tokenizer"]


def test_card_carries_the_report_and_the_base_model_of_a_hub_llm(grown, tmp_path):
    model, ckpt = grown
    folder = tmp_path / "checkpoint"
    shutil.copytree(ckpt, folder)
    report = {"benchmark": "mcl-digits", "modalities": ["image", "video", "audio"], "seed": 0,
              "methods": {"mixed": {"acc_matrix": [[0.5, None, None], [0.5, 0.25, None], [0.5, 0.25, 0.75]],
                                    "stages": ["base", "video", "audio"], "avg_acc": 0.5, "plasticity": 0.5,
                                    "forgetting": 0.0, "bwt": 0.0, "trainable_params": {"base": 1234}}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    data = json.loads((folder / "manifest.json").read_text())
    data["config"]["llm"].update(kind="hf", name_or_path="org/tiny-llm")  # what an hf preset records
    data["external"] = {"llm": {"stage": "base", "name_or_path": "org/tiny-llm", "revision": None, "files": {}}}
    (folder / "manifest.json").write_text(json.dumps(data))
    write_model_card(folder)  # no model: counts from the stage files, the report found next to checkpoint/
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "org/tiny-llm" and card.data.to_dict()["base_model_relation"] == "adapter"
    assert "| after stage | image | video | audio |" in card.text and "| audio | 0.500 | 0.250 | 0.750 |" in card.text
    assert "| 0.500 | 0.500 | 0.000 | 0.000 |" in card.text
    assert "| 0 | base | (base) | base | train | 1,234 |" in card.text  # the trained count from the report


def test_a_readme_someone_else_wrote_is_kept_and_makes_an_empty_folder_foreign(grown, tmp_path):
    model, _ = grown
    (tmp_path / "README.md").write_text("# my notes\n")
    with pytest.raises(CheckpointError, match="README.md"):
        model.save_pretrained(tmp_path)
    assert write_model_card(tmp_path) is None  # not even reached, but never overwrites
    assert (tmp_path / "README.md").read_text() == "# my notes\n"


def _cache(tmp_path: Path, ckpt: Path, repo_id: str, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """The huggingface_hub cache layout (`models--org--name/{refs,snapshots}`) holding `ckpt`."""
    storage = tmp_path / "hub" / repo_folder_name(repo_id=repo_id, repo_type="model")
    snap = storage / "snapshots" / commit
    shutil.copytree(ckpt, snap, ignore=shutil.ignore_patterns("peft"))
    (storage / "refs").mkdir(parents=True)
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)
    return tmp_path / "hub"


def test_a_hub_id_resolves_through_the_offline_cache(grown, tmp_path, monkeypatch):
    model, ckpt = grown
    commit = "a" * 40
    cache = _cache(tmp_path, ckpt, "org/tiny-grown", commit, refs=("main", "v1"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert {"manifest.json", "stage-*.safetensors", "tokenizer/*", "README.md"} == set(ALLOW_PATTERNS)
    for rev in (None, "v1", commit):
        assert resolve_checkpoint("org/tiny-grown", rev) == cache / "models--org--tiny-grown" / "snapshots" / commit
    loaded = XModalLM.from_pretrained("org/tiny-grown", revision="v1", upto="video")
    assert [s.name for s in loaded.stages] == ["base", "video"]
    a, b = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b if not k.startswith("connectors.base."))
    with pytest.raises(CheckpointError) as err:  # not cached: one line naming the id
        XModalLM.from_pretrained("org/not-cached")
    assert "org/not-cached" in str(err.value) and "HF_HUB_OFFLINE" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="local folder"):
        XModalLM.from_pretrained(ckpt, revision="v1")  # a revision means nothing for a local folder


def test_a_local_folder_is_never_taken_for_a_hub_id(grown, tmp_path, monkeypatch):
    _, ckpt = grown
    monkeypatch.chdir(ckpt.parent.parent)
    rel = f"{ckpt.parent.name}/checkpoint"  # looks like org/name, but is a folder here
    assert is_repo_id(rel) and resolve_checkpoint(rel) == Path(rel)
    assert not is_repo_id("runs/demo/checkpoint") and not is_repo_id("../x") and not is_repo_id("/abs/path")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        XModalLM.from_pretrained(tmp_path / "missing" / "checkpoint")


def test_push_arguments_and_one_line_refusals(grown, tmp_path, monkeypatch, capsys):
    _, ckpt = grown
    args = build_parser().parse_args(["push", str(ckpt), "org/name", "--private", "--revision", "dev"])
    assert (args.checkpoint, args.repo_id, args.private, args.revision) == (str(ckpt), "org/name", True, "dev")
    assert not build_parser().parse_args(["push", str(ckpt), "org/name"]).private
    # no token anywhere: no HF_TOKEN, no token file
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert main(["push", str(ckpt), "org/name"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("modweave push: error:") and "no Hugging Face token" in err and "\n" not in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", str(ckpt), "org/name"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    assert main(["push", str(ckpt), "not a repo"]) == 2
    assert "not a Hub repo id" in capsys.readouterr().err
    assert main(["push", str(tmp_path), "org/name"]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="needs repo_id"):
        from modweave.checkpoint import save_pretrained

        save_pretrained(grown[0], tmp_path / "out", push_to_hub=True)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_push_refuses_a_grown_checkpoint_whose_stages_live_in_its_parent(grown, tmp_path, monkeypatch):
    _, ckpt = grown
    model = XModalLM.from_pretrained(ckpt)
    child = tmp_path / "child"
    model.save_pretrained(child)
    assert json.loads((child / "manifest.json").read_text())["parent"]
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    with pytest.raises(CheckpointError, match="copy_parent=True"):
        push_checkpoint(child, "org/name")
