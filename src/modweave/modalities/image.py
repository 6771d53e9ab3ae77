"""Image: PNG / JPEG (anything Pillow reads) -> ``[3, H, W]`` float32 in [0, 1]."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .base import DEFAULT_MAX_PIXELS, MediaError, Modality, ModalitySettings, register_modality

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclasses.dataclass
class ImageSettings(ModalitySettings):
    size: int = 224  # square side the encoder expects (EVA-CLIP / ViT-g: 224)
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused before decoding


def _pixels(n: int) -> str:
    return f"{n / 1e6:.1f} Mpx" if n >= 100_000 else f"{n} px"


def too_many_pixels(width: int, height: int, max_pixels: int) -> str | None:
    """The refusal reason when ``width x height`` exceeds ``max_pixels`` (None when it fits)."""
    if width * height <= max_pixels:
        return None
    return f"{width}x{height} = {_pixels(width * height)} exceeds the limit of {_pixels(max_pixels)} (loader setting max_pixels)"


@contextlib.contextmanager
def decoded_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "image") -> Iterator:
    """``with decoded_image(path) as img:`` a fully decoded Pillow image, its file closed on exit.

    More than ``max_pixels`` is refused from the header, before decoding; MediaError (one line) when
    the file is unreadable, truncated or too large.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # our own limit applies below; Pillow's warning (89 Mpx) would only repeat it on stderr
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only
    except Image.DecompressionBombError as err:  # beyond Pillow's own hard limit (179 Mpx): no size to show
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = _pixels(int(found.group(1))) if found else "its size"
        raise MediaError(path, f"{what} too large: {size} exceeds the limit of {_pixels(max_pixels)} (loader setting "
                               "max_pixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MediaError(path, f"cannot decode {what} ({err})") from None
    with img:
        reason = too_many_pixels(*img.size, max_pixels)
        if reason is not None:
            raise MediaError(path, f"{what} too large: {reason}")
        try:
            img.load()  # force decoding now so a truncated file fails here, not later
        except (OSError, SyntaxError, ValueError) as err:
            raise MediaError(path, f"cannot decode {what} ({err})") from None
        yield img


def open_rgb(path: Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Open ``path`` with Pillow as RGB resized to ``size`` x ``size`` (bicubic); MediaError if unreadable."""
    from PIL import Image

    with decoded_image(path, max_pixels) as img:
        try:
            img = img.convert("RGB")
        except (OSError, ValueError) as err:
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
    max_frames = 1

    def _load(self, path: Path, settings: ImageSettings) -> torch.Tensor:
        path = self.check_path(path)
        return rgb_to_tensor(open_rgb(path, settings.size, settings.max_pixels))
