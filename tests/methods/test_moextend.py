"""MoExtend on tiny MoE LLMs of two transformers families (Mixtral; Qwen3-MoE via a JSON architecture)."""

from __future__ import annotations

import json

import pytest
import torch

from methods.moextend_tiny import AUDIO, FAMILIES, IMAGE, batch, build, run_step, snapshot
from modweave.methods import get_method
from modweave.methods.moextend import (Calibration, ExtendedMoeBlock, expert_usage, extend_layer, moe_blocks,
                                       original_routers, select_layers)
from modweave.model import XModalLM


@pytest.mark.parametrize("family", FAMILIES)
def test_extended_block_at_init_changes_only_donor_top1_tokens(family, tmp_path):
    model = build(family, tmp_path)
    x = torch.randn(3, 11, model.llm_width, generator=torch.Generator().manual_seed(0))
    blocks = moe_blocks(model.llm)
    before = {layer: blk(x) for layer, (_, _, blk) in blocks.items()}
    logits = blocks[1][2].gate(x.reshape(-1, x.shape[-1]))[0]
    donor = int(torch.softmax(logits.float(), -1).argmax(-1).mode().values)  # a donor that is often top-1
    block = extend_layer(model.llm, 1, model.context)
    assert isinstance(block, ExtendedMoeBlock) and isinstance(model.llm.model.layers[1].mlp, ExtendedMoeBlock)
    block.add_extension([donor], "image", exclusive=False)
    out = block(x).reshape(-1, x.shape[-1])
    top1 = torch.softmax(logits.float(), -1).argmax(-1)
    same = (out == before[1].reshape(-1, x.shape[-1])).all(-1)
    assert torch.equal(same, top1 != donor)  # bit-identical exactly where the donor is not top-1
    assert (~same).any()
    for layer in (0, 2):  # non-extended layers untouched
        assert torch.equal(blocks[layer][2](x), before[layer])
    ext = block.extensions[0]
    assert torch.equal(ext.gate_up_proj[0], block.experts.gate_up_proj[donor])
    assert torch.equal(ext.router[0], block.gate.weight[donor])
    assert ext.gate_up_proj.data_ptr() != block.experts.gate_up_proj.data_ptr()


def test_calibration_starts_as_identity():
    cal = Calibration(9)
    p = torch.softmax(torch.randn(5, 9), -1)
    assert torch.equal(cal(p), p)
    assert sum(q.numel() for q in cal.parameters()) == 288
    assert cal.w1.weight.std() > 0


def test_select_layers_known_shift_picks_most_used_donor():
    usage_orig = torch.full((4, 8), 1 / 8)
    usage_tuned = usage_orig.clone()
    usage_tuned[1] = torch.tensor([0.05, 0.05, 0.05, 0.40, 0.15, 0.10, 0.10, 0.10])  # strong shift, expert 3
    usage_tuned[3] = torch.tensor([0.10, 0.20, 0.10, 0.10, 0.10, 0.10, 0.10, 0.20])  # weaker shift, 1 and 7 tie
    usage_tuned[2] = usage_orig[2] + torch.tensor([0.01, -0.01, 0, 0, 0, 0, 0, 0])
    layers, donors, scores = select_layers(usage_orig, usage_tuned, fraction=0.5, num_donors=2)
    assert layers == [1, 3]
    assert donors == {1: [3, 4], 3: [1, 7]}  # descending usage, ties to the lower index
    assert scores[1] > scores[3] > scores[2] > scores[0] == 0.0
    assert select_layers(usage_orig, usage_tuned, num_layers=1)[0] == [1]


