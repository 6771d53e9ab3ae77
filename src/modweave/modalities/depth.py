"""Depth: 16-bit PNG (or ``.npy``) depth map, optionally paired with its RGB -> ``[F, 3, H, W]`` in [0, 1].

F = 1 for depth alone, F = 2 (``[rgb, depth]``) when the record's media is ``{"depth": ..., "rgb": ...}``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .base import DEFAULT_MAX_PIXELS, MediaError, MediaPath, Modality, ModalitySettings, register_modality
from .image import decoded_image, open_rgb, rgb_to_tensor, too_many_pixels

DEPTH_EXTENSIONS = (".png", ".npy")
SCALE_KEY = "depth_scale"  # PNG text chunk: metres per stored unit (absent -> millimetres)
DEFAULT_SCALE = 0.001


@dataclasses.dataclass
class DepthSettings(ModalitySettings):
    size: int = 224
    # "max": divide by the image's largest depth, which keeps ratios between surfaces (what near/far
    # needs); "minmax": stretch each map to the full [0, 1] range.
    normalize: str = "max"
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger depth maps (and paired RGB images) are refused before decoding


def read_depth(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Depth map in metres ``[H, W]`` float32 from a 16-bit PNG (scale from its metadata) or ``.npy``."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)  # header first: shape and dtype
        except (ValueError, OSError, EOFError) as err:
            raise MediaError(path, f"cannot read depth array ({err})") from None
        if arr.dtype.kind not in "iuf":  # strings, bools, complex, records: not depths
            raise MediaError(path, f"depth array must be numeric (int or float), got dtype {arr.dtype}")
        shape = [d for d in arr.shape if d != 1]
        if len(shape) != 2:
            raise MediaError(path, f"depth array must be 2-D, got shape {tuple(arr.shape)}")
        reason = too_many_pixels(shape[1], shape[0], max_pixels)
        if reason is not None:
            raise MediaError(path, f"depth array too large: {reason}")
        return np.array(arr, dtype=np.float32).reshape(shape)
    with decoded_image(path, max_pixels, "depth image") as img:
        if img.mode not in ("I;16", "I;16B", "I", "F", "L"):
            raise MediaError(path, f"expected a single-channel depth PNG, got mode {img.mode}")
        text = dict(getattr(img, "text", {}) or {})
        arr = np.asarray(img, dtype=np.float32)
    try:
        scale = float(text.get(SCALE_KEY, DEFAULT_SCALE))
    except ValueError:
        raise MediaError(path, f"bad {SCALE_KEY} metadata {text[SCALE_KEY]!r}") from None
    return arr * scale


def normalize_depth(depth: np.ndarray, mode: str) -> np.ndarray:
    """Per-image normalisation to [0, 1]; invalid (non-finite, negative) pixels become 0."""
    d = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    if mode == "max":
        top = d.max()
        return d / top if top > 0 else d
    if mode == "minmax":
        valid = d > 0
        if not valid.any():
            return d
        lo, hi = d[valid].min(), d[valid].max()
        return np.where(valid, (d - lo) / (hi - lo) if hi > lo else 1.0, 0.0).astype(np.float32)
    raise ValueError(f"unknown depth normalize mode {mode!r} (known: max, minmax)")


def depth_to_tensor(depth01: np.ndarray, size: int) -> torch.Tensor:
    """``[H, W]`` in [0, 1] -> ``[3, size, size]`` (bilinear on float, replicated to 3 channels)."""
    from PIL import Image

    img = Image.fromarray(depth01.astype(np.float32), mode="F")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    t = torch.from_numpy(np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0))
    return t.unsqueeze(0).expand(3, -1, -1).contiguous()


@register_modality("depth")
class DepthModality(Modality):
    """Returns ``[1, 3, size, size]`` (depth) or ``[2, 3, size, size]`` (``[rgb, depth]``)."""

    extensions = DEPTH_EXTENSIONS
    settings_cls = DepthSettings
    media_keys = ("depth", "rgb")
    max_frames = 2

    def _load(self, path: MediaPath, settings: DepthSettings) -> torch.Tensor:
        rgb_path = None
        if isinstance(path, Mapping):
            if "depth" not in path:
                raise MediaError(path, "depth media dict needs a 'depth' entry")
            rgb_path, path = path.get("rgb"), path["depth"]
        path = self.check_path(Path(path))
        depth = depth_to_tensor(normalize_depth(read_depth(path, settings.max_pixels), settings.normalize), settings.size)
        if rgb_path is None:
            return depth.unsqueeze(0)
        from .image import IMAGE_EXTENSIONS

        rgb_path = Path(rgb_path)
        if not rgb_path.exists():
            raise MediaError(rgb_path, "file not found")
        if rgb_path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise MediaError(rgb_path, f"wrong extension {rgb_path.suffix!r} for the paired RGB image")
        return torch.stack([rgb_to_tensor(open_rgb(rgb_path, settings.size, settings.max_pixels)), depth])
