"""`ana`'s ablation and init settings (`in_adapters`, `gate`, `init`, `in_adapter_init`): the site
output of every combination equals a hand-written reference (fused, unfused, noisy), the inits have the
stated distributions, and every combination grows, trains, keeps earlier paths bit-identical and
reloads bit for bit (the method contract, per variant: tests/methods/test_contract.py covers defaults)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from modweave.config import load_run_config
from modweave.methods import get_method
from modweave.methods.ana import AdaptedLinear, ModalityExperts, adapted_sites
from modweave.methods.ana.init import AUTHORS_STD
from modweave.model import XModalLM
from tinyfactory import media_items

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test-train.yaml"

SWITCHES = [
    pytest.param({"in_adapters": True, "gate": True}, id="full"),
    pytest.param({"in_adapters": False, "gate": True}, id="no_in_adapters"),
    pytest.param({"in_adapters": True, "gate": False}, id="no_gate"),
    pytest.param({"in_adapters": False, "gate": False}, id="uni_modal"),
]


def _site(settings: dict, modalities=(("a", 4), ("b", 8), ("c", 6)), d_in: int = 12, d_out: int = 20,
          perturb: float = 0.3) -> AdaptedLinear:
    """A standalone site with `modalities` added under `settings`, every parameter moved off its init."""
    torch.manual_seed(1)
    site = AdaptedLinear(torch.nn.Linear(d_in, d_out), context=SimpleNamespace(modality=modalities[-1][0]))
    for name, rank in modalities:
        experts = site.add_modality(name, rank, **settings)
        if perturb:
            with torch.no_grad():
                for p in experts.parameters():
                    p.add_(torch.randn_like(p) * perturb)
    return site


def _reference(site: AdaptedLinear, m: str, x: torch.Tensor, in_adapters: bool, gate: bool,
               noise: torch.Tensor | None = None) -> torch.Tensor:
    """The site output written out from the AnaSettings docstring, parameter by parameter."""
    own = site.ana[m]
    earlier = list(site.ana)[: list(site.ana).index(m)] if (in_adapters or gate) else []

    def adapter(a, f=None):
        h = x @ a.down.weight.T + a.down.bias
        if f is not None:
            h = h @ f.weight.T + f.bias
        return a.scale * (h @ a.up.weight.T + a.up.bias)

    outs = [adapter(site.ana[i].adapter, own.in_adapters[i] if in_adapters else None) for i in earlier]
    outs.append(adapter(own.adapter))
    if gate and len(outs) > 1:
        logits = x @ own.gate.w_g.weight.T
        if noise is not None:
            logits = logits + noise * (F.softplus(x @ own.gate.w_n.weight.T) + own.gate.min_std)
        w = torch.softmax(logits, dim=-1)
    else:
        w = torch.full((*x.shape[:-1], len(outs)), 1.0 / len(outs))
    return x @ site.weight.T + site.bias + sum(w[..., e : e + 1] * out for e, out in enumerate(outs))


# ----------------------------------------------------------------------------------------------
# settings


def test_new_settings_default_to_todays_behaviour_and_are_checked():
    ana = get_method("ana")
    s = ana.check_settings({})
    assert (s["in_adapters"], s["gate"], s["init"], s["in_adapter_init"]) == (True, True, "zero", "default")
    assert ana.check_settings({"in_adapters": False, "gate": False, "init": "authors"})["init"] == "authors"
    for settings, key in (({"gate": "no"}, "gate"), ({"in_adapters": 0}, "in_adapters"),
                          ({"init": "kaiming"}, "init"), ({"in_adapter_init": "eye"}, "in_adapter_init"),
                          ({"in_adapters": False, "in_adapter_init": "identity"}, "in_adapter_init")):
        with pytest.raises(ValueError, match=rf"'stage\.{key}'"):
            ana.check_settings(settings, "stage")


def test_settings_switch_the_site_structure():
    """Which modules modality c (third at the site) owns under each combination."""
    shapes = {}
    for ia in (True, False):
        for gate in (True, False):
            c = _site({"in_adapters": ia, "gate": gate}, perturb=0).ana["c"]
            shapes[ia, gate] = (c.sources, sorted(c.in_adapters), c.gate is not None and c.gate.num_experts)
    assert shapes == {(True, True): (["a", "b"], ["a", "b"], 3), (False, True): (["a", "b"], [], 3),
                      (True, False): (["a", "b"], ["a", "b"], False), (False, False): ([], [], False)}


# ----------------------------------------------------------------------------------------------
# the site's math, per combination


@pytest.mark.parametrize("switches", SWITCHES)
@pytest.mark.parametrize("fuse_devices", [("cpu",), ()], ids=["P-fused", "P-separate"])
def test_site_output_equals_the_hand_written_reference(switches, fuse_devices, monkeypatch):
    monkeypatch.setattr(ModalityExperts, "fuse_base_devices", fuse_devices)
    site = _site(switches).eval()
    x = torch.randn(2, 5, 12)
    for m in ("a", "b", "c"):
        site.context.modality = m
        want = _reference(site, m, x, **switches)
        torch.testing.assert_close(site(x), want, rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # the cached fold gives the same result
            torch.testing.assert_close(site(x), want, rtol=1e-5, atol=1e-5)
        experts = site.ana[m]  # the reference path of the module agrees too
        mix = (experts.weights(x).unsqueeze(-1) * experts.expert_outputs(x, site.ana)).sum(-2)
        torch.testing.assert_close(experts(x, site.ana), mix, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(site.weight @ x[0, 0] + site.bias + mix[0, 0], want[0, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("switches", SWITCHES)
@pytest.mark.parametrize("modality", ["a", "c"], ids=["first", "third"])
@pytest.mark.parametrize("noise", [False, True], ids=["quiet", "noisy"])
@pytest.mark.parametrize("fuse_devices", [("cpu",), ()], ids=["P-fused", "P-separate"])
def test_site_gradients_equal_the_hand_written_references(switches, modality, noise, fuse_devices, monkeypatch):
    """Training: the gradients of x and of every trained parameter equal autograd's through the
    reference. Both training paths have hand-written backwards: ungated sites the merged map (one matmul
    with P + U D: methods/merged_lowrank.py), gated ones methods/ana/gated_site.py."""
    monkeypatch.setattr(ModalityExperts, "fuse_base_devices", fuse_devices)
    site = _site(switches).train()
    for experts in site.ana.values():
        if experts.gate is not None:
            experts.gate.noise = noise
    site.context.modality = modality
    x = torch.randn(2, 5, 12, requires_grad=True)
    grad_out = torch.randn(2, 5, 20)
    params = [x, *(p for p in site.ana[modality].parameters())]
    torch.manual_seed(5)
    got = torch.autograd.grad(site(x), params, grad_out, materialize_grads=True)  # W_n when quiet: unused, 0
    gated = site.ana[modality].gate is not None
    torch.manual_seed(5)  # the gate's draw [..., E], as the site's
    drawn = torch.randn(2, 5, 3) if noise and gated else None
    want = _reference(site, modality, x, noise=drawn, **switches)
    for g, w in zip(got, torch.autograd.grad(want, params, grad_out, materialize_grads=True)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("switches", [s for s in SWITCHES if s.values[0]["gate"]])
@pytest.mark.parametrize("fuse_devices", [("cpu",), ()], ids=["P-fused", "P-separate"])
def test_gated_training_output_is_bit_identical_to_the_autograd_path(switches, fuse_devices, monkeypatch):
    """The hand-written training path (grad enabled) runs the autograd path's forward ops in order and
    draws the same noise: the same bits as the site under no_grad, noisy gate included."""
    monkeypatch.setattr(ModalityExperts, "fuse_base_devices", fuse_devices)
    site = _site(switches).train()
    x = torch.randn(2, 5, 12, requires_grad=True)
    torch.manual_seed(5)
    trained = site(x)
    torch.manual_seed(5)
    with torch.no_grad():
        assert torch.equal(trained, site(x))


@pytest.mark.parametrize("switches", [s for s in SWITCHES if s.values[0]["gate"]])
def test_noisy_training_mixture_equals_the_reference(switches):
    site = _site(switches).train()
    x = torch.randn(2, 5, 12)
    torch.manual_seed(5)
    got = site(x)
    torch.manual_seed(5)  # the gate draws its noise [..., E] once, as the reference's
    noise = torch.randn(2, 5, 3)
    torch.testing.assert_close(got, _reference(site, "c", x, noise=noise, **switches), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# inits


def test_zero_init_starts_a_uni_modal_path_exactly_at_the_base():
    """`init: zero` (Up 0): an untrained uni-modal adapter leaves the site exactly P(x), at every step;
    a full-ana step m >= 2 does not (its earlier experts contribute from the start)."""
    site = _site({"in_adapters": False, "gate": False}, perturb=0).eval()
    x = torch.randn(3, 12)
    for m in "abc":
        site.context.modality = m
        assert torch.equal(site(x), F.linear(x, site.weight, site.bias)), m
    full = _site({}, perturb=0.3)
    full.add_modality("d", 4)
    full.context.modality = "d"
    assert not torch.equal(full.eval()(x), F.linear(x, full.weight, full.bias))


def _std_close(t: torch.Tensor, std: float, rel: float) -> bool:
    return abs(t.std().item() - std) < rel * std and abs(t.mean().item()) < 3 * std / t.numel() ** 0.5 + 1e-3


def test_authors_init_draws_adapter_and_in_adapter_weights_from_n_0_002():
    site = _site({"init": "authors", "in_adapter_init": "authors"}, modalities=(("a", 64), ("b", 64)),
                 d_in=256, d_out=256, perturb=0)
    for m in "ab":
        a = site.ana[m].adapter
        assert _std_close(a.down.weight, AUTHORS_STD, 0.05) and _std_close(a.up.weight, AUTHORS_STD, 0.05)
        assert not a.down.bias.any() and not a.up.bias.any() and a.scale.item() == 1.0
    f = site.ana["b"].in_adapters["a"]  # 64 x 64 values
    assert _std_close(f.weight, AUTHORS_STD, 0.1) and not f.bias.any()
    default = _site({}, modalities=(("a", 64), ("b", 64)), perturb=0).ana["b"].in_adapters["a"]
    assert default.weight.std() > 3 * AUTHORS_STD  # PyTorch's Linear init (bound 1/sqrt(r)) is wider
    assert default.weight.abs().max() <= 64 ** -0.5


@pytest.mark.parametrize("rule", ["default", "authors", "identity"])
def test_in_adapter_init_and_the_copy_from_the_previous_modality(rule):
    """`default` / `authors` start F_i^m as a copy of F_i^(m-1) where that exists (fresh ones: PyTorch's
    init / N(0, 0.02) with bias 0); `identity` is always F = I, bias 0, never copied, so each earlier
    adapter starts as itself inside the new path, exactly."""
    site = _site({"in_adapter_init": rule}, modalities=(("a", 4), ("b", 8)))  # b's F_a trained (moved)
    torch.manual_seed(2)
    c = site.add_modality("c", 6, in_adapter_init=rule)
    copied, fresh = c.in_adapters["a"], c.in_adapters["b"]
    assert torch.equal(copied.weight, site.ana["b"].in_adapters["a"].weight) is (rule != "identity")
    if rule == "identity":
        for f, r in ((copied, 4), (fresh, 8)):
            assert torch.equal(f.weight, torch.eye(r)) and not f.bias.any()
        x = torch.randn(4, 12)
        outs = c.expert_outputs(x, site.ana)
        for e, src in enumerate("ab"):
            assert torch.equal(outs[:, e], site.ana[src].adapter(x)), src
    elif rule == "authors":
        assert not fresh.bias.any() and fresh.weight.abs().max() < 6 * AUTHORS_STD
    else:  # PyTorch's Linear init: weight and bias uniform in +-1/sqrt(r)
        assert fresh.bias.any() and fresh.weight.abs().max() <= 8 ** -0.5


# ----------------------------------------------------------------------------------------------
# the whole model, per variant: grow, train, earlier paths, save and reload

DEPTH = {"name": "depth", "encoder": "image", "cue": " depth: "}
VARIANTS = [
    pytest.param([{}] * 3, id="defaults"),
    *[pytest.param([s.values[0]] * 3, id=s.id) for s in SWITCHES[1:]],
    pytest.param([{"init": "authors", "in_adapter_init": "authors"}] * 3, id="authors_init"),
    pytest.param([{"in_adapter_init": "identity", "gate": False}] * 3, id="identity_no_gate"),
    pytest.param([{}, {"in_adapters": False, "gate": False}, {"in_adapters": False, "init": "authors"}],
                 id="mixed_per_step"),
]


def _logits(model: XModalLM, modalities: list[str]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(model.collator(train=True)(media_items(modalities))).logits


def _train_step(model: XModalLM, modality: str) -> None:
    """One real AdamW update of exactly the stage's trainable set (noisy gates: training mode)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.05)
    model(model.collator(train=True)(media_items([modality, modality]))).loss.backward()
    opt.step()
    model.eval()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("per_step", VARIANTS)
