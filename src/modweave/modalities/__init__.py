"""Input modalities: one module each, registered by name.

``get_modality("audio").load(path, settings) -> torch.Tensor`` (float32). Tensor contracts:

- ``text``: no media (``has_media = False``).
- ``image``: ``[3, H, W]`` in [0, 1].
- ``video``: ``[F, 3, H, W]`` in [0, 1], F = ``num_frames`` sampled uniformly (MP4 ..., animated GIF, frame folder).
- ``audio``: ``[C, T, n_mels]`` log-mel, C = ``num_chunks``, T = ``chunk_frames``.
- ``depth``: ``[F, 3, H, W]`` in [0, 1], F = 1 (depth) or 2 (``[rgb, depth]``).
- ``point_cloud``: ``[N, 3]`` centred, inside the unit sphere (meshes sampled over their surface).

Images, depth maps and video frames over ``max_pixels`` (default ``DEFAULT_MAX_PIXELS``, 50 Mpx) are
refused from their header, before decoding. ``loader_settings_for(spec)`` turns a path spec into loader
settings (its ``num_frames`` takes effect or is an error).
"""

from .base import (
    DEFAULT_MAX_PIXELS,
    MediaError,
    Modality,
    ModalitySettings,
    SettingsError,
    get_modality,
    list_modalities,
    loader_settings_for,
    register_modality,
)

# Importing a module registers it; text first so the base modality comes first in list_modalities().
from . import text, image, video, audio, depth, point_cloud  # noqa: E402,F401  isort: skip

__all__ = ["DEFAULT_MAX_PIXELS", "MediaError", "Modality", "ModalitySettings", "SettingsError", "get_modality",
           "list_modalities", "loader_settings_for", "register_modality"]
