"""Tiny MoE LLMs of two transformers families (Mixtral; Qwen3-MoE via a JSON architecture) and batches
for the MoExtend tests."""

from __future__ import annotations

import json

import torch

from modweave.config import EncoderConfig, LLMConfig, ModalitySpec, ModelConfig, PromptConfig, TokenizerConfig
from modweave.model import XModalLM

CORPUS = ["question : what digit is shown ? answer : zero one two three four five six seven eight nine image : audio :"]
AUDIO = ModalitySpec(name="audio", encoder=EncoderConfig(kind="tiny-audio", width=16, options={"n_mels": 8, "patch_frames": 4}),
                     cue=" audio: ")
IMAGE = ModalitySpec(name="image", encoder=EncoderConfig(kind="tiny-image", width=24, options={"image_size": 8, "patch": 4}),
                     cue=" image: ")
MEDIA = {"audio": lambda g: torch.rand(8, 8, generator=g), "image": lambda g: torch.rand(3, 8, 8, generator=g),
         "text": lambda g: None}


def _qwen3_json(tmp_path) -> str:
    arch = {"model_type": "qwen3_moe", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
            "moe_intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": True,
            "max_position_embeddings": 128, "router_aux_loss_coef": 0.01, "tie_word_embeddings": False}
    path = tmp_path / "tiny-qwen3-moe.json"
    path.write_text(json.dumps(arch))
    return str(path)


def build(family: str, tmp_path) -> XModalLM:
    if family == "mixtral":
        llm = LLMConfig(kind="tiny-mixtral", hidden_size=32, intermediate_size=48, num_layers=3, num_heads=4,
                        num_kv_heads=2, num_experts=4, top_k=2, max_positions=128)
    else:
        llm = LLMConfig(kind="hf", name_or_path=_qwen3_json(tmp_path))
    cfg = ModelConfig(llm=llm, tokenizer=TokenizerConfig(corpus=CORPUS), prompt=PromptConfig(template="{prompt}{media}"))
    cfg.connector.kind, cfg.connector.encoder_width, cfg.connector.mlp_layers = "mlp", 8, 1
    model = XModalLM.build(cfg)
    model.end_stage()
    return model


def batch(model: XModalLM, modalities: list[str], seed: int = 0, train: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    items = [{"id": f"{m}{i}", "modality": m, "media": MEDIA[m](g), "prompt": "what digit is shown ?",
              "answer": ["one", "two seven", "nine"][i % 3]} for i, m in enumerate(modalities)]
    return model.collator(train=train)(items)


def run_step(model: XModalLM, spec: ModalitySpec, settings: dict, steps: int = 2, save_dir=None) -> None:
    """All three phases of one step with a few AdamW steps each (held-out data for the extender)."""
    model.add_modality(spec, method="moextend", settings=settings)
    rows = [spec.name] * 3
    while True:
        params = list(model.trainable_parameters().values())
        opt = torch.optim.AdamW(params, lr=1e-2)
        model.train()
        for i in range(steps):
            opt.zero_grad()
            model(batch(model, rows, seed=i)).loss.backward()
            opt.step()
        model.eval()
        model.end_stage(save_dir, data=[batch(model, rows, seed=100)])
        if model.next_phase() is None:
            return


def snapshot(model: XModalLM) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.llm.state_dict().items() if "extensions" not in k}


FAMILIES = ["mixtral", "qwen3_moe"]
