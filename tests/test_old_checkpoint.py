"""A checkpoint written by modweave 0.1 (before the stage lifecycle went through `replay`, before typed
settings, parent references and deterministic stage files) still loads, and gives the same logits
bit for bit: base, ana (video), lora (audio) and moextend's three phases (depth).
How the fixture was made: tests/fixtures/make_checkpoint_0_1.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modweave.model import XModalLM
from tinyfactory import media_items

FIXTURES = Path(__file__).resolve().parent / "fixtures"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_0_1_checkpoint_loads_and_gives_the_same_logits(tmp_path):
    import shutil

    ckpt = tmp_path / "checkpoint-0.1"  # a copy: loading must not need to write, but be sure it cannot
    shutil.copytree(FIXTURES / "checkpoint-0.1", ckpt)
    model = XModalLM.from_pretrained(ckpt)
    assert [s.name for s in model.stages] == ["base", "video", "audio", "depth:align", "depth:extender",
                                              "depth:finetune"]
    items = media_items(["text", "image", "video", "audio", "depth"])  # as the fixture's script made them
    model.eval()
    with torch.no_grad():
        logits = model(model.collator(train=True)(items)).logits
    expected = load_file(str(FIXTURES / "checkpoint-0.1-logits.safetensors"))["logits"]
    # every stored tensor is in the model bit for bit: a standalone copy saved now holds the same tensors
    model.save_pretrained(tmp_path / "copy", copy_parent=True)
    assert len(XModalLM.from_pretrained(tmp_path / "copy").stages) == 6  # the copy loads (peft renames undone)
    old_files, new_files = sorted(ckpt.glob("stage-*.safetensors")), sorted((tmp_path / "copy").glob("stage-*"))
    assert [f.name for f in old_files] == [f.name for f in new_files]
    for old, new in zip(old_files, new_files):
        a, b = load_file(str(old)), load_file(str(new))
        assert a.keys() == b.keys(), old.name
        if "depth-align" not in old.name:  # depth's finetune phase trains what its align phase wrote
            assert all(torch.equal(a[k], b[k]) for k in a), old.name
    # the logits as 0.1 computed them (written with 2 threads: equal up to the float summation order)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    # and it grows on: a new stage over the old checkpoint, saved into a new folder, reloads
    model.add_modality("point_cloud", method="frozen", encoder={"kind": "tiny-points", "width": 32,
                                                                 "options": {"num_tokens": 4}}, cue=" 3d: ")
    model.end_stage(save_dir=tmp_path / "grown")
    again = XModalLM.from_pretrained(tmp_path / "grown", upto="depth")
    with torch.no_grad():
        assert torch.equal(again.eval()(again.collator(train=True)(items)).logits, logits)
