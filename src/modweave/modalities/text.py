"""Text: records without media (the prompt is the whole input)."""

from __future__ import annotations

import dataclasses

from .base import Modality, ModalitySettings, register_modality


@dataclasses.dataclass
class TextSettings(ModalitySettings):
    """Text has nothing to preprocess; kept so every modality has a settings class."""


@register_modality("text")
class TextModality(Modality):
    has_media = False
    settings_cls = TextSettings
