"""Real frozen encoders from transformers checkpoints (hub id or local directory), plus BEATs and
PointBERT implemented in this package.

Kinds registered here:
- `hf-vision`: CLIP / SigLIP / any transformers vision tower. `[N, 3, H, W]` in [0, 1] -> resized to
  the model's size, normalised with its image mean/std -> `[N, T, width]` (`select_layer`, `drop_cls`).
- `hf-whisper`: the Whisper encoder on the loaders' natural-log mel features `[N, T, n_mels]`.
- `hf-ast`: the Audio Spectrogram Transformer on the same features.
- `beats`, `pointbert`: see beats.py / pointbert.py.

`name_or_path` ending in `.json` builds the architecture from that config with random weights (tests,
parameter counts); anything else goes through `from_pretrained`, which honours `HF_HUB_OFFLINE`.
Every module loaded from a hub is marked `_modweave_external` so checkpoints do not copy it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from ..config import EncoderConfig
from ..llm import torch_dtype
from ..utils import seeded
from . import register_encoder

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)  # SigLIP normalises [0, 1] to [-1, 1]
AST_MEAN, AST_STD = -4.2677393, 4.5689974  # AudioSet fbank statistics AST was trained with
LN10 = math.log(10.0)


def _vision_config(config: PretrainedConfig) -> PretrainedConfig:
    """The vision tower's config inside a two-tower (CLIP/SigLIP) or vision-language config."""
    return getattr(config, "vision_config", None) or config


def load_hf_module(cfg: EncoderConfig, model_cls_for: dict[str, type] | None = None) -> PreTrainedModel:
    """Load (hub id / directory) or build (config `.json`, random) the model `cfg` names, frozen.

    `model_cls_for` maps a config's `model_type` to the class to instantiate (e.g. the vision tower
    of a two-tower checkpoint); otherwise `AutoModel`."""
    from transformers import AutoModel

    if not cfg.name_or_path:
        raise ValueError(f"encoder kind '{cfg.kind}' needs encoder.name_or_path (a hub id, a directory or a config.json)")
    dtype = torch_dtype(cfg.options.get("dtype", "float32"))
    path = Path(cfg.name_or_path)
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text())
        config = AutoConfig.for_model(data.pop("model_type"), **data)
        cls = (model_cls_for or {}).get(config.model_type)
        with seeded(cfg.seed):
            return cls(config).to(dtype) if cls else AutoModel.from_config(config, dtype=dtype)
    config = AutoConfig.from_pretrained(cfg.name_or_path)
    cls = (model_cls_for or {}).get(config.model_type)
    model = (cls or AutoModel).from_pretrained(cfg.name_or_path, dtype=dtype)
    model._modweave_external = True  # weights come from the hub, not from modweave checkpoints
    return model


def _preprocessor_json(name_or_path: str) -> dict[str, Any]:
    """The checkpoint's `preprocessor_config.json` (empty when there is none)."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        return {}
    try:
        from transformers.utils import cached_file

        found = cached_file(name_or_path, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        found = None
    return json.loads(Path(found).read_text()) if found else {}


class HFVisionEncoder(nn.Module):
    """A transformers vision tower as a modweave encoder: `[N, 3, H, W]` in [0, 1] -> `[N, T, width]`.

    `select_layer=-1` is the model's own `last_hidden_state` (after CLIP's encoder, after BLIP's
    post-LayerNorm); other values index `hidden_states` (-2: LLaVA's penultimate layer)."""

    frame_dims = 3

    def __init__(self, model: nn.Module, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 select_layer: int = -1, drop_cls: bool = False):
        super().__init__()
        self.model = model
        self.image_size = image_size
        self.select_layer = select_layer
        self.drop_cls = drop_cls
        self.output_width = _vision_config(model.config).hidden_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"vision encoder expects [N, 3, H, W] in [0, 1], got {list(x.shape)}")
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x.float(), size=(self.image_size, self.image_size), mode="bicubic",
                              align_corners=False, antialias=True).clamp(0, 1)
        x = (x - self.mean) / self.std
        dtype = next(self.model.parameters()).dtype
        hidden = self.select_layer != -1
        out = self.model(pixel_values=x.to(dtype), output_hidden_states=hidden)
        h = out.hidden_states[self.select_layer] if hidden else out.last_hidden_state
        return h[:, 1:] if self.drop_cls else h


def _vision_classes() -> dict[str, type]:
    from transformers import CLIPVisionModel, InstructBlipVisionModel, SiglipVisionModel

    return {"clip": CLIPVisionModel, "clip_vision_model": CLIPVisionModel,
            "siglip": SiglipVisionModel, "siglip_vision_model": SiglipVisionModel,
            "instructblip_vision_model": InstructBlipVisionModel}  # EVA ViT-g of InstructBLIP


