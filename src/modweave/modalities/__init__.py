"""Input modalities: one module each, registered by name.

``get_modality("audio").load(path, settings) -> torch.Tensor`` (float32). Tensor contracts:

- ``text``: no media (``has_media = False``).
- ``image``: ``[3, H, W]`` in [0, 1].
- ``video``: ``[F, 3, H, W]`` in [0, 1], F = ``num_frames`` sampled uniformly.
- ``audio``: ``[C, T, n_mels]`` log-mel, C = ``num_chunks``, T = ``chunk_frames``.
- ``depth``: ``[F, 3, H, W]`` in [0, 1], F = 1 (depth) or 2 (``[rgb, depth]``).
- ``point_cloud``: ``[N, 3]`` centred, inside the unit sphere.
"""

from .base import MediaError, Modality, ModalitySettings, get_modality, list_modalities, register_modality

# Importing a module registers it; text first so the base modality comes first in list_modalities().
from . import text, image, video, audio, depth, point_cloud  # noqa: E402,F401  isort: skip

__all__ = ["MediaError", "Modality", "ModalitySettings", "get_modality", "list_modalities", "register_modality"]
