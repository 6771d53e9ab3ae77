"""The checkpoints' own preprocessors (transformers feature extractors / image processors), loaded
once per process with custom code refused.

- `feature_extractor("whisper" | "ast", processor)`: a `WhisperFeatureExtractor` / `ASTFeatureExtractor`
  from a checkpoint folder or hub id (its `preprocessor_config.json`), a `ct2:` CTranslate2 Whisper
  (its `preprocessor_config.json` when it ships one, else Whisper's defaults for its mel count), a
  config `.json` architecture file (defaults for its mel count), or None (transformers' defaults:
  80-mel Whisper, AudioSet AST).
- `image_stats(name_or_path)`: the image processor's mean / std / output size, or None.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

FEATURES = ("kaldi", "whisper", "ast")


@lru_cache(maxsize=8)
def feature_extractor(features: str, processor: str | None = None) -> Any:
    from transformers import ASTFeatureExtractor, AutoFeatureExtractor, WhisperFeatureExtractor

    from ..bases.hub import refuse_remote_code
    from .ct2_whisper import encoder_config, is_ct2, resolve_ct2

    cls = {"whisper": WhisperFeatureExtractor, "ast": ASTFeatureExtractor}.get(features)
    if cls is None:
        raise ValueError(f"no feature extractor for features '{features}' (known: whisper, ast)")
    if processor is None:
        return cls()
    if is_ct2(processor):
        if features != "whisper":
            raise ValueError(f"processor '{processor}': a CTranslate2 model is a Whisper (features: whisper)")
        root = resolve_ct2(processor)
        if (root / "preprocessor_config.json").is_file():
            return _load(WhisperFeatureExtractor, str(root))
        return WhisperFeatureExtractor(feature_size=encoder_config(processor).num_mel_bins)
    path = Path(processor)
    if path.suffix == ".json" and path.is_file():  # an architecture file: the family's defaults
        mels = json.loads(path.read_text()).get("num_mel_bins")
        if not mels:
            return cls()
        return cls(feature_size=mels) if features == "whisper" else cls(num_mel_bins=mels)
    refuse_remote_code(processor)
    extractor = _load(AutoFeatureExtractor, processor)
    if not isinstance(extractor, cls):
        raise ValueError(f"processor '{processor}' is a {type(extractor).__name__}, not a {cls.__name__} "
                         f"(features: {features})")
    return extractor


def _load(cls: Any, name_or_path: str, **kwargs: Any) -> Any:
    from ..bases.hub import one_line

    try:
        return cls.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"processor '{name_or_path}': cannot load its feature extractor ({one_line(err)})") from None


@lru_cache(maxsize=8)
def image_stats(name_or_path: str) -> dict[str, Any] | None:
    """`{"mean", "std", "size"}` of the checkpoint's image processor (None when it ships none).
    `size` is the square side of the processor's output (its crop size, else its resize size)."""
    from transformers import AutoImageProcessor

    from ..bases.hub import _checkpoint_file, refuse_remote_code

    if Path(name_or_path).suffix == ".json" or _checkpoint_file(name_or_path, "preprocessor_config.json") is None:
        return None
    refuse_remote_code(name_or_path)
    proc = _load(AutoImageProcessor, name_or_path, backend="pil")  # Pillow: no torchvision (DESIGN.md)
    size = None
    for box in (getattr(proc, "crop_size", None) if getattr(proc, "do_center_crop", False) else None,
                getattr(proc, "size", None)):
        get = box.get if isinstance(box, dict) else (lambda k, b=box: getattr(b, k, None))
        size = (get("height") or get("shortest_edge")) if box is not None else None
        if size:
            break
    mean, std = getattr(proc, "image_mean", None), getattr(proc, "image_std", None)
    return {"mean": tuple(mean) if mean is not None else None, "std": tuple(std) if std is not None else None,
            "size": size}


EXTRACTOR_KINDS = {"hf-whisper": "whisper", "hf-ast": "ast"}


def loader_defaults(encoder: Any) -> dict[str, Any]:
    """The audio loader settings an encoder config asks for (`{}` for Kaldi features or other kinds):
    `{"features": ..., "processor": name_or_path}` when `hf-whisper` / `hf-ast` take their extractor's
    output (`options.features`). For callers that fill a path spec's `loader` from its encoder, so the
    user writes `features` once; settings the user gave win."""
    kind = getattr(encoder, "kind", None) if not isinstance(encoder, dict) else encoder.get("kind")
    options = (encoder.get("options") if isinstance(encoder, dict) else getattr(encoder, "options", None)) or {}
    name = encoder.get("name_or_path") if isinstance(encoder, dict) else getattr(encoder, "name_or_path", None)
    features = options.get("features", "kaldi")
    if EXTRACTOR_KINDS.get(kind) != features:
        return {}
    return {"features": features, "processor": name}
