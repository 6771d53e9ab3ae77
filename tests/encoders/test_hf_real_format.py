"""Real-format checkpoints (written by `save_pretrained`, see realformat.py) through the builders users hit:
architecture-only on the meta device (no weight read), weights equal to the saved ones on a real device,
the checkpoints' own preprocessors as encoder input, and custom code refused everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from encoders import realformat as rf  # tests/ is on pythonpath (pyproject)
from modweave.config import EncoderConfig, LLMConfig, ModalitySpec, ModelConfig, TokenizerConfig
from modweave.encoders import build_encoder
from modweave.llm import build_llm
from modweave.model import XModalLM

ENCODERS = ["clip", "siglip", "whisper", "ast"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Every writer's checkpoint once per module: name -> (folder, reference model)."""
    root = tmp_path_factory.mktemp("realformat")
    return {name: (root / name, write(root / name)) for name, write in rf.WRITERS.items()}


def _without_weights(folder, tmp_path):
    """A copy of `folder` without its weight files: a build that reads no weight still works on it."""
    import shutil

    out = tmp_path / (folder.name + "-noweights")
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return out


def _inner(enc):
    return getattr(enc, "model", None) or getattr(enc, "encoder")


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_builds_architecture_only_on_meta(ckpts, tmp_path, name):
    folder, ref = ckpts[name]
    bare = _without_weights(folder, tmp_path)
    with torch.device("meta"):
        enc = build_encoder(EncoderConfig(**rf.encoder_entry(name, bare)))
    params = list(enc.parameters())
    assert params and all(p.is_meta for p in params) and enc.modweave_external
    real = build_encoder(EncoderConfig(**rf.encoder_entry(name, folder)))
    assert sum(p.numel() for p in params) == sum(p.numel() for p in real.parameters())
    assert enc.output_width == real.output_width


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_loads_the_saved_weights(ckpts, name):
    folder, ref = ckpts[name]
    enc = build_encoder(EncoderConfig(**rf.encoder_entry(name, folder)))
    theirs = ref.get_encoder().state_dict() if name == "whisper" else ref.state_dict()
    ours = _inner(enc).state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert not any(p.requires_grad for p in enc.parameters())


def _model_config(ckpts, llm: str, encoder: str = "clip") -> ModelConfig:
    folder = str(ckpts[llm][0])
    return ModelConfig(
        llm=LLMConfig(kind="hf", name_or_path=folder), tokenizer=TokenizerConfig(kind="hf", name_or_path=folder),
        base_modalities=[ModalitySpec(name="image", encoder=EncoderConfig(**rf.encoder_entry(encoder, ckpts[encoder][0])),
                                      loader={"size": 16})])


