"""PathWeave (`ana`): zero-init adapters, uniform gates, noise only in training, the exact trainable set,
bit-identical earlier paths after later steps, mixed batches, and save / reload (`upto=`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from modweave.config import EncoderConfig, ModalitySpec, load_run_config
from modweave.methods import get_method
from modweave.methods.ana import Adapter, AdaptedLinear, ModalityExperts, NoisyGate, adapted_sites, inject
from modweave.model import XModalLM

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
PRESET = REPO / "configs" / "pathweave" / "instructblip-vicuna7b.yaml"

# the four new modalities of the paper, in its order, on the tiny base (cross-attention width 64)
STEPS = [
    ModalitySpec(name="video", encoder="image", cue=" video: ", num_frames=2),
    ModalitySpec(name="audio", cue=" audio: ",  # width 32 != 64: gets a Linear(32 -> 64) projection
                 encoder=EncoderConfig(kind="tiny-audio", width=32, options={"n_mels": 16, "patch_frames": 4})),
    ModalitySpec(name="depth", encoder="image", cue=" depth: ", num_frames=2),
    ModalitySpec(name="point_cloud", cue=" 3d: ", encoder=EncoderConfig(kind="tiny-points", width=64,
                                                                           options={"num_tokens": 1})),
]
MEDIA = {"image": (3, 16, 16), "video": (2, 3, 16, 16), "audio": (2, 32, 16), "depth": (2, 3, 16, 16),
         "point_cloud": (64, 3)}
ANSWERS = ["seven", "left", "three", "near"]


def items(modality: str, seed: int, n: int = 2) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"id": f"{modality}-{seed}-{i}", "modality": modality, "media": torch.rand(MEDIA[modality], generator=g),
             "prompt": "what digit is shown ?", "answer": ANSWERS[(seed + i) % len(ANSWERS)]} for i in range(n)]


def base_model() -> XModalLM:
    """The tiny base with its connector and LLM moved away from their init (a 'pretrained' base)."""
    torch.manual_seed(0)
    model = XModalLM.build(load_run_config(TINY).model)
    with torch.no_grad():
        for p in list(model.connectors.parameters()) + list(model.llm.parameters()):
            p.add_(0.02 * torch.randn_like(p))
    model.end_stage()
    return model.eval()


@torch.no_grad()
def logits(model: XModalLM, modality: str) -> torch.Tensor:
    model.eval()
    return model(model.collator()(items(modality, seed=100))).logits


def train_steps(model: XModalLM, modality: str, steps: int = 2) -> None:
    """A few real AdamW updates on random media of `modality` (exactly the stage's trainable set)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05)
    for s in range(steps):
        loss = model(model.collator()(items(modality, seed=s))).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def expected_sites(cfg, d_llm: int | None = None) -> dict[str, tuple[int, int]]:
    """Site name -> (d_in, d_out), from the config alone: Q/K/V/O of every self- and cross-attention
    layer of the base Q-Former, plus the LLM projection."""
    c, d_llm = cfg.model.connector, d_llm or cfg.model.llm.hidden_size
    sites = {}
    for i in range(c.num_layers):
        blocks = ["attention"] + (["crossattention"] if i % c.cross_attention_frequency == 0 else [])
        for block in blocks:
            pre = f"connectors.base.qformer.encoder.layer.{i}.{block}"
            kv_in = c.encoder_width if block == "crossattention" else c.hidden_size
            sites[f"{pre}.attention.query"] = (c.hidden_size, c.hidden_size)
            sites[f"{pre}.attention.key"] = (kv_in, c.hidden_size)
            sites[f"{pre}.attention.value"] = (kv_in, c.hidden_size)
            sites[f"{pre}.output.dense"] = (c.hidden_size, c.hidden_size)
    sites["connectors.base.proj"] = (c.hidden_size, d_llm)
    return sites


# ----------------------------------------------------------------------------------------------
# the modules on their own


def test_new_adapter_outputs_exactly_zero():
    x = torch.randn(3, 5, 24)
    out = Adapter(24, 40, rank=8)(x)
    assert torch.equal(out, torch.zeros(3, 5, 40))


@pytest.mark.parametrize("num_experts", [2, 3, 4, 5])
def test_zero_initialised_gate_is_exactly_uniform(num_experts):
    gate = NoisyGate(16, num_experts).eval()
    g = gate(torch.randn(7, 16) * 10)
    assert torch.equal(g, torch.full((7, num_experts), 1.0 / num_experts))


def test_gate_noise_only_in_training_mode():
    gate = NoisyGate(16, 3)
    x = torch.randn(7, 16)
    gate.train()
    a, b = gate(x), gate(x)
    assert not torch.equal(a, b) and not torch.equal(a, torch.full_like(a, 1 / 3))
    gate.eval()
    assert torch.equal(gate(x), gate(x)) and torch.equal(gate(x), torch.full_like(a, 1 / 3))
    quiet = NoisyGate(16, 3, noise=False).train()
    assert torch.equal(quiet(x), quiet(x))


@pytest.mark.parametrize("fuse_devices", [("cpu",), ()], ids=["P-fused-into-Down", "P-separate"])
def test_batched_mixture_equals_sum_of_gated_experts(fuse_devices, monkeypatch):
    """The two-matmul mixture equals `sum_e g_e(x) * expert_e(x)` computed expert by expert."""
    monkeypatch.setattr(ModalityExperts, "fuse_base_devices", fuse_devices)
    torch.manual_seed(1)
    site = AdaptedLinear(torch.nn.Linear(12, 20), context=SimpleNamespace(modality="c"))
    for name, rank in (("a", 4), ("b", 8), ("c", 6)):
        experts = site.add_modality(name, rank)
        with torch.no_grad():
            for p in experts.parameters():
                p.add_(torch.randn_like(p) * 0.3)
    site.eval()
    x = torch.randn(2, 5, 12)
    experts = site.ana["c"]
    reference = (experts.gate(x).unsqueeze(-1) * experts.expert_outputs(x, site.ana)).sum(-2)
    torch.testing.assert_close(site(x), F.linear(x, site.weight, site.bias) + reference)
    torch.testing.assert_close(experts(x, site.ana), reference)
    site.train()  # noisy gate in training: the site output varies from call to call
    assert not torch.equal(site(x), site(x))


def test_settings_defaults_and_validation():
    ana = get_method("ana")
    s = ana.check_settings({})
    assert s["rank"] == 8 and s["sites"] == ["q", "k", "v", "o", "llm_proj"]
    assert s["gate_noise"] == {"enabled": True, "min_std": 0.01}
    assert ana.check_settings({"gate_noise": {"min_std": 0.1}})["gate_noise"] == {"enabled": True, "min_std": 0.1}
    for bad in ({"sites": ["ffn"]}, {"rank": 0}, {"gate_noise": {"sigma": 1}}, {"ranks": 8}):
        with pytest.raises(ValueError):
            ana.check_settings(bad)


def test_sites_and_rank_settings_shape_the_injection():
    model = base_model()
    model.add_modality(STEPS[0], method="ana", settings={"sites": ["q", "llm_proj"], "rank": 3})
    sites = adapted_sites(model)
    assert len(sites) == 2 + 1 + 1  # self-attn query in 2 layers, cross-attn query in 1, the projection
    assert all(s.ana["video"].adapter.down.out_features == 3 for s in sites.values())
    assert inject(model, ["q", "llm_proj"]) == sites  # idempotent: the same wrappers come back


def test_untrained_ana_path_equals_frozen_path_bit_for_bit():
    """Right after `add_modality`, every adapter outputs 0: the path is exactly the frozen base's."""
    with_ana, frozen = base_model(), base_model()
    with_ana.add_modality(STEPS[0], method="ana")
    frozen.add_modality(STEPS[0], method="frozen")
    assert torch.equal(logits(with_ana, "video"), logits(frozen, "video"))
    assert torch.equal(logits(with_ana, "image"), logits(frozen, "image"))


def test_preset_counts_on_meta_device():
    """The paper-scale preset: 73 sites; step 1 trains A^1 at 73 sites + queries + LayerNorm."""
    from modweave.params import stage_param_counts

    cfg = load_run_config(PRESET)
    sites = expected_sites(cfg, d_llm=4096)
    assert len(sites) == 73 and sites["connectors.base.qformer.encoder.layer.0.crossattention.attention.key"] \
        == (1408, 768) and sites["connectors.base.proj"] == (768, 4096)
    counts = stage_param_counts(cfg)
    adapters = sum(8 * (i + 1) + o * (8 + 1) + 1 for i, o in sites.values())
    assert counts["stages"]["video"]["trainable"] == adapters + 32 * 768 + 2 * 1408
    assert list(counts["stages"]) == ["base", "video", "audio", "depth", "point_cloud"]
    for name in ("video", "audio", "depth", "point_cloud"):  # >= 98.7% fewer than a connector per modality
        assert counts["stages"][name]["trainable"] < 0.013 * counts["reference_connector"]


# ----------------------------------------------------------------------------------------------
# growing the tiny base through the four steps (one run shared by the tests below)


@pytest.fixture(scope="module")
def grown():
    cfg = load_run_config(TINY)
    model = base_model()
    recorded = {"image": logits(model, "image")}
    trainable, f_copied, untouched = {}, {}, []
    for spec in STEPS:
        model.add_modality(spec, method="ana")
        trainable[spec.name] = {n: p.numel() for n, p in model.trainable_parameters().items()}
        sites = adapted_sites(model)
        names = list(next(iter(sites.values())).ana)
        if len(names) >= 3:  # F_i^m starts as F_i^(m-1) where that exists
            prev, new = sites["proj"].ana[names[-2]], sites["proj"].ana[names[-1]]
            f_copied[spec.name] = all(torch.equal(new.in_adapters[s].weight, prev.in_adapters[s].weight)
                                      for s in prev.in_adapters)
        train_steps(model, spec.name)
        model.end_stage()
        untouched.append({m: torch.equal(logits(model, m), ref) for m, ref in recorded.items()})
        recorded[spec.name] = logits(model, spec.name)
    return SimpleNamespace(cfg=cfg, model=model, recorded=recorded, trainable=trainable, f_copied=f_copied,
                           untouched=untouched)


def test_trainable_set_is_exactly_the_specs(grown):
    sites = expected_sites(grown.cfg)
    assert set(adapted_sites(grown.model)) == {n.removeprefix("connectors.base.") for n in sites}
    r = 8
    for m, spec in enumerate(STEPS, start=1):
        earlier = [s.name for s in STEPS[: m - 1]]
        want = {f"paths.{spec.name}.{p}" for p in ("query_tokens", "input_norm.weight", "input_norm.bias")}
        if spec.name == "audio":
            want |= {"paths.audio.input_proj.weight", "paths.audio.input_proj.bias"}
        numel = 4 * 64 + 2 * (32 if spec.name == "audio" else 64) + (32 * 64 + 64 if spec.name == "audio" else 0)
        for site, (d_in, d_out) in sites.items():
            pre = f"{site}.ana.{spec.name}"
            want |= {f"{pre}.adapter.{p}" for p in ("down.weight", "down.bias", "up.weight", "up.bias", "scale")}
            want |= {f"{pre}.in_adapters.{i}.{p}" for i in earlier for p in ("weight", "bias")}
            numel += r * (d_in + 1) + d_out * (r + 1) + 1 + len(earlier) * (r * r + r)
            if m >= 2:
                want |= {f"{pre}.gate.w_g.weight", f"{pre}.gate.w_n.weight"}
                numel += 2 * d_in * m
        assert set(grown.trainable[spec.name]) == want, spec.name
        assert sum(grown.trainable[spec.name].values()) == numel, spec.name


def test_in_adapters_start_from_the_previous_modalitys(grown):
    assert grown.f_copied == {"depth": True, "point_cloud": True}


def test_earlier_paths_bit_identical_after_every_later_step(grown):
    for after, checks in zip(STEPS, grown.untouched):
        assert all(checks.values()), (after.name, checks)
    assert [len(c) for c in grown.untouched] == [1, 2, 3, 4]  # image, then each earlier modality
    for m, ref in grown.recorded.items():
        assert torch.equal(logits(grown.model, m), ref), m
    # and the steps did learn something: each new path now differs from the untouched base path
    assert not torch.equal(grown.recorded["video"], grown.recorded["depth"])


def test_mixed_batch_matches_separate_batches(grown):
    model = grown.model
    mixed_items = [it for m in ("image", "video", "audio", "depth", "point_cloud") for it in items(m, seed=7, n=1)]
    with torch.no_grad():
        mixed = model(model.collator()(mixed_items), reduction="none").nll
        alone = torch.cat([model(model.collator()([it]), reduction="none").nll for it in mixed_items])
    torch.testing.assert_close(mixed, alone, rtol=1e-5, atol=1e-5)


def test_save_and_reload_reproduce_every_path(grown, tmp_path):
    grown.model.save_pretrained(tmp_path)
    reloaded = XModalLM.from_pretrained(tmp_path)
    for m, ref in grown.recorded.items():
        assert torch.equal(logits(reloaded, m), ref), m
    names = [s.name for s in STEPS]
    for k, name in enumerate(names):
        partial = XModalLM.from_pretrained(tmp_path, upto=name)
        assert partial.modalities == ["image", *names[: k + 1]]
        # the full reload above covers every path; here the path whose stage is the cut-off
        assert torch.equal(logits(partial, name), grown.recorded[name]), name

