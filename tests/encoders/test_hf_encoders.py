"""transformers encoders behind the modweave protocol, loaded with from_pretrained from tiny local
checkpoints written in the test (no download)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (ASTConfig, ASTModel, CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig,
                          SiglipVisionModel, WhisperConfig, WhisperModel)

from modweave.checkpoint import _external
from modweave.config import EncoderConfig, ModalitySpec, ModelConfig, TokenizerConfig
from modweave.encoders import build_encoder, list_encoders
from modweave.model import XModalLM

VISION = {
    "clip": (CLIPVisionConfig, CLIPVisionModel, (0.48145466, 0.4578275, 0.40821073)),
    "siglip": (SiglipVisionConfig, SiglipVisionModel, (0.5, 0.5, 0.5)),
}


def save_tiny(tmp_path, cfg_cls, model_cls, **kw):
    torch.manual_seed(0)
    model = model_cls(cfg_cls(**kw)).eval()
    model.save_pretrained(str(tmp_path))
    return model


def test_real_kinds_are_registered():
    assert {"hf-vision", "hf-whisper", "hf-ast", "beats", "pointbert"} <= set(list_encoders())


@pytest.mark.parametrize("family", sorted(VISION))
@pytest.mark.parametrize("select_layer,drop_cls", [(-1, False), (-2, True)])
def test_hf_vision_normalises_resizes_and_selects(tmp_path, family, select_layer, drop_cls):
    cfg_cls, model_cls, mean = VISION[family]
    ref = save_tiny(tmp_path, cfg_cls, model_cls, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, image_size=16, patch_size=8)
    enc = build_encoder(EncoderConfig(kind="hf-vision", name_or_path=str(tmp_path),
                                      options={"select_layer": select_layer, "drop_cls": drop_cls}))
    assert enc.output_width == 16 and enc.frame_dims == 3 and enc.modweave_external
    x = torch.rand(2, 3, 16, 16)
    out = enc(x)
    std = enc.std.view(3)
    assert torch.allclose(enc.mean.view(3), torch.tensor(mean))
    with torch.no_grad():
        r = ref(pixel_values=(x - enc.mean) / enc.std, output_hidden_states=True)
    expected = r.last_hidden_state if select_layer == -1 else r.hidden_states[select_layer]
    has_cls = family == "clip"  # SigLIP has no CLS token; drop_cls still drops the first token
    assert torch.equal(out, expected[:, 1:] if drop_cls else expected)
    assert out.shape[1] == 4 + has_cls - drop_cls
    assert enc(torch.rand(1, 3, 40, 24)).shape == out[:1].shape  # other sizes are resized
    assert std.numel() == 3


def test_whisper_encoder_adapts_loader_features(tmp_path):
    ref = save_tiny(tmp_path, WhisperConfig, WhisperModel, d_model=16, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                    num_mel_bins=8, max_source_positions=20, vocab_size=60,
                    pad_token_id=1, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    enc = build_encoder(EncoderConfig(kind="hf-whisper", name_or_path=str(tmp_path)))
    assert enc.frames == 40 and enc.output_width == 16
    x = torch.randn(2, 25, 8) - 5  # natural-log mels, 25 frames
    out = enc(x)
    assert out.shape == (2, 13, 16)  # ceil(25 / 2) tokens cover the real frames
    with pytest.raises(ValueError, match=r"\[N, T, 8\]"):
        enc(torch.randn(2, 25, 80))
    del ref


def test_ast_encoder_pads_and_drops_cls(tmp_path):
    save_tiny(tmp_path, ASTConfig, ASTModel, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=32, num_mel_bins=16, max_length=32, patch_size=8, frequency_stride=8, time_stride=8)
    enc = build_encoder(EncoderConfig(kind="hf-ast", name_or_path=str(tmp_path), options={"drop_cls": True}))
    out = enc(torch.randn(3, 20, 16))  # shorter than max_length: padded
    assert out.shape == (3, (32 // 8) * (16 // 8), 16)


def test_config_json_builds_random_architecture_not_marked_external(tmp_path):
    cfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8).to_dict()
    (tmp_path / "clip.json").write_text(json.dumps(cfg))
    spec = ModalitySpec(name="image", encoder=EncoderConfig(kind="hf-vision", name_or_path=str(tmp_path / "clip.json")))
    model = XModalLM.build(ModelConfig(tokenizer=TokenizerConfig(corpus=["a b"]), base_modalities=[spec]))
    assert not any(k.startswith("encoders.image") for k in _external(model))


def test_hub_loaded_encoder_is_external_in_model(tmp_path):
    save_tiny(tmp_path, CLIPVisionConfig, CLIPVisionModel, hidden_size=16, intermediate_size=32,
              num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8)
    spec = ModalitySpec(name="image", encoder=EncoderConfig(kind="hf-vision", name_or_path=str(tmp_path)))
    model = XModalLM.build(ModelConfig(tokenizer=TokenizerConfig(corpus=["a b"]), base_modalities=[spec]))
    ext = _external(model)
    enc_keys = {k for k in model.state_dict() if k.startswith("encoders.image.")}
    assert enc_keys and enc_keys <= ext
    assert model.encode("image", torch.rand(2, 3, 16, 16)).shape[0] == 2