@pytest.mark.parametrize("llm", ["llama", "mixtral"])
def test_model_with_real_llm_and_encoder_builds_on_meta_then_loads(ckpts, llm, monkeypatch):
    from transformers import PreTrainedModel

    cfg = _model_config(ckpts, llm)
    with monkeypatch.context() as m:  # on the meta device nothing may call from_pretrained
        m.setattr(PreTrainedModel, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("from_pretrained on meta")))
        meta = XModalLM.build(cfg, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    real = XModalLM.build(cfg)
    # the checkpoint parts (LLM, encoder) have the same architecture on meta; the connector's text
    # embedding is sized by the tokenizer, which XModalLM.build skips on meta
    parts = ("llm.", "encoders.")
    assert ({n: p.shape for n, p in meta.named_parameters() if n.startswith(parts)}
            == {n: p.shape for n, p in real.named_parameters() if n.startswith(parts)})
    ref = ckpts[llm][1].state_dict()
    ours = real.llm.state_dict()
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    out = real.encode("image", torch.rand(2, 3, 16, 16))
    assert out.shape[0] == 2 and torch.isfinite(out).all()


def test_params_counts_real_checkpoints_without_weights(ckpts, tmp_path):
    from modweave.config import RunConfig, StageConfig
    from modweave.params import stage_param_counts

    cfg = RunConfig(model=_model_config(ckpts, "llama"),
                    stages=[StageConfig(modality=ModalitySpec(
                        name="audio", encoder=EncoderConfig(**rf.encoder_entry("whisper", ckpts["whisper"][0]))),
                        method="frozen")])
    bare = _without_weights(ckpts["whisper"][0], tmp_path)  # meta counts need no weight file
    cfg.stages[0].modality.encoder.name_or_path = str(bare)
    meta = stage_param_counts(cfg)["stages"]
    cfg.stages[0].modality.encoder.name_or_path = str(ckpts["whisper"][0])
    real = stage_param_counts(cfg, device="cpu")["stages"]
    grown = meta["audio"]["total"] - meta["base"]["total"]  # the Whisper encoder and the audio path
    assert grown == real["audio"]["total"] - real["base"]["total"]
    assert grown > sum(p.numel() for p in ckpts["whisper"][1].get_encoder().parameters())
    assert meta["audio"]["trainable"] == real["audio"]["trainable"] > 0


def test_instructblip_base_on_meta_reads_no_shard(ckpts, tmp_path):
    from modweave.bases.instructblip import build_instructblip

    folder, _ = ckpts["instructblip"]
    meta = build_instructblip(str(_without_weights(folder, tmp_path)), dtype="float32", device="meta",
                              model_cls=XModalLM)
    assert all(t.is_meta for t in meta.state_dict().values())
    real = build_instructblip(str(folder), dtype="float32", model_cls=XModalLM)
    assert {n: p.shape for n, p in meta.named_parameters()} == {n: p.shape for n, p in real.named_parameters()}
    with pytest.raises(Exception):  # the real build does need the weights
        build_instructblip(str(_without_weights(folder, tmp_path / "again")), dtype="float32", model_cls=XModalLM)


def test_build_llm_detects_a_meta_device_context(ckpts, tmp_path):
    bare = _without_weights(ckpts["llama"][0], tmp_path)
    with torch.device("meta"):
        llm = build_llm(LLMConfig(kind="hf", name_or_path=str(bare)))
    assert all(p.is_meta for p in llm.parameters())


# ------------------------------------------------------------------------------------------------
# the checkpoints' own preprocessors


def _speechlike_wav(path, seconds: float = 0.8, sr: int = 22050) -> np.ndarray:
    """A WAV file of a voiced, formant-like signal with pauses (at 22.05 kHz, like espeak-ng's)."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 3 * t)
    wave = sum(np.sin(2 * np.pi * np.cumsum(f0 * k) / sr) / k for k in range(1, 12))
    wave *= (np.sin(2 * np.pi * 2.5 * t) > -0.3) * 0.3
    sf.write(str(path), wave.astype(np.float32), sr, subtype="PCM_16")
    return wave


def test_whisper_encoder_input_equals_the_feature_extractor_output(ckpts, tmp_path):
    from transformers import WhisperFeatureExtractor

    from modweave.modalities import get_modality
    from modweave.modalities.audio import read_mono

    folder, _ = ckpts["whisper"]
    wav = tmp_path / "clip.wav"
    _speechlike_wav(wav)
    x = get_modality("audio").load(wav, {"features": "whisper", "processor": str(folder)})
    assert x.shape == (1, 100, 8)  # one chunk of the extractor's whole window
    enc = build_encoder(EncoderConfig(**rf.encoder_entry("whisper", folder, features="whisper")))
    fe = WhisperFeatureExtractor.from_pretrained(str(folder))
    expected = fe(read_mono(wav, 16000), sampling_rate=16000, return_tensors="pt").input_features  # [1, 8, 100]
    assert torch.allclose(enc.input_features(x), expected, atol=1e-6)
    # a shorter chunk is the extractor's output on the chunk's samples, padded to the window with what
    # the extractor gives silence (frames 62.. hold no sample of the 60-frame chunk)
    short = get_modality("audio").load(wav, {"features": "whisper", "processor": str(folder), "chunk_frames": 60})
    assert short.shape == (1, 60, 8)
    own = fe(read_mono(wav, 16000)[: 60 * 160], sampling_rate=16000, return_tensors="pt").input_features
    assert torch.allclose(enc.input_features(short)[..., :60], own[..., :60], atol=1e-6)
    assert torch.allclose(enc.input_features(short)[..., 62:], own[..., 62:], atol=1e-6)
    assert enc(x).shape == (1, 50, 16)
    # the default kaldi features stay as they were (2 chunks of 512 frames, 128 mels)
    assert get_modality("audio").load(wav, {}).shape == (2, 512, 128)


def test_ast_encoder_input_equals_the_feature_extractor_output(ckpts, tmp_path):
    from transformers import ASTFeatureExtractor

    from modweave.modalities import get_modality
    from modweave.modalities.audio import read_mono

    folder, _ = ckpts["ast"]
    wav = tmp_path / "clip.wav"
    _speechlike_wav(wav, seconds=0.2)  # 20 frames: shorter than the model's 32, padded
    enc = build_encoder(EncoderConfig(**rf.encoder_entry("ast", folder, features="ast")))
    fe = ASTFeatureExtractor.from_pretrained(str(folder))
    expected = fe(read_mono(wav, 16000), sampling_rate=16000, return_tensors="pt").input_values  # [1, 32, 16]
    x = get_modality("audio").load(wav, {"features": "ast", "processor": str(folder)})
    assert x.shape == (1, 32, 16)
    assert torch.allclose(enc.input_values(x), expected, atol=1e-5)
    cut = get_modality("audio").load(wav, {"features": "ast", "processor": str(folder), "chunk_frames": 24})
    assert torch.allclose(enc.input_values(cut), expected, atol=1e-5)  # padding = the extractor's


@pytest.mark.parametrize("name,size", [("clip", (40, 40)), ("siglip", (40, 24))])
def test_vision_encoder_input_equals_the_image_processor_output(ckpts, tmp_path, name, size):
    from PIL import Image
    from transformers import AutoImageProcessor

    from modweave.modalities import get_modality

    folder, _ = ckpts[name]
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    img.save(tmp_path / "x.png")
    enc = build_encoder(EncoderConfig(**rf.encoder_entry(name, folder)))
    x = get_modality("image").load(tmp_path / "x.png", {"size": enc.image_size})
    proc = AutoImageProcessor.from_pretrained(str(folder), trust_remote_code=False, backend="pil")
    expected = proc(images=img, return_tensors="pt").pixel_values
    assert torch.allclose(enc.pixel_values(x[None]), expected, atol=1e-5)


def test_audio_loader_refuses_settings_that_contradict_the_extractor(ckpts, tmp_path):
    from modweave.modalities import get_modality

    wav = tmp_path / "clip.wav"
    _speechlike_wav(wav)
    folder = str(ckpts["whisper"][0])
    with pytest.raises(ValueError, match="n_mels 80 but the extractor has 8"):
        get_modality("audio").load(wav, {"features": "whisper", "processor": folder, "n_mels": 80})
    with pytest.raises(ValueError, match="at most 100"):
        get_modality("audio").load(wav, {"features": "whisper", "processor": folder, "chunk_frames": 200})
    with pytest.raises(ValueError, match="features"):
        get_modality("audio").load(wav, {"features": "mfcc"})
    with pytest.raises(ValueError, match="processor"):
        get_modality("audio").load(wav, {"processor": folder})
    with pytest.raises(ValueError, match="not a WhisperFeatureExtractor"):
        get_modality("audio").load(wav, {"features": "whisper", "processor": str(ckpts["ast"][0])})


# ------------------------------------------------------------------------------------------------
# Whisper on the clip's own length


def test_native_length_is_the_encoder_on_its_own_frames(ckpts):
    folder, ref = ckpts["whisper"]
    padded = build_encoder(EncoderConfig(**rf.encoder_entry("whisper", folder, features="whisper")))
    native = build_encoder(EncoderConfig(**rf.encoder_entry("whisper", folder, features="whisper", length="native")))
    x = torch.rand(2, 100, 8) * 2 - 1  # a full window: both paths compute the same thing
    with torch.no_grad():
        assert torch.allclose(native(x), padded(x), atol=1e-5)
        short = native(x[:, :37])  # 37 frames -> ceil(37 / 2) tokens, positions 0..18
        assert short.shape == (2, 19, 16)
        enc = ref.get_encoder()
        h = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(x[:, :37].transpose(1, 2)))))
        h = h.transpose(1, 2) + enc.embed_positions.weight[:19]
        for layer in enc.layers:
            h = layer(h, None)
        assert torch.allclose(short, enc.layer_norm(h), atol=1e-5)
        assert not torch.allclose(short, padded(x[:, :37]), atol=1e-3)  # padding changes attention
    with pytest.raises(ValueError, match="length"):
        build_encoder(EncoderConfig(**rf.encoder_entry("whisper", folder, length="30s")))


def test_kaldi_default_is_unchanged(ckpts):
    """Default options: the loader's Kaldi log-mels adapted as before (log10, clamp, floor padding)."""
    folder, ref = ckpts["whisper"]
    enc = build_encoder(EncoderConfig(**rf.encoder_entry("whisper", folder)))
    x = torch.randn(2, 25, 8) - 5
    logmel = x / np.log(10.0)
    logmel = torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - 8.0)
    floor = logmel.amin(dim=(1, 2), keepdim=True)
    feats = (torch.cat([logmel, floor.expand(-1, 75, 8)], 1) + 4.0) / 4.0
    with torch.no_grad():
        expected = ref.get_encoder()(input_features=feats.transpose(1, 2)).last_hidden_state[:, :13]
        assert torch.allclose(enc(x), expected, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# no checkpoint code runs


@pytest.mark.parametrize("target", ["llm", "llm-meta", "hf-vision", "hf-vision-meta", "hf-whisper", "processor",
                                    "instructblip"])
def test_checkpoint_with_custom_code_is_refused_and_nothing_runs(tmp_path, target):
    from modweave.bases.instructblip import build_instructblip
    from modweave.modalities import get_modality

    writer = {"llm": rf.write_llama, "llm-meta": rf.write_llama, "hf-vision": rf.write_clip_vision,
              "hf-vision-meta": rf.write_clip_vision, "hf-whisper": rf.write_whisper, "processor": rf.write_whisper,
              "instructblip": rf.write_instructblip}[target]
    folder = tmp_path / "evil"
    marker = rf.write_remote_code(folder, writer)
    wav = tmp_path / "a.wav"
    _speechlike_wav(wav)
    load = {
        "llm": lambda: build_llm(LLMConfig(kind="hf", name_or_path=str(folder))),
        "llm-meta": lambda: build_llm(LLMConfig(kind="hf", name_or_path=str(folder)), device="meta"),
        "hf-vision": lambda: build_encoder(EncoderConfig(kind="hf-vision", name_or_path=str(folder))),
        "hf-vision-meta": lambda: _on_meta(lambda: build_encoder(EncoderConfig(kind="hf-vision", name_or_path=str(folder)))),
        "hf-whisper": lambda: build_encoder(EncoderConfig(kind="hf-whisper", name_or_path=str(folder))),
        "processor": lambda: get_modality("audio").load(wav, {"features": "whisper", "processor": str(folder)}),
        "instructblip": lambda: build_instructblip(str(folder), dtype="float32", model_cls=XModalLM),
    }[target]
    with pytest.raises(ValueError) as err:
        load()
    msg = str(err.value)
    assert "\n" not in msg and "custom code" in msg and "auto_map" in msg
    assert not marker.exists()


def _on_meta(fn):
    with torch.device("meta"):
        return fn()


@pytest.mark.parametrize("name,features", [("whisper", "whisper"), ("ast", "ast")])
def test_kaldi_features_given_to_an_extractor_encoder_are_refused(ckpts, tmp_path, name, features):
    from modweave.modalities import get_modality

    folder, _ = ckpts[name]
    wav = tmp_path / "clip.wav"
    _speechlike_wav(wav)
    enc = build_encoder(EncoderConfig(**rf.encoder_entry(name, folder, features=features)))
    mels = 8 if name == "whisper" else 16
    kaldi = get_modality("audio").load(wav, {"n_mels": mels, "num_chunks": 1, "chunk_frames": 30})
    with pytest.raises(ValueError, match=f"loader to `features: {features}`"):
        enc(kaldi)
    own = get_modality("audio").load(wav, {"features": features, "processor": str(folder), "chunk_frames": 30})
    assert torch.isfinite(enc(own)).all()  # the extractor's own features pass


def test_loader_defaults_follow_the_encoder_options():
    from modweave.encoders.processors import loader_defaults

    assert loader_defaults(EncoderConfig(kind="hf-whisper", name_or_path="ct2:x", options={"features": "whisper"})) == \
        {"features": "whisper", "processor": "ct2:x"}
    assert loader_defaults({"kind": "hf-ast", "name_or_path": "d", "options": {"features": "ast"}})["features"] == "ast"
    assert loader_defaults(EncoderConfig(kind="hf-whisper", name_or_path="d")) == {}  # kaldi default
    assert loader_defaults(EncoderConfig(kind="tiny-audio")) == {}
