"""The lora baseline's PEFT folders: CKPT/peft/<modality>/ loads with peft alone onto a copy of the
base connector and computes what modweave's connector computes on that modality's path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from modweave.config import load_run_config
from modweave.model import XModalLM

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test-train.yaml"
MEDIA = {"video": (2, 2, 3, 16, 16), "audio": (2, 1, 16, 16)}

pytestmark = pytest.mark.usefixtures("one_thread")


def _features(model: XModalLM, modality: str) -> torch.Tensor:
    """The connector's input on `modality`'s path: encoder tokens through the path's norm/projection."""
    g = torch.Generator().manual_seed(len(modality))
    media = torch.rand(MEDIA[modality], generator=g).flatten(0, 1)
    path = model.paths[modality]
    with torch.no_grad():
        return path.input_proj(path.input_norm(model.encoders[path.encoder_name](media)))


def test_peft_folder_loads_with_peft_alone_and_matches_modweave(tmp_path):
    from peft import PeftModel

    cfg = load_run_config(CONFIG)
    torch.manual_seed(0)
    model = XModalLM.build(cfg.model)
    model.end_stage(tmp_path)
    base_copy = copy.deepcopy(model.connectors["base"])  # the base connector, no adapter on it
    for st in cfg.stages:  # video, audio: both through lora, so the folders must not mix adapters
        model.add_modality(st.modality, method="lora", settings={"rank": 2, "alpha": 3.0})
        with torch.no_grad():  # as after training: LoRA B starts at 0, so give both matrices values
            for n, p in model.connectors["base"].named_parameters():
                if "lora_" in n and f".{st.modality.name}." in n:
                    p.normal_(std=0.5)
        model.end_stage(tmp_path)
    model.eval()
    assert sorted(p.name for p in (tmp_path / "peft").iterdir()) == ["audio", "video"]
    for m in ("video", "audio"):
        folder = tmp_path / "peft" / m
        assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
        conf = json.loads((folder / "adapter_config.json").read_text())
        assert conf["peft_type"] == "LORA" and conf["r"] == 2 and conf["lora_alpha"] == 3.0
        feats, queries = _features(model, m), model.paths[m].query_tokens
        with torch.no_grad(), model.context.path(m):
            ours = model.connectors["base"](feats, queries)
        peft_model = PeftModel.from_pretrained(copy.deepcopy(base_copy), str(folder)).eval()
        with torch.no_grad():
            theirs = peft_model(feats, queries)
            plain = base_copy(feats, queries)
        assert not torch.allclose(ours, plain, atol=1e-4)  # the adapter changes the output ...
        # ... and peft's copy computes the same, within float rounding (ours merges W + s B A: lora_layer.py)
        torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=5e-5)
    # the checkpoint still reloads, and re-saving into it (peft/ and README.md present) is allowed
    loaded = XModalLM.from_pretrained(tmp_path)
    loaded.save_pretrained(tmp_path)
    feats = _features(loaded, "audio")
    with torch.no_grad(), loaded.context.path("audio"):
        again = loaded.connectors["base"](feats, loaded.paths["audio"].query_tokens)
    with torch.no_grad(), model.context.path("audio"):
        assert torch.equal(again, model.connectors["base"](feats, model.paths["audio"].query_tokens))


def test_no_peft_folder_without_a_lora_stage(tmp_path):
    cfg = load_run_config(CONFIG)
    model = XModalLM.build(cfg.model)
    model.end_stage(tmp_path)
    model.add_modality(cfg.stages[0].modality, method="frozen")
    model.end_stage(tmp_path)
    assert not (tmp_path / "peft").exists() and (tmp_path / "README.md").is_file()
