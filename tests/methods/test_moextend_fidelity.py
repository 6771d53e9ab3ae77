"""MoExtend against the authors' rules: balance loss over all layers with padding masked, explicit
layers/donors (the paper preset), the layer-count rule, and the bf16 router row."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.nn import functional as F
from transformers import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock, load_balancing_loss_func

from methods.moextend_tiny import FAMILIES, IMAGE, batch, build
from modweave.methods import get_method
from modweave.methods.moextend import ExtendedMoeBlock, balance_term, layer_count, moe_blocks
from modweave.methods.moextend.block import fp32_linear

COEF = 0.01  # the tiny models' router_aux_loss_coef


def hand_term(p: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor | None) -> float:
    """n * sum_e f[e] P[e] over the real tokens, written out with loops."""
    p = p.detach()
    n, k = p.shape[1], idx.shape[1]
    real = [t for t in range(p.shape[0]) if mask is None or bool(mask[t])]
    f = [sum(int(idx[t, s]) == e for t in real for s in range(k)) / len(real) for e in range(n)]
    prob = [sum(float(p[t, e]) for t in real) / len(real) for e in range(n)]
    return n * sum(a * b for a, b in zip(f, prob))


class Capture:
    """Each MoE block's input `[B, S, H]` and the LLM's attention mask in one forward (test-side hooks)."""

    def __init__(self, model):
        self.inputs, self.mask = {}, None
        self.handles = [model.llm.register_forward_pre_hook(self._mask, with_kwargs=True)]
        for layer, (_, _, blk) in moe_blocks(model.llm).items():
            self.handles.append(blk.register_forward_pre_hook(functools.partial(self._input, layer)))

    def _input(self, layer, module, args):
        self.inputs[layer] = args[0].detach()

    def _mask(self, module, args, kwargs):
        self.mask = kwargs["attention_mask"].reshape(-1)

    def close(self):
        for h in self.handles:
            h.remove()


def extended_model(family, tmp_path, routing: str):
    """A tiny model whose layer 1 has one new expert (donor 0) with a moved router row, so it is chosen."""
    torch.manual_seed(0)  # the projector's and calibration's initialisation
    model = build(family, tmp_path)
    model.add_modality(IMAGE, method="moextend", settings={"layers": [1], "donors": [0], "routing": routing})
    model.end_stage()
    model.next_phase()
    model.end_stage()  # extender: no training, explicit selection
    model.next_phase()  # finetune: layer 1 extended
    ext = model.llm.model.layers[1].mlp.extensions[0]
    with torch.no_grad():
        ext.router.add_(torch.randn(ext.router.shape, generator=torch.Generator().manual_seed(3)))
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_balance_loss_every_layer_padding_masked_matches_hand_computation(family, tmp_path):
    model = extended_model(family, tmp_path, routing="open")
    model.train()
    cap = Capture(model)
    out = model(batch(model, ["image", "text", "image"], seed=1))
    cap.close()
    mask = cap.mask
    assert (mask == 0).any()  # the batch has padding
    blocks = moe_blocks(model.llm)
    masked, unmasked, extended_only = [], [], []
    for layer, (_, _, blk) in blocks.items():
        x = cap.inputs[layer].reshape(-1, model.llm_width).float()
        logits = x @ blk.gate.weight.float().T
        if isinstance(blk, ExtendedMoeBlock):
            logits = torch.cat([logits, x @ blk.extensions[0].router.float().T], -1)  # E + 1 experts
        p = torch.softmax(logits, -1)
        idx = p.topk(2, -1).indices
        masked.append(hand_term(p, idx, mask))
        unmasked.append(hand_term(p, idx, None))
        if isinstance(blk, ExtendedMoeBlock):
            extended_only.append(masked[-1])
            assert (idx == 4).any()  # the new expert is chosen somewhere
    expected = COEF * sum(masked) / len(masked)  # every layer, mean over all 3
    assert float(out.aux_loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert abs(COEF * sum(unmasked) / 3 - expected) > 1e-4 * expected  # padding would change it
    assert abs(COEF * sum(extended_only) - expected) > 1e-4 * expected  # so would dropping layers 0 and 2
    out.loss.backward()
    assert model.llm.model.layers[1].mlp.extensions[0].router.grad.abs().sum() > 0


def test_balance_loss_layers_without_routable_new_experts_count_with_e_experts(tmp_path):
    """`routing: modality`, a text-only batch: layer 1's new expert is routable nowhere, so every layer is
    an E-expert layer; each term then equals transformers' own (masked) function on that layer."""
    model = extended_model("mixtral", tmp_path, routing="modality")
    model.train()
    cap = Capture(model)
    out = model(batch(model, ["text", "text", "text"], seed=2))
    cap.close()
    b, s = cap.inputs[0].shape[:2]
    terms = []
    for layer, (_, _, blk) in moe_blocks(model.llm).items():
        logits = blk.gate(cap.inputs[layer].reshape(b * s, -1))[0].detach()
        terms.append(float(load_balancing_loss_func((logits,), 4, 2, cap.mask.reshape(b, s))))
    assert float(out.aux_loss.detach()) == pytest.approx(COEF * sum(terms) / 3, rel=1e-5)
    model.eval()
    assert model(batch(model, ["text", "image"], seed=2)).aux_loss is None  # no balance loss in evaluation


