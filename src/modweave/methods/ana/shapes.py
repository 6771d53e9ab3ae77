"""Architecture stand-ins for paper-scale presets, registered as encoder kinds.

`eva-vit-g-shape`: an EVA-CLIP ViT-g/14-shaped vision tower (1408 wide, 39 layers, 16 heads, FFN 6144,
patch 14, 224 px -> 257 tokens) from transformers' `InstructBlipVisionModel`, randomly initialised.
It exists so that `modweave params` can count the InstructBLIP preset on the meta device (where it
costs nothing); it is not the pretrained encoder and loads no weights.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import InstructBlipVisionConfig, InstructBlipVisionModel

from ...config import EncoderConfig
from ...encoders import register_encoder
from ...utils import seeded

EVA_VIT_G = dict(hidden_size=1408, num_hidden_layers=39, num_attention_heads=16, intermediate_size=6144,
                 patch_size=14, image_size=224, layer_norm_eps=1e-6, qkv_bias=True)


class VisionTowerEncoder(nn.Module):
    """`[N, 3, H, W]` pixels in [0, 1] -> `[N, 1 + (H/14)*(W/14), 1408]` tokens (CLS first)."""

    frame_dims = 3

    def __init__(self, config: InstructBlipVisionConfig):
        super().__init__()
        self.vision = InstructBlipVisionModel(config)
        self.output_width = config.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vision(pixel_values=x * 2 - 1).last_hidden_state


@register_encoder("eva-vit-g-shape")
def _eva_vit_g_shape(cfg: EncoderConfig) -> nn.Module:
    fields = {**EVA_VIT_G, **cfg.options}
    if cfg.width:
        fields["hidden_size"] = cfg.width
    with seeded(cfg.seed):
        return VisionTowerEncoder(InstructBlipVisionConfig(**fields))