@pytest.mark.parametrize("family", FAMILIES)
def test_three_phases_trainable_sets_frozen_originals_and_restored_routers(family, tmp_path):
    model = build(family, tmp_path)
    frozen = snapshot(model)
    routers = {k: w.clone() for k, w in original_routers(model).items()}
    model.add_modality(IMAGE, method="moextend", settings={"layer_fraction": 0.34})
    names = set(model.trainable_parameters())
    assert names and all(n.startswith(("connectors.image.", "paths.image.")) for n in names)
    model.end_stage()
    model.next_phase()  # extender: all original routers, nothing else
    assert set(model.trainable_parameters()) == {f"llm.model.layers.{i}.mlp.gate.weight" for i in range(3)}
    opt = torch.optim.AdamW(model.trainable_parameters().values(), lr=0.5)
    for i in range(2):
        opt.zero_grad()
        model(batch(model, ["image"] * 3, seed=i)).loss.backward()
        opt.step()
    assert not torch.equal(original_routers(model)[0], routers[0])
    record = model.end_stage(data=[batch(model, ["image"] * 3, seed=9)])
    for k, w in original_routers(model).items():
        assert torch.equal(w, routers[k])  # tuned routers thrown away, bit for bit
    st = record.state
    assert len(st["layers"]) == 1 and len(st["scores"]) == 3 and len(st["usage_tuned"][0]) == 4
    layer = st["layers"][0]
    assert st["scores"][layer] == max(st["scores"])
    assert st["donors"][str(layer)] == [max(range(4), key=lambda e: (st["usage_tuned"][layer][e], -e))]
    assert sum(st["usage_orig"][0]) == pytest.approx(1.0)
    model.next_phase()  # finetune: new experts, rows, calibration, projector
    names = set(model.trainable_parameters())
    prefix = f"llm.model.layers.{layer}.mlp.extensions.0."
    assert {n for n in names if n.startswith("llm.")} == {prefix + s for s in (
        "gate_up_proj", "down_proj", "router", "calibration.w1.weight", "calibration.w2.weight")}
    assert model.uses_builtin_router_loss is False
    opt = torch.optim.AdamW(model.trainable_parameters().values(), lr=1e-2)
    model.train()
    for i in range(3):
        opt.zero_grad()
        out = model(batch(model, ["image", "text", "image"], seed=i))
        assert out.aux_loss is not None and out.aux_loss > 0
        out.loss.backward()
        opt.step()
    after = snapshot(model)
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # every original tensor bit-identical
    ext = model.llm.model.layers[layer].mlp.extensions[0]
    assert ext.calibration.w2.weight.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_modality_routing_two_steps_keeps_earlier_outputs_and_reloads(family, tmp_path):
    model = build(family, tmp_path)
    model.eval()
    text = batch(model, ["text", "text"], seed=5)
    base_logits = model(text).logits
    settings = {"routing": "modality", "num_layers": 2, "num_new_experts": 2}
    run_step(model, IMAGE, settings, save_dir=tmp_path / "ck")
    mixed = batch(model, ["image", "text", "image"], seed=6)
    after_image = model(mixed).logits
    assert torch.equal(model(text).logits, base_logits)
    run_step(model, AUDIO, {**settings, "num_layers": 3}, save_dir=tmp_path / "ck")
    assert len(model.llm.model.layers[0].mlp.extensions) + len(model.llm.model.layers[1].mlp.extensions) >= 3
    assert torch.equal(model(text).logits, base_logits)  # text: the base model, bit for bit
    assert torch.equal(model(mixed).logits, after_image)  # image and text rows: as after the image step
    audio = batch(model, ["audio", "text"], seed=7)
    full = model(audio).logits

    reloaded = XModalLM.from_pretrained(tmp_path / "ck")
    assert torch.equal(reloaded(audio).logits, full) and torch.equal(reloaded(mixed).logits, after_image)
    earlier = XModalLM.from_pretrained(tmp_path / "ck", upto="image")
    assert earlier.modalities == ["image"] and torch.equal(earlier(mixed).logits, after_image)
    from modweave.cli import main

    assert main(["select-layers", str(tmp_path / "ck"), "--modality", "image", "--out", str(tmp_path / "sel.json"),
                 "--plot", str(tmp_path / "sel.png")]) == 0
    sel = json.loads((tmp_path / "sel.json").read_text())
    image_ext = [layer for layer, (_, _, blk) in moe_blocks(reloaded.llm).items()
                 if isinstance(blk, ExtendedMoeBlock) and any(e.step == "image" for e in blk.extensions)]
    assert sel["layers"] == image_ext and len(sel["scores"]) == 3 and (tmp_path / "sel.png").stat().st_size > 0
    answers = reloaded.generate(batch(reloaded, ["audio", "text"], seed=8, train=False), max_new_tokens=2, num_beams=2)
    assert len(answers) == 2


def test_usage_counts_real_tokens_only(tmp_path):
    model = build("mixtral", tmp_path)
    model.add_modality(IMAGE, method="moextend")
    usage = expert_usage(model, [batch(model, ["image", "text"], seed=1)])
    assert set(usage) == {0, 1, 2} and all(abs(float(u.sum()) - 1) < 1e-6 for u in usage.values())


def test_settings_are_checked():
    with pytest.raises(ValueError, match="routing"):
        get_method("moextend").check_settings({"routing": "sometimes"})
    with pytest.raises(ValueError, match=r"unknown config key 'stages\[0\].settings.experts'"):
        get_method("moextend").check_settings({"experts": 2}, where="stages[0].settings")
    with pytest.raises(ValueError, match=r"'stages\[0\].settings.donor': expected one of 'most_used'"):
        get_method("moextend").check_settings({"donor": "mostused"}, where="stages[0].settings")  # at creation


def test_reference_preset_parameter_counts():
    """Meta-device counts of the paper's setup: expert 176,160,768; router row 4,096; calibration 288."""
    from modweave.config import load_run_config
    from modweave.params import stage_param_counts

    counts = stage_param_counts(load_run_config("configs/moextend/mixtral-8x7b-clip336.yaml"))["stages"]
    projector = 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    assert counts["image:align"]["trainable"] == projector
    assert counts["image:extender"]["trainable"] == 32 * 8 * 4096
    assert counts["image:finetune"]["trainable"] == 16 * (176_160_768 + 4_096 + 288) + projector
    assert counts["image:finetune"]["total"] - counts["image:extender"]["total"] == 16 * (176_160_768 + 4_096 + 288)
