"""Video: MP4 / other containers / animated GIF via PyAV, or a folder of frame images -> ``[F, 3, H, W]`` in [0, 1]."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from .base import DEFAULT_MAX_PIXELS, MediaError, Modality, ModalitySettings, register_modality
from .image import IMAGE_EXTENSIONS, open_rgb, rgb_to_tensor, too_many_pixels

# .gif: an animated GIF is a clip too (PyAV decodes it like any container)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


@dataclasses.dataclass
class VideoSettings(ModalitySettings):
    num_frames: int = 5  # frames sampled uniformly over the clip (PathWeave's video setting)
    size: int = 224
    max_pixels: int = DEFAULT_MAX_PIXELS  # per frame: larger frames are refused before decoding


def uniform_indices(n_total: int, n_out: int) -> np.ndarray:
    """Centres of ``n_out`` equal segments of ``[0, n_total)``; repeats frames when the clip is shorter."""
    if n_total <= 0:
        raise ValueError("no frames")
    return np.minimum(((np.arange(n_out) + 0.5) * n_total / n_out).astype(np.int64), n_total - 1)


def _frames_from_dir(path: Path, settings: VideoSettings) -> list:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise MediaError(path, "frame folder holds no images")
    return [open_rgb(files[i], settings.size, settings.max_pixels) for i in uniform_indices(len(files), settings.num_frames)]


def _frames_from_container(path: Path, settings: VideoSettings) -> list:
    import av

    # When the header knows the frame count, keep only the sampled frames (a paper-scale clip would
    # not fit in memory whole); headers may be missing or wrong, so fall back to decoding everything.
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(path, "no video stream")
            stream = container.streams.video[0]
            reason = too_many_pixels(stream.codec_context.width, stream.codec_context.height, settings.max_pixels)
            if reason is not None:
                raise MediaError(path, f"video frames too large: {reason}")
            n = stream.frames
            want = set(uniform_indices(n, settings.num_frames).tolist()) if n > 0 else None
            kept: dict[int, np.ndarray] = {}
            count = 0
            for count, frame in enumerate(container.decode(video=0), 1):
                if want is None or count - 1 in want:
                    kept[count - 1] = frame.to_ndarray(format="rgb24")
                if want is not None and count - 1 >= max(want):
                    break
        if want is not None and not want <= set(kept):
            return _frames_from_container_all(path, settings)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise MediaError(path, f"cannot decode video ({err})") from None
    if not kept:
        raise MediaError(path, "video has no decodable frames")
    if want is None:  # count unknown: every frame was kept
        return _resize_frames([kept[i] for i in uniform_indices(count, settings.num_frames)], settings)
    return _resize_frames([kept[i] for i in uniform_indices(n, settings.num_frames)], settings)


def _frames_from_container_all(path: Path, settings: VideoSettings) -> list:
    """Decode every frame (the header's frame count was wrong), then sample."""
    import av

    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, OSError, ValueError) as err:
        raise MediaError(path, f"cannot decode video ({err})") from None
    if not frames:
        raise MediaError(path, "video has no decodable frames")
    return _resize_frames([frames[i] for i in uniform_indices(len(frames), settings.num_frames)], settings)


def _resize_frames(frames: list[np.ndarray], settings: VideoSettings) -> list:
    from PIL import Image

    out = []
    for f in frames:
        img = Image.fromarray(f)
        if img.size != (settings.size, settings.size):
            img = img.resize((settings.size, settings.size), Image.Resampling.BICUBIC)
        out.append(img)
    return out


@register_modality("video")
class VideoModality(Modality):
    """Returns ``[num_frames, 3, size, size]``, frames sampled uniformly (a 1-frame clip repeats it)."""

    extensions = VIDEO_EXTENSIONS
    settings_cls = VideoSettings
    accepts_dirs = True
    frames_setting = "num_frames"

    def _load(self, path: Path, settings: VideoSettings) -> torch.Tensor:
        path = self.check_path(path)
        frames = _frames_from_dir(path, settings) if path.is_dir() else _frames_from_container(path, settings)
        return torch.stack([rgb_to_tensor(f) for f in frames])
