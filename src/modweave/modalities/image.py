"""Image: PNG / JPEG (anything Pillow reads) -> ``[3, H, W]`` float32 in [0, 1]."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from .base import MediaError, Modality, ModalitySettings, register_modality

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclasses.dataclass
class ImageSettings(ModalitySettings):
    size: int = 224  # square side the encoder expects (EVA-CLIP / ViT-g: 224)


def open_rgb(path: Path, size: int):
    """Open ``path`` with Pillow as RGB resized to ``size`` x ``size`` (bicubic); MediaError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # force decoding now so a truncated file fails here, not later
            img = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MediaError(path, f"cannot decode image ({err})") from None
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return img


def rgb_to_tensor(img) -> torch.Tensor:
    """Pillow RGB image or ``[H, W, 3]`` uint8 array -> ``[3, H, W]`` float32 in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


@register_modality("image")
class ImageModality(Modality):
    """Returns ``[3, size, size]``; grayscale / palette / RGBA are converted to RGB (alpha dropped)."""

    extensions = IMAGE_EXTENSIONS
    settings_cls = ImageSettings

    def _load(self, path: Path, settings: ImageSettings) -> torch.Tensor:
        path = self.check_path(path)
        return rgb_to_tensor(open_rgb(path, settings.size))
