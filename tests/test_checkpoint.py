"""Stage-wise checkpoints: round trip bit for bit, `upto`, atomicity, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from modweave.checkpoint import CheckpointError
from modweave.config import EncoderConfig
from modweave.model import XModalLM

from tinyfactory import make_items

AUDIO = EncoderConfig(kind="tiny-audio", width=32, options={"n_mels": 16, "patch_frames": 4})


def _perturb(params) -> None:
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.1)


def _grow(model: XModalLM, save_dir) -> dict[str, torch.Tensor]:
    """Add video (finetune: changes the shared connector) then audio (separate); record logits per stage."""
    items = make_items(["image", "video", "audio", "text"])
    logits = {}
    model.eval()
    for name, method, enc in (("video", "finetune", "image"), ("audio", "separate", AUDIO)):
        model.add_modality(name, method=method, encoder=enc, cue=f" {name}: ")
        _perturb(model.trainable_parameters().values())
        model.end_stage(save_dir)
        seen = [it for it in items if it["modality"] in ("image", "text", *model.paths)]
        logits[name] = model(model.collator()(seen)).logits
    return logits


def test_round_trip_and_upto_are_bit_identical(tiny_model, tmp_path):
    _perturb(tiny_model.llm.parameters())
    tiny_model.end_stage(tmp_path)  # re-close the base with trained-looking weights
    logits = _grow(tiny_model, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["base", "video", "audio"]
    assert manifest["modalities"] == ["video", "audio"] and manifest["library_version"]
    items = make_items(["image", "video", "audio", "text"])
    for upto in ("video", "audio"):
        loaded = XModalLM.from_pretrained(tmp_path, upto=upto)
        assert loaded.modalities == ["image", "video", "audio"][: 2 + (upto == "audio")]
        seen = [it for it in items if it["modality"] in ("image", "text", *loaded.paths)]
        assert torch.equal(loaded(loaded.collator()(seen)).logits, logits[upto])


def test_stage_files_hold_only_their_own_tensors(tiny_model, tmp_path):
    tiny_model.end_stage(tmp_path)
    _grow(tiny_model, tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "stage-02-audio.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert keys and all(k.startswith(("connectors.audio.", "paths.audio.", "encoders.audio.")) for k in keys)


def test_upto_unknown_stage_is_named(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="upto='smell'"):
        XModalLM.from_pretrained(tmp_path, upto="smell")


def test_missing_and_corrupt_files_are_named(tiny_model, tmp_path):
    with pytest.raises(CheckpointError, match="manifest.json is missing"):
        XModalLM.from_pretrained(tmp_path)
    tiny_model.save_pretrained(tmp_path)
    stage = tmp_path / "stage-00-base.safetensors"
    data = stage.read_bytes()
    stage.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="stage-00-base.safetensors"):
        XModalLM.from_pretrained(tmp_path)
    stage.unlink()
    with pytest.raises(CheckpointError, match="missing: .*stage-00-base"):
        XModalLM.from_pretrained(tmp_path)


def test_mismatching_shapes_are_listed(tiny_model, tmp_path, tiny_cfg):
    tiny_model.save_pretrained(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["config"]["connector"]["num_query_tokens"] = 6
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"paths.image.query_tokens: file \[4, 64\] vs model \[6, 64\]"):
        XModalLM.from_pretrained(tmp_path)


def test_no_temp_files_left_behind(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_growing_a_loaded_checkpoint_references_the_parent(tiny_model, tmp_path):
    """`from_pretrained(PARENT)`, grown, `end_stage(NEW)`: NEW holds only the new stage's file, its manifest
    points at PARENT, and `upto=` reaches back into the parent's stages bit for bit."""
    parent, child = tmp_path / "parent", tmp_path / "runs" / "child"
    _perturb(tiny_model.llm.parameters())
    tiny_model.end_stage(parent)
    tiny_model.add_modality("video", method="finetune", encoder="image", cue=" video: ")
    _perturb(tiny_model.trainable_parameters().values())
    tiny_model.end_stage(parent)
    items = make_items(["image", "video", "audio", "text"])
    old = [it for it in items if it["modality"] != "audio"]
    parent_logits = tiny_model(tiny_model.collator()(old)).logits

    grown = XModalLM.from_pretrained(parent)
    grown.add_modality("audio", method="separate", encoder=AUDIO, cue=" audio: ")
    _perturb(grown.trainable_parameters().values())
    grown.end_stage(child)
    grown_logits = grown(grown.collator()(items)).logits

    assert sorted(p.name for p in child.glob("*.safetensors")) == ["stage-02-audio.safetensors"]
    manifest = json.loads((child / "manifest.json").read_text())
    assert manifest["parent"]["path"] == "../../parent" and manifest["parent"]["stages"] == 2
    assert [s["name"] for s in manifest["stages"]] == ["base", "video", "audio"]
    reloaded = XModalLM.from_pretrained(child)
    assert torch.equal(reloaded(reloaded.collator()(items)).logits, grown_logits)
    earlier = XModalLM.from_pretrained(child, upto="video")
    assert earlier.modalities == ["image", "video"]
    assert torch.equal(earlier(earlier.collator()(old)).logits, parent_logits)

    from modweave.checkpoint import save_pretrained

    standalone = save_pretrained(reloaded, tmp_path / "standalone", copy_parent=True)
    assert len(list(standalone.glob("stage-*.safetensors"))) == 3
    assert json.loads((standalone / "manifest.json").read_text())["parent"] is None
    reloaded.save_pretrained(child)  # the child's own lineage: still allowed, still a reference
    assert json.loads((child / "manifest.json").read_text())["parent"] == manifest["parent"]
    data = json.loads((parent / "manifest.json").read_text())
    data["stages"][1]["sha256"] = "0" * 64  # the parent no longer holds the stage the child grew from
    (parent / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"parent checkpoint .*parent no longer holds stage 1 \('video'\)"):
        XModalLM.from_pretrained(child)
    (parent / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="its parent checkpoint cannot be read"):
        XModalLM.from_pretrained(child)
    assert torch.equal(XModalLM.from_pretrained(standalone)(reloaded.collator()(items)).logits, grown_logits)
