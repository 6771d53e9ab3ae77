"""`clip-vision-arch`: a CLIP vision tower built from an architecture (transformers `CLIPVisionConfig`),
last hidden layer with the CLS token dropped: `[N, 3, S, S]` -> `[N, (S/patch)^2, width]`.

MoExtend's reference encoder is CLIP ViT-L/14-336 (width 1024, 24 layers, 16 heads, FFN 4096, patch 14,
336 px -> 576 tokens). Built on the meta device it costs nothing (parameter counts); built elsewhere its
weights are random and seeded. Loading real pretrained weights is the HF encoders' job (`encoders/hf.py`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from ...config import EncoderConfig
from ...encoders import register_encoder
from ...utils import seeded

VIT_L14_336 = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                   patch_size=14, image_size=336)


class CLIPLastLayerEncoder(nn.Module):
    """CLIP vision tower; output: the last hidden layer without CLS (LLaVA / MoExtend convention)."""

    frame_dims = 3

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.model = CLIPVisionModel(config)
        self.output_width = config.hidden_size

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[-1][:, 1:]


@register_encoder("clip-vision-arch")
def build_clip_vision_arch(cfg: EncoderConfig) -> nn.Module:
    """Options override the ViT-L/14-336 defaults (e.g. `{hidden_size: 32, num_hidden_layers: 1}` in tests)."""
    arch = {**VIT_L14_336, **cfg.options}
    config = CLIPVisionConfig(**arch)
    if torch.empty(0).device.type == "meta":
        return CLIPLastLayerEncoder(config)
    with seeded(cfg.seed):
        return CLIPLastLayerEncoder(config)
