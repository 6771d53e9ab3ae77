"""`modweave train` itself on real-format checkpoints (written by `save_pretrained`, tiny configs): every
`hf-*` encoder kind in a stage and a transformers LLM (dense and MoE) as the base. The preflight builds
them architecture-only, training loads their weights, and the checkpoint reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from encoders import realformat as rf  # tests/ is on pythonpath (pyproject)
from modweave.cli import main
from modweave.model import XModalLM

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "test-train.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")

# a stage per encoder kind: (modality, encoder options, loader settings)
ENCODER_STAGES = {
    "clip": ("video", {}, {"num_frames": 2, "size": 16}),
    "siglip": ("video", {}, {"num_frames": 2, "size": 16}),
    "whisper": ("audio", {"features": "whisper"}, {"features": "whisper", "num_chunks": 1}),
    "ast": ("audio", {"features": "ast"}, {"features": "ast", "num_chunks": 1}),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    for name in (*ENCODER_STAGES, "llama", "mixtral"):
        rf.WRITERS[name](root / name)
    return {name: root / name for name in (*ENCODER_STAGES, "llama", "mixtral")}


def _preset(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base() -> dict:
    data = yaml.safe_load(CONFIG.read_text())
    data["train"].update({"steps": 1, "base": {"steps": 1}})
    data["eval"] = {"enabled": False}
    return data


@pytest.mark.parametrize("name", list(ENCODER_STAGES))
def test_train_grows_a_stage_on_a_pretrained_encoder(checkpoints, digits_root, tmp_path, name):
    modality, options, loader = ENCODER_STAGES[name]
    folder = checkpoints[name]
    if "processor" not in loader and modality == "audio":
        loader = {**loader, "processor": str(folder)}
    data = _base()
    data["stages"] = [{"modality": {"name": modality, "encoder": rf.encoder_entry(name, folder, **options),
                                    "cue": f" {modality}: ", "loader": loader,
                                    **({"num_frames": 2} if modality == "video" else {})},
                       "method": "ana"}]
    out = tmp_path / "run"
    assert main(["train", str(_preset(tmp_path, data)), f"data.root={digits_root}", "--out", str(out)]) == 0
    model = XModalLM.from_pretrained(out / "checkpoint")
    reference = rf.WRITERS[name](tmp_path / "again")  # the same seeded weights the folder holds
    enc = model.encoders[modality].state_dict()
    ref = {k: v for k, v in reference.state_dict().items()}
    # every tensor of the pretrained encoder is the checkpoint's (loaded, not re-initialised)
    unmatched = [k for k, v in enc.items() if not any(k.endswith(r) and torch.equal(v, ref[r]) for r in ref)]
    assert enc and not unmatched, unmatched
    manifest = json.loads((out / "checkpoint" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["base", modality]
    from safetensors import safe_open

    with safe_open(str(out / "checkpoint" / manifest["stages"][1]["file"]), "pt") as fh:
        held = list(fh.keys())
    assert held and not [k for k in held if k.startswith(f"encoders.{modality}.")]  # referenced, not copied


@pytest.mark.parametrize("llm", ["llama", "mixtral"])
def test_train_on_a_pretrained_llm(checkpoints, digits_root, tmp_path, llm):
    folder = checkpoints[llm]
    data = _base()
    data["model"]["llm"] = {"kind": "hf", "name_or_path": str(folder)}
    data["model"]["tokenizer"] = {"kind": "hf", "name_or_path": str(folder)}
    data["stages"] = data["stages"][:1]
    out = tmp_path / "run"
    assert main(["train", str(_preset(tmp_path, data)), f"data.root={digits_root}", "--out", str(out)]) == 0
    model = XModalLM.from_pretrained(out / "checkpoint")
    assert type(model.llm).__name__ == ("LlamaForCausalLM" if llm == "llama" else "MixtralForCausalLM")


@pytest.mark.parametrize("name", list(ENCODER_STAGES))
def test_params_on_a_config_with_pretrained_encoders(checkpoints, tmp_path, capsys, name):
    modality, options, loader = ENCODER_STAGES[name]
    data = _base()
    data["stages"] = [{"modality": {"name": modality, "encoder": rf.encoder_entry(name, checkpoints[name], **options),
                                    "cue": " x: "}, "method": "ana"}]
    assert main(["params", str(_preset(tmp_path, data)), "--json"]) == 0
    stages = json.loads(capsys.readouterr().out)["stages"]
    assert stages[modality]["trainable"] > 0
    # the pretrained encoder is counted in the total (built architecture-only), but does not train
    assert stages[modality]["total"] - stages["base"]["total"] - stages[modality]["trainable"] > 0