def test_balance_loss_gradient_survives_activation_checkpointing(tmp_path):
    grads = []
    for checkpointing in (False, True):
        model = extended_model("mixtral", tmp_path, routing="open")
        if checkpointing:  # as the trainer does it (non-reentrant): the hooks see the recorded forward
            model.llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model(batch(model, ["image", "text", "image"], seed=1)).aux_loss.backward()
        grads.append(model.llm.model.layers[1].mlp.extensions[0].router.grad)
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1])


def test_balance_term_matches_transformers_on_one_layer_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2 * 7, 6, generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    p = torch.softmax(logits, -1)
    idx = p.topk(2, -1).indices
    ours = balance_term(p, idx, mask.reshape(-1))
    assert float(ours) == pytest.approx(float(load_balancing_loss_func((logits,), 6, 2, mask)), rel=1e-6)
    assert float(ours) == pytest.approx(hand_term(p, idx, mask.reshape(-1)), rel=1e-6)
    garbage = p.clone()
    garbage[11:] = torch.softmax(torch.randn(3, 6, generator=g) * 5, -1)  # padded rows: any values
    assert float(balance_term(garbage, idx, mask.reshape(-1))) == pytest.approx(float(ours), rel=1e-6)


# ------------------------------------------------------------------------------------------------
# explicit layers / donors and the layer count


def test_explicit_layers_and_donors_win_over_measured_donors(tmp_path):
    model = build("mixtral", tmp_path)
    model.add_modality(IMAGE, method="moextend", settings={"layers": [2, 0], "donors": [3, 1]})
    model.end_stage()
    model.next_phase()
    record = model.end_stage(data=[batch(model, ["image"] * 3, seed=4)])  # held-out data: usage still recorded
    assert record.state["layers"] == [0, 2] and record.state["donors"] == {"0": [1], "2": [3]}
    assert len(record.state["scores"]) == 3
    model.next_phase()
    assert model.llm.model.layers[0].mlp.extensions[0].donors == [1]
    assert model.llm.model.layers[2].mlp.extensions[0].donors == [3]
    assert not isinstance(model.llm.model.layers[1].mlp, ExtendedMoeBlock)


@pytest.mark.parametrize("settings, message", [
    ({"layers": [1, 2], "donors": [0]}, "1 entries for 2 'layers'"),
    ({"layers": [1, 1]}, "layer 1 twice"),
    ({"donors": [0]}, "needs settings 'layers'"),
    ({"layers": [1], "donors": [[0, 1]]}, "settings.donors': layer 1 needs 1 distinct expert"),
    ({"layers": [1], "donors": [0, 0], "num_new_experts": 2}, "2 entries for 1 'layers'"),
    ({"layers": [1], "donors": [[2, 2]], "num_new_experts": 2}, "2 distinct expert"),
    ({"layers": [1], "donors": "first"}, "must be a list"),
    ({"layers": [1], "donors": {"3": [0]}}, "layer 3, which is not in 'layers'"),
    ({"layers": [-1]}, "non-negative integers"),
    ({"layer_fraction": 1.5}, "layer_fraction"),
    ({"num_layers": 0}, "num_layers"),
])
def test_selection_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        get_method("moextend").check_settings(settings)


