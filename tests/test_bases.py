"""InstructBLIP as the PathWeave base: key mapping, strict loading, and numerical agreement with
transformers' own InstructBLIP on a tiny checkpoint written in the public layout (no download)."""

from __future__ import annotations

import pytest
import torch
from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration, LlamaConfig

from modweave.bases.instructblip import (build_empty, build_instructblip, load_instructblip_weights,
                                         map_instructblip_key, map_instructblip_state)
from modweave.checkpoint import CheckpointError, stage_tensors
from modweave.model import XModalLM


def tiny_config() -> InstructBlipConfig:
    return InstructBlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8),
        qformer_config=dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                            encoder_hidden_size=32, vocab_size=50, cross_attention_frequency=1),
        text_config=LlamaConfig(vocab_size=60, hidden_size=40, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2).to_dict(),
        num_query_tokens=4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.manual_seed(0)
    ref = InstructBlipForConditionalGeneration(tiny_config()).eval()
    path = tmp_path_factory.mktemp("instructblip")
    ref.save_pretrained(str(path))
    return ref, path


def test_public_key_names_map_to_modweave_parts():
    # key names as in Salesforce/instructblip-vicuna-7b (tiny shapes)
    state = {
        "query_tokens": torch.zeros(1, 32, 8),
        "vision_model.embeddings.class_embedding": torch.zeros(1, 1, 8),
        "vision_model.encoder.layers.0.self_attn.qkv.weight": torch.zeros(24, 8),
        "qformer.encoder.layer.0.crossattention.attention.key.weight": torch.zeros(8, 8),
        "qformer.embeddings.word_embeddings.weight": torch.zeros(5, 8),
        "language_projection.weight": torch.zeros(16, 8),
        "language_model.model.layers.0.self_attn.q_proj.weight": torch.zeros(16, 16),
        "language_model.lm_head.weight": torch.zeros(7, 16),
    }
    mapped = map_instructblip_state(state)
    assert set(mapped) == {
        "paths.image.query_tokens", "encoders.image.model.embeddings.class_embedding",
        "encoders.image.model.encoder.layers.0.self_attn.qkv.weight",
        "connectors.base.qformer.encoder.layer.0.crossattention.attention.key.weight",
        "connectors.base.qformer.embeddings.word_embeddings.weight", "connectors.base.proj.weight",
        "llm.model.layers.0.self_attn.q_proj.weight", "llm.lm_head.weight"}
    assert mapped["paths.image.query_tokens"].shape == (32, 8)  # leading 1 squeezed
    assert map_instructblip_key("text_model.x") is None
    with pytest.raises(CheckpointError, match="text_model.x"):
        map_instructblip_state({"text_model.x": torch.zeros(1)})


def test_every_reference_tensor_lands_bit_for_bit(reference):
    ref, path = reference
    model = build_instructblip(str(path), dtype="float32", load_tokenizers=False, model_cls=XModalLM)
    ref_state = ref.state_dict()
    own = model.state_dict()
    for key, value in ref_state.items():
        target = map_instructblip_key(key)
        expected = value[0] if key == "query_tokens" else value
        assert torch.equal(own[target], expected), key
    assert not any(p.requires_grad for p in model.parameters())
    assert not any(p.is_meta for p in model.parameters())
    # the base's hub weights are not copied into modweave stage files
    assert set(stage_tensors(model, 0)) == {"paths.image.query_tokens"}