def test_every_variant_grows_trains_keeps_earlier_paths_and_reloads(per_step, tmp_path):
    cfg = load_run_config(CONFIG)
    torch.manual_seed(0)
    model = XModalLM.build(cfg.model)
    model.end_stage()
    seen = ["text", "image"]
    before = _logits(model, seen)
    specs = [st.modality for st in cfg.stages] + [DEPTH]  # video, audio (own encoder), depth
    for spec, settings in zip(specs, per_step):
        model.add_modality(spec, method="ana", settings=settings)
        name = model.stages[-1].modality
        start = {n: p.detach().clone() for n, p in model.trainable_parameters().items()}
        _train_step(model, name)
        moved = [n for n, p in model.trainable_parameters().items() if not torch.equal(p, start[n])]
        assert moved, name
        model.end_stage(tmp_path / "ckpt")
        assert torch.equal(_logits(model, seen), before), f"earlier paths changed after {name}"
        seen.append(name)
        before = _logits(model, seen)
    manifest = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    recorded = [s["settings"] for s in manifest["stages"][1:]]
    assert recorded == [get_method("ana").check_settings(s) for s in per_step]  # complete, as JSON
    loaded = XModalLM.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(_logits(loaded, seen), before)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    depth = {n: s.ana["depth"] for n, s in adapted_sites(loaded).items()}["proj"]
    want = per_step[-1]
    cross = want.get("in_adapters", True) or want.get("gate", True)
    assert depth.sources == (["video", "audio"] if cross else [])
    assert (depth.gate is not None) == (cross and want.get("gate", True))