def test_donors_forms_and_model_ranges(tmp_path):
    impl = get_method("moextend")
    impl.check_settings({"layers": [0, 2], "donors": [[0, 1], [3, 2]], "num_new_experts": 2})
    impl.check_settings({"layers": [0, 2], "donors": {"2": [1], 0: 3}})
    with pytest.raises(ValueError, match=r"'stages\[0\]\.settings\.layers': names layer 1 twice"):
        impl.check_settings({"layers": [1, 1]}, where="stages[0].settings")  # names the config key
    model = build("mixtral", tmp_path)
    with pytest.raises(ValueError, match="layer 3, which has no MoE block"):
        model.add_modality(IMAGE, method="moextend", settings={"layers": [0, 3]})
    with pytest.raises(ValueError, match="expert 4 in layer 2, which has 4 original experts"):
        model.add_modality(IMAGE, method="moextend", settings={"layers": [0, 2], "donors": [0, 4]})


def test_layer_count_is_floor_of_fraction():
    assert [layer_count(n) for n in (32, 33, 31, 3, 2, 1)] == [16, 16, 15, 1, 1, 1]  # the authors' L // 2
    assert layer_count(100, 0.29) == 29 and layer_count(10, 0.7) == 7  # decimal products stay exact
    assert layer_count(32, 0.5, num_layers=5) == 5
    with pytest.raises(ValueError, match="cannot extend 4 of 3"):
        layer_count(3, num_layers=4)


def test_paper_preset_uses_the_published_layers_and_donors():
    from modweave.config import load_run_config

    st = load_run_config("configs/moextend/mixtral-8x7b-clip336.yaml").stages[0]
    assert st.settings["layers"] == [2, 3, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 19, 20, 25, 27]
    assert st.settings["donors"] == [1, 3, 3, 1, 0, 7, 2, 7, 0, 5, 5, 3, 0, 3, 3, 1]
    assert "layer_fraction" not in st.settings and get_method("moextend").check_settings({})["layers"] is None


# ------------------------------------------------------------------------------------------------
# the new router row in bf16


def bf16_block(hidden: int = 512) -> ExtendedMoeBlock:
    torch.manual_seed(0)
    block = MixtralSparseMoeBlock(MixtralConfig(hidden_size=hidden, intermediate_size=32, num_local_experts=4,
                                                num_experts_per_tok=2))
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.05)
    ext_block = ExtendedMoeBlock(block.to(torch.bfloat16), 0)
    ext_block.add_extension([1], "image", exclusive=False)
    return ext_block


def test_bf16_new_router_row_exact_at_init_and_accurate_once_moved():
    block = bf16_block()
    ext = block.extensions[0]
    x = torch.randn(256, 512, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    orig = block.gate(x)[0]
    assert torch.equal(block.new_logits(x, orig)[0][:, 0], orig.float()[:, 1])  # bit-equal to the donor
    with torch.no_grad():  # the row moves away from its copy by about its own size
        ext.router.add_(0.05 * torch.randn(ext.router.shape, generator=torch.Generator().manual_seed(2)))
    ref = x.double() @ ext.router[0].detach().double()  # fp64 reference from the same bf16 values

    def err(z):
        return float((z.detach().double() - ref).abs().mean())

    ours = err(block.new_logits(x, orig)[0][:, 0])
    direct = err(F.linear(x, ext.router)[:, 0])  # a plain bf16 product (not bit-exact at init)
    bf16_difference = err(orig.float()[:, 1] + F.linear(x, ext.router - block.gate.weight[[1]]).float()[:, 0])
    assert ours <= direct  # as accurate as the direct product (its error: the donor logit's own rounding)
    assert ours < 0.7 * bf16_difference  # the difference term in bf16 was markedly worse


def test_fp32_linear_gradients_match_an_fp32_product():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 16, generator=g).to(torch.bfloat16).requires_grad_()
    w = torch.randn(2, 16, generator=g, requires_grad=True)
    y = fp32_linear(x, w)
    assert y.dtype == torch.float32
    up = torch.randn(9, 2, generator=g)
    (y * up).sum().backward()
    x32 = x.detach().float().requires_grad_()
    w32 = w.detach().clone().requires_grad_()
    (F.linear(x32, w32) * up).sum().backward()
    assert torch.allclose(y, F.linear(x32, w32)) and torch.allclose(w.grad, w32.grad, rtol=1e-6)
    assert x.grad.dtype == torch.bfloat16 and torch.allclose(x.grad.float(), x32.grad, rtol=1e-2, atol=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision does not lower it to bf16
        assert fp32_linear(x.detach().float(), w.detach()).dtype == torch.float32
    assert torch.equal(fp32_linear(x32.detach(), w32.detach()), F.linear(x32.detach(), w32.detach()))  # fp32: plain op