@register_encoder("hf-vision")
def build_hf_vision(cfg: EncoderConfig) -> HFVisionEncoder:
    """Options: `select_layer` (-1), `drop_cls` (False), `image_size`, `image_mean`, `image_std`
    (default: the checkpoint's preprocessor config, else CLIP's; SigLIP's 0.5/0.5), `dtype`."""
    o = cfg.options
    model = load_hf_module(cfg, _vision_classes())
    vcfg = _vision_config(model.config)
    pre = _preprocessor_json(cfg.name_or_path)
    siglip = "siglip" in vcfg.model_type
    size = o.get("image_size") or vcfg.image_size
    mean = tuple(o.get("image_mean") or pre.get("image_mean") or (HALF if siglip else CLIP_MEAN))
    std = tuple(o.get("image_std") or pre.get("image_std") or (HALF if siglip else CLIP_STD))
    enc = HFVisionEncoder(model, size, mean, std, o.get("select_layer", -1), o.get("drop_cls", False))
    enc._modweave_external = getattr(model, "_modweave_external", False)
    return enc


class WhisperAudioEncoder(nn.Module):
    """The Whisper encoder on the loaders' log-mel `[N, T, n_mels]` (natural log of mel power).

    Whisper wants log10 mels, clamped to 8 below the maximum, scaled `(x + 4) / 4`, and exactly
    `2 * max_source_positions` frames (3000 = 30 s): the chunk is converted, padded with the floor and
    the output trimmed to the `ceil(T / 2)` tokens that cover real frames. The loader's HTK filterbank
    differs slightly from Whisper's Slaney one; set the loader's `n_mels` to the model's (80 or 128)."""

    frame_dims = 2

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.n_mels = encoder.config.num_mel_bins
        self.frames = 2 * encoder.config.max_source_positions
        self.output_width = encoder.config.d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"Whisper encoder expects [N, T, {self.n_mels}] log-mels, got {list(x.shape)}")
        t = min(x.shape[1], self.frames)
        logmel = x[:, :t].float() / LN10
        logmel = torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - 8.0)
        floor = logmel.amin(dim=(1, 2), keepdim=True)
        feats = torch.cat([logmel, floor.expand(-1, self.frames - t, self.n_mels)], dim=1)
        feats = (feats + 4.0) / 4.0
        dtype = next(self.encoder.parameters()).dtype
        out = self.encoder(input_features=feats.transpose(1, 2).to(dtype)).last_hidden_state
        return out[:, : math.ceil(t / 2)]


@register_encoder("hf-whisper")
def build_hf_whisper(cfg: EncoderConfig) -> WhisperAudioEncoder:
    """A Whisper checkpoint (full model or encoder config); only its encoder is kept."""
    from transformers import WhisperModel

    model = load_hf_module(cfg, {"whisper": WhisperModel})
    enc = WhisperAudioEncoder(model.get_encoder() if hasattr(model, "get_encoder") else model)
    enc._modweave_external = getattr(model, "_modweave_external", False)
    return enc


class ASTAudioEncoder(nn.Module):
    """Audio Spectrogram Transformer on `[N, T, 128]` Kaldi fbank (what the loaders give).

    AST normalises with AudioSet statistics `(x - mean) / (2 * std)` and takes exactly `max_length`
    frames: shorter chunks are padded with zeros after normalising (its own feature extractor's
    padding). Output: `[N, 2 + patches, width]` (CLS + distillation token first; `drop_cls` drops both)."""

    frame_dims = 2

    def __init__(self, model: nn.Module, drop_cls: bool = False):
        super().__init__()
        self.model = model
        self.n_mels = model.config.num_mel_bins
        self.frames = model.config.max_length
        self.drop_cls = drop_cls
        self.output_width = model.config.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"AST expects [N, T, {self.n_mels}] fbank, got {list(x.shape)}")
        feats = (x[:, : self.frames].float() - AST_MEAN) / (2 * AST_STD)
        feats = F.pad(feats, (0, 0, 0, self.frames - feats.shape[1]))
        dtype = next(self.model.parameters()).dtype
        h = self.model(input_values=feats.to(dtype)).last_hidden_state
        return h[:, 2:] if self.drop_cls else h


@register_encoder("hf-ast")
def build_hf_ast(cfg: EncoderConfig) -> ASTAudioEncoder:
    model = load_hf_module(cfg)
    enc = ASTAudioEncoder(model, cfg.options.get("drop_cls", False))
    enc._modweave_external = getattr(model, "_modweave_external", False)
    return enc


from . import beats as _beats  # noqa: E402,F401  (registers `beats`)
from . import pointbert as _pointbert  # noqa: E402,F401  (registers `pointbert`)