def test_encode_matches_transformers_instructblip(reference):
    ref, path = reference
    model = build_instructblip(str(path), dtype="float32", load_tokenizers=False, model_cls=XModalLM)
    pixels01 = torch.rand(2, 3, 16, 16)
    text = torch.randint(1, 50, (2, 5))
    mask = torch.ones_like(text)
    with torch.no_grad():
        ours = model.encode("image", pixels01, text, mask)  # [2, Q, d_llm]
        enc = model.encoders["image"]
        pixels = (pixels01 - enc.mean) / enc.std
        vis = ref.vision_model(pixel_values=pixels).last_hidden_state
        q = ref.query_tokens.expand(2, -1, -1)
        qmask = torch.cat([torch.ones(2, 4, dtype=torch.long), mask], 1)
        out = ref.qformer(input_ids=text, attention_mask=qmask, query_embeds=q, encoder_hidden_states=vis,
                          encoder_attention_mask=torch.ones(vis.shape[:2], dtype=torch.long))
        theirs = ref.language_projection(out.last_hidden_state[:, :4])
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_mismatching_checkpoint_is_a_clear_error(reference):
    ref, _ = reference
    state = dict(ref.state_dict())
    state["language_projection.weight"] = torch.zeros(3, 3)
    model = build_empty(tiny_config(), "tiny", "float32", model_cls=XModalLM)
    with pytest.raises(CheckpointError, match=r"connectors.base.proj.weight: file \[3, 3\]"):
        load_instructblip_weights(model, iter([("shard-1", state)]))
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("qformer.encoder.layer.1.")}
    model = build_empty(tiny_config(), "tiny", "float32", model_cls=XModalLM)
    with pytest.raises(CheckpointError, match=r"unfilled .*connectors.base.qformer.encoder.layer.1"):
        load_instructblip_weights(model, iter([("shard-1", state)]))


def test_a_run_on_an_instructblip_base_saves_and_reloads(reference, tmp_path):
    """`model.base: instructblip:<dir>` builds the base from the checkpoint; a grown model saved on it
    reloads with the base re-read from the checkpoint and only modweave's own tensors from the stage files."""
    from modweave.config import ModelConfig
    from modweave.model import XModalLM
    from modweave.tokenizer import build_word_tokenizer

    _, path = reference
    tok = build_word_tokenizer(["question : what digit is shown ? answer : seven video :"])
    tok.save_pretrained(str(path))
    tok.save_pretrained(str(path / "qformer_tokenizer"))
    cfg = ModelConfig(base=f"instructblip:{path}")
    cfg.llm.dtype = "float32"
    model = XModalLM.build(cfg)
    ck = tmp_path / "ck"
    model.end_stage(ck)
    model.add_modality("video", method="ana", encoder="image", cue=" video: ")
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.05)
    model.end_stage(ck)
    model.eval()
    g = torch.Generator().manual_seed(0)
    items = [{"id": "a", "modality": "video", "media": torch.rand(2, 3, 16, 16, generator=g),
              "prompt": "what digit is shown ?", "answer": "seven"},
             {"id": "b", "modality": "image", "media": torch.rand(3, 16, 16, generator=g),
              "prompt": "what digit is shown ?", "answer": "seven"}]
    expected = model(model.collator()(items)).logits
    loaded = XModalLM.from_pretrained(ck)
    assert loaded.config.base == f"instructblip:{path}"
    assert torch.equal(loaded(loaded.collator()(items)).logits, expected)
    from safetensors import safe_open

    with safe_open(str(ck / "stage-01-video.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    # the video step's own tensors only: its path and its adapters inside the (hub-loaded) Q-Former
    assert keys and all(k.startswith("paths.video.") or ".ana.video." in k for k in keys)


def test_base_on_the_meta_device_reads_no_weight(reference, tmp_path):
    """The trainer's preflight and `modweave params` build `model.base` on meta: the architecture from
    the checkpoint's config (no shard, no tokenizer read), the same parameters as the real build."""
    import shutil

    from modweave.config import ModelConfig
    from modweave.model import XModalLM

    ref, path = reference
    bare = tmp_path / "config-only"
    bare.mkdir()
    shutil.copy(path / "config.json", bare / "config.json")  # no weights, no tokenizer
    cfg = ModelConfig(base=f"instructblip:{bare}")
    cfg.llm.dtype = "float32"
    meta = XModalLM.build(cfg, device="meta")
    assert all(t.is_meta for t in meta.state_dict().values())
    real = build_instructblip(str(path), dtype="float32", load_tokenizers=False, model_cls=XModalLM)
    assert {n: p.shape for n, p in meta.named_parameters()} == {n: p.shape for n, p in real.named_parameters()}
    meta.add_modality("video", method="ana", encoder="image", cue=" video: ")  # grows like the real one
    assert any(p.requires_grad for p in meta.parameters())
