"""Real frozen encoders from transformers checkpoints (hub id or local directory), plus BEATs and
PointBERT implemented in this package.

Kinds registered here:
- `hf-vision`: CLIP / SigLIP / any transformers vision tower. `[N, 3, H, W]` in [0, 1] -> resized to
  the model's size, normalised with its image mean/std -> `[N, T, width]` (`select_layer`, `drop_cls`).
- `hf-whisper`, `hf-ast`: Whisper's encoder / the Audio Spectrogram Transformer (hf_audio.py).
- `beats`, `pointbert`: see beats.py / pointbert.py.

`name_or_path` ending in `.json` builds the architecture from that config with random weights (tests,
parameter counts); anything else is a checkpoint (hub id, local directory; `ct2:` for Whisper) read with
`from_pretrained(trust_remote_code=False)`, which honours `HF_HUB_OFFLINE`. On the meta device (inside
`with torch.device("meta")`, as `XModalLM.get_encoder` builds next to a meta model: the trainer's
preflight, `modweave params`) a checkpoint is built from its config alone: no weight is read.
Every module loaded from a checkpoint is marked `modweave_external` so checkpoints do not copy it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from ..config import EncoderConfig
from ..llm import torch_dtype
from ..utils import seeded
from . import register_encoder
from .options import HFVisionOptions

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)  # SigLIP normalises [0, 1] to [-1, 1]


def _vision_config(config: PretrainedConfig) -> PretrainedConfig:
    """The vision tower's config inside a two-tower (CLIP/SigLIP) or vision-language config."""
    return getattr(config, "vision_config", None) or config


def load_hf_module(cfg: EncoderConfig, model_cls_for: dict[str, type] | None = None) -> PreTrainedModel:
    """Load (hub id / directory) or build (config `.json`, random) the model `cfg` names, frozen.
    On the meta device a checkpoint is built from its config only (no weight read).

    `model_cls_for` maps a config's `model_type` to the class to instantiate (e.g. the vision tower
    of a two-tower checkpoint); otherwise `AutoModel`."""
    from transformers import AutoModel

    from ..bases.hub import from_pretrained, is_meta, pretrained_config

    if not cfg.name_or_path:
        raise ValueError(f"encoder kind '{cfg.kind}' needs encoder.name_or_path (a hub id, a directory or a config.json)")
    dtype = torch_dtype(cfg.options.get("dtype", "float32"))
    path = Path(cfg.name_or_path)
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text())
        config = AutoConfig.for_model(data.pop("model_type"), **data)
        cls = (model_cls_for or {}).get(config.model_type)
        with seeded(cfg.seed):
            return cls(config).to(dtype) if cls else AutoModel.from_config(config, dtype=dtype, trust_remote_code=False)
    config = pretrained_config(cfg.name_or_path)
    cls = (model_cls_for or {}).get(config.model_type)
    if is_meta():  # architecture only: the caller's meta device context holds every tensor
        module = cls(config).to(dtype) if cls else AutoModel.from_config(config, dtype=dtype, trust_remote_code=False)
    else:
        module = from_pretrained(cls or AutoModel, cfg.name_or_path, dtype=dtype)
    module.modweave_external = True  # weights come from the checkpoint, not from modweave checkpoints
    return module


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

    def pixel_values(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, 3, H, W]` in [0, 1] -> the tower's input `[N, 3, S, S]`: resized when the loader's size is
        not the model's, normalised with the checkpoint's mean / std (its image processor's output for an
        image the loader resized to S, as the processor resizes with Pillow's bicubic too)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"vision encoder expects [N, 3, H, W] in [0, 1], got {list(x.shape)}")
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x.float(), size=(self.image_size, self.image_size), mode="bicubic",
                              align_corners=False, antialias=True).clamp(0, 1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pixel_values(x)
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


@register_encoder("hf-vision", HFVisionOptions)
def build_hf_vision(cfg: EncoderConfig) -> HFVisionEncoder:
    """Options: `select_layer` (-1), `drop_cls` (False), `image_size`, `image_mean`, `image_std`
    (default: the checkpoint's image processor, else CLIP's; SigLIP's 0.5/0.5), `dtype`."""
    from .processors import image_stats

    o = cfg.options
    model = load_hf_module(cfg, _vision_classes())
    vcfg = _vision_config(model.config)
    pre = image_stats(cfg.name_or_path) or {}
    siglip = "siglip" in vcfg.model_type
    size = o.get("image_size") or vcfg.image_size  # the tower's own side (its position table)
    mean = tuple(o.get("image_mean") or pre.get("image_mean") or (HALF if siglip else CLIP_MEAN))
    std = tuple(o.get("image_std") or pre.get("image_std") or (HALF if siglip else CLIP_STD))
    enc = HFVisionEncoder(model, size, mean, std, o.get("select_layer", -1), o.get("drop_cls", False))
    enc.modweave_external = getattr(model, "modweave_external", False)
    return enc


from . import hf_audio as _hf_audio  # noqa: E402,F401  (registers `hf-whisper`, `hf-ast`)
from .hf_audio import ASTAudioEncoder, WhisperAudioEncoder  # noqa: E402,F401  (importable from here too)
from . import beats as _beats  # noqa: E402,F401  (registers `beats`)
from . import pointbert as _pointbert  # noqa: E402,F401  (registers `pointbert`)
