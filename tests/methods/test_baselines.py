"""Every registered method trains through the trainer and saves/loads exactly; the `lora` baseline's
adapter switching keeps other paths (the base image path above all) exactly as they were."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from modweave.config import load_run_config
from modweave.methods import list_methods
from modweave.model import XModalLM
from modweave.train import ContinualTrainer

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test-train.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")  # digits_root: the session's tiny MCL-Digits (conftest)


@pytest.mark.parametrize("method", list_methods())
def test_method_trains_a_step_and_reloads_exactly(method, digits_root, tmp_path):
    cfg = load_run_config(CONFIG, [f"data.root={digits_root}", "train.steps=1", "eval.enabled=false",
                                   "data.heldout=2", "train.batch_size=2"])
    cfg.base_train = None  # the base is given: only the method's step trains
    audio = copy.deepcopy(cfg.stages[1])
    audio.method, audio.settings = method, {}
    cfg.stages = [audio]
    trainer = ContinualTrainer(cfg, tmp_path)
    result = trainer.run()
    stage_names = [s.name for s in trainer.model.stages]
    assert stage_names[0] == "base" and all(n.startswith("audio") for n in stage_names[1:])
    assert all(result["trainable_params"][n] > 0 for n in stage_names[1:])
    trained, loaded = trainer.model.eval(), XModalLM.from_pretrained(tmp_path / "checkpoint")
    a, b = trained.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    items = [trainer.data.test("audio")[0], trainer.data.test("image")[0], trainer.data.test("text")[0]]
    batch = trained.collator(train=True)(items)
    assert torch.equal(trained(batch).logits, loaded(batch).logits)


def _media(modality: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(len(modality))
    shape = {"image": (2, 3, 16, 16), "video": (2, 2, 3, 16, 16), "audio": (2, 1, 16, 16)}[modality]
    return torch.rand(shape, generator=g)


def _lora_params(model: XModalLM, modality: str) -> list[torch.nn.Parameter]:
    return [p for n, p in model.connectors["base"].named_parameters() if "lora_B" in n and f".{modality}." in n]


def test_lora_switches_adapters_by_modality_and_keeps_the_base_path_exact(tmp_path):
    cfg = load_run_config(CONFIG)
    torch.manual_seed(0)
    model = XModalLM.build(cfg.model)
    model.end_stage()
    model.eval()
    image_before = model.encode("image", _media("image"))
    for st in cfg.stages:  # video, audio: both through lora
        model.add_modality(st.modality, method="lora", settings={"rank": 2})
        trainable = set(model.trainable_parameters())
        assert trainable and all("lora_" in n and f".{st.modality.name}." in n or n.startswith(f"paths.{st.modality.name}.")
                                 for n in trainable)
        model.encode("image", _media("image"))  # switching must not change what trains
        assert set(model.trainable_parameters()) == trainable
        model.end_stage()
    video_zero = model.encode("video", _media("video"))
    with torch.no_grad():  # LoRA B starts at 0: make the adapters do something
        for p in _lora_params(model, "audio"):
            p.normal_()
    assert torch.equal(model.encode("video", _media("video")), video_zero)  # audio's adapter: not on video
    assert torch.equal(model.encode("image", _media("image")), image_before)  # base path: adapters off
    with torch.no_grad():
        for p in _lora_params(model, "video"):
            p.normal_()
    assert not torch.equal(model.encode("video", _media("video")), video_zero)
    assert torch.equal(model.encode("image", _media("image")), image_before)

    model.save_pretrained(tmp_path)
    loaded = XModalLM.from_pretrained(tmp_path)
    for m in ("image", "video", "audio"):
        assert torch.equal(loaded.encode(m, _media(m)), model.encode(m, _media(m))), m
    assert len(_lora_params(loaded, "audio")) == len(_lora_params(model, "audio")) > 0
