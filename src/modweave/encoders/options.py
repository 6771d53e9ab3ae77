"""The `options` each built-in encoder kind accepts, as dataclasses (the config checks a path's
`encoder.options` against them when it is parsed: an unknown or mistyped key is a one-line error).

BEATs and PointBERT take their architecture classes (BEATsConfig, PointBERTConfig) as options.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import setting

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class TinyImageOptions:
    image_size: int = setting(32, min=1)
    patch: int = setting(4, min=1)
    layers: int = setting(1, min=0)
    heads: int = setting(4, min=1)
    channels: int = setting(3, min=1)


@dataclass
class TinyAudioOptions:
    n_mels: int = setting(32, min=1)
    patch_frames: int = setting(8, min=1)
    max_frames: int = setting(128, min=1)
    layers: int = setting(1, min=0)
    heads: int = setting(4, min=1)


@dataclass
class TinyPointsOptions:
    num_tokens: int = setting(8, min=1)
    hidden: int = setting(64, min=1)
    in_dim: int = setting(3, min=3)


@dataclass
class HFVisionOptions:
    """`select_layer`: -1 the tower's output, else an index into its hidden states; `image_size`,
    `image_mean`, `image_std`: override the checkpoint's image processor."""

    select_layer: int = -1
    drop_cls: bool = False
    image_size: int | None = setting(None, min=1)
    image_mean: tuple[float, ...] | None = None
    image_std: tuple[float, ...] | None = None
    dtype: str = setting("float32", choices=DTYPES)


@dataclass
class WhisperOptions:
    """`features`: what the loader gives (kaldi: its log-mels; whisper: WhisperFeatureExtractor's output);
    `length`: padded (every chunk padded to 30 s, as pretrained) or native (the chunk's own frames)."""

    features: str = setting("kaldi", choices=("kaldi", "whisper"))
    length: str = setting("padded", choices=("padded", "native"))
    dtype: str = setting("float32", choices=DTYPES)


@dataclass
class ASTOptions:
    features: str = setting("kaldi", choices=("kaldi", "ast"))
    drop_cls: bool = False
    dtype: str = setting("float32", choices=DTYPES)
