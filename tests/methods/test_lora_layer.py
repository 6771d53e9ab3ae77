"""methods/lora_layer.py: peft's LoRA Linear with vanilla LoRA as one merged matmul. It computes what
peft's own forward computes (values and gradients, within float rounding), falls back to peft's forward
exactly in every case it does not merge, and is what the `lora` method injects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

from modweave.config import load_run_config
from modweave.methods.lora_layer import MergedLoraLinear
from modweave.model import XModalLM


def _layer(dropout: float = 0.0, adapters=("a",)) -> MergedLoraLinear:
    torch.manual_seed(0)
    holder = nn.Sequential(nn.Linear(12, 20))
    for name in adapters:
        config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["0"], bias="none")
        config._register_custom_module({nn.Linear: MergedLoraLinear})
        inject_adapter_in_model(config, holder, adapter_name=name)
    layer = holder[0]
    with torch.no_grad():  # B starts at 0: give it values, as after training
        for n, p in layer.named_parameters():
            if "lora_" in n:
                p.normal_(std=0.5)
    layer.set_adapter(adapters[-1])
    return layer


def _peft(layer: MergedLoraLinear, x: torch.Tensor) -> torch.Tensor:
    """peft's own forward on the same layer."""
    return PeftLoraLinear.forward(layer, x)


def test_merged_forward_and_gradients_equal_pefts():
    layer = _layer().train()
    assert isinstance(layer, MergedLoraLinear) and layer._mergeable_adapter(torch.zeros(1, 12)) == "a"
    x = torch.randn(3, 5, 12, requires_grad=True)
    trained = [x, layer.lora_A["a"].weight, layer.lora_B["a"].weight]
    ours, theirs = layer(x), _peft(layer, x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn_like(ours)
    for g, w in zip(torch.autograd.grad(ours, trained, grad_out), torch.autograd.grad(theirs, trained, grad_out)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert layer.base_layer.weight.grad is None  # the frozen base weight gets no gradient


def test_a_new_adapter_leaves_exactly_the_base_layer():
    layer = _layer()
    with torch.no_grad():
        layer.lora_B["a"].weight.zero_()
    x = torch.randn(4, 12)
    assert torch.equal(layer(x), layer.base_layer(x))


@pytest.mark.filterwarnings("ignore:Already found a `peft_config`")
@pytest.mark.parametrize("case", ["dropout-in-training", "disabled", "two-active", "dtype-mismatch"])
def test_every_case_it_does_not_merge_runs_pefts_forward(case):
    layer = _layer(dropout=0.5 if case == "dropout-in-training" else 0.0,
                   adapters=("a", "b") if case == "two-active" else ("a",)).train()
    x = torch.randn(3, 12)
    if case == "disabled":
        layer.enable_adapters(False)
    elif case == "two-active":
        layer.set_adapter(["a", "b"])
    elif case == "dtype-mismatch":
        layer.lora_A["a"].double()  # the adapter in float64 on a float32 base: peft casts x for it
        layer.lora_B["a"].double()
    assert layer._mergeable_adapter(x) is None
    if case == "dropout-in-training":  # the same dropout draw on both sides
        torch.manual_seed(3)
        ours = layer(x)
        torch.manual_seed(3)
        assert torch.equal(ours, _peft(layer, x))
        layer.eval()  # eval: dropout is the identity, so the layer merges again
        assert layer._mergeable_adapter(x) == "a"
    else:
        assert torch.equal(layer(x), _peft(layer, x))


def test_the_lora_method_injects_the_merged_layer_with_pefts_keys(monkeypatch):
    cfg = load_run_config(Path(__file__).resolve().parents[2] / "configs" / "test-train.yaml")

    def grown() -> nn.Module:
        torch.manual_seed(0)
        model = XModalLM.build(cfg.model)
        model.end_stage()
        model.add_modality(cfg.stages[0].modality, method="lora", settings={"rank": 2})
        return model.connectors["base"]

    ours = grown()
    layers = [m for m in ours.modules() if isinstance(m, PeftLoraLinear)]
    assert layers and all(type(m) is MergedLoraLinear for m in layers)
    monkeypatch.setattr(LoraConfig, "_register_custom_module", lambda self, mapping: None)
    theirs = grown()  # peft's own Linear everywhere
    assert not any(isinstance(m, MergedLoraLinear) for m in theirs.modules())
    assert list(ours.state_dict()) == list(theirs.state_dict())
