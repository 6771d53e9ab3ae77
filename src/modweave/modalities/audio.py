"""Audio: WAV / FLAC -> ``[num_chunks, chunk_frames, n_mels]`` log-mel filterbank features.

``features`` chooses whose features:
- ``kaldi`` (default): Kaldi-style fbank (25 ms Povey window, 10 ms hop, pre-emphasis, HTK mel scale),
  the features BEATs / ImageBind / the tiny encoders consume, computed with numpy (no torchaudio).
  Defaults: 2 chunks of 512 frames, 128 mels.
- ``whisper`` / ``ast``: the checkpoint's own transformers feature extractor (``processor``: a checkpoint
  folder or hub id with a ``preprocessor_config.json``, a ``ct2:`` CTranslate2 Whisper, or none for
  transformers' defaults), run on each chunk's samples: a chunk is exactly the extractor's output
  (``[frames, n_mels]``, cut to ``chunk_frames``). Defaults: 1 chunk of the extractor's full window
  (Whisper: 3000 frames = 30 s; AST: its ``max_length``), its mel count. Pair with the encoder option
  of the same name (``hf-whisper`` / ``hf-ast`` ``options: {features: whisper | ast}``).
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np
import torch

from .base import MediaError, Modality, ModalitySettings, SettingsError, register_modality

AUDIO_EXTENSIONS = (".wav", ".flac")
LOG_FLOOR = float(np.log(np.finfo(np.float32).eps))  # log of Kaldi's energy floor: silence / padding


FEATURES = ("kaldi", "whisper", "ast")
KALDI_DEFAULTS = {"num_chunks": 2, "chunk_frames": 512, "n_mels": 128}


@dataclasses.dataclass
class AudioSettings(ModalitySettings):
    """None: the default of the chosen ``features`` (see the module doc)."""

    sample_rate: int = 16000
    num_chunks: int | None = None  # fixed windows sampled uniformly over the clip (ImageBind-style clips)
    chunk_frames: int | None = None  # frames per window (10 ms hop: 512 -> 5.12 s)
    n_mels: int | None = None
    win_ms: float = 25.0
    hop_ms: float = 10.0
    features: str = "kaldi"
    processor: str | None = None

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise SettingsError(f"audio loader 'features': '{self.features}' is not one of {', '.join(FEATURES)}")
        if self.features == "kaldi":
            if self.processor is not None:
                raise SettingsError("audio loader 'processor' is used only with features: whisper or ast")
            for key, value in KALDI_DEFAULTS.items():
                if getattr(self, key) is None:
                    setattr(self, key, value)
        for key in ("num_chunks", "chunk_frames", "n_mels"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise SettingsError(f"audio loader '{key}' must be a positive integer, got {value!r}")
        if self.features != "kaldi":
            try:  # the extractor is read once per process; contradicting settings fail here, not per file
                extractor_for(self)
            except SettingsError:
                raise
            except ValueError as err:
                raise SettingsError(str(err)) from None


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 20.0) -> np.ndarray:
    """Triangular filters, equally spaced on the HTK mel scale: ``[n_mels, n_fft // 2 + 1]``."""
    mel_pts = np.linspace(hz_to_mel(f_min), hz_to_mel(sample_rate / 2), n_mels + 2)
    bin_mel = hz_to_mel(np.arange(n_fft // 2 + 1) * sample_rate / n_fft)
    left, centre, right = mel_pts[:-2, None], mel_pts[1:-1, None], mel_pts[2:, None]
    up = (bin_mel[None] - left) / (centre - left)
    down = (right - bin_mel[None]) / (right - centre)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def log_mel(wave: np.ndarray, settings: AudioSettings) -> np.ndarray:
    """Mono waveform ``[S]`` at ``settings.sample_rate`` -> log-mel ``[T, n_mels]`` (T may be 0)."""
    sr = settings.sample_rate
    win = int(round(sr * settings.win_ms / 1000))
    hop = int(round(sr * settings.hop_ms / 1000))
    n_mels = settings.n_mels or KALDI_DEFAULTS["n_mels"]
    if len(wave) < win:
        return np.zeros((0, n_mels), dtype=np.float32)
    n_fft = 1 << (win - 1).bit_length()
    n_frames = 1 + (len(wave) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float32), win)[::hop][:n_frames].copy()
    frames -= frames.mean(axis=1, keepdims=True)  # remove DC per frame, as Kaldi does
    frames[:, 1:] -= 0.97 * frames[:, :-1]  # pre-emphasis
    frames[:, 0] *= 1 - 0.97
    frames *= (np.hanning(win) ** 0.85).astype(np.float32)  # Povey window
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    mel = power @ mel_filterbank(n_mels, n_fft, sr).T
    return np.log(np.maximum(mel, np.finfo(np.float32).eps)).astype(np.float32)


def chunk_features(feats: np.ndarray, num_chunks: int, chunk_frames: int) -> np.ndarray:
    """``[T, M]`` -> ``[num_chunks, chunk_frames, M]``: windows spread uniformly, short ones padded with the log floor."""
    t = feats.shape[0]
    out = np.full((num_chunks, chunk_frames, feats.shape[1]), LOG_FLOOR, dtype=np.float32)
    starts = np.linspace(0, max(t - chunk_frames, 0), num_chunks).round().astype(int)
    for c, s in enumerate(starts):
        piece = feats[s : s + chunk_frames]
        out[c, : len(piece)] = piece
    return out


def _check_wav_length(path: Path, extra_info: str) -> None:
    """libsndfile reads a cut-off WAV without complaint; its header report says "(should be N)"."""
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", extra_info, re.MULTILINE)
    # 0xFFFFFFFF-ish sizes mark streamed WAVs of unknown length, not truncation
    if m and int(m.group(2)) < int(m.group(1)) < 0xFFFFFF00:
        raise MediaError(path, f"truncated WAV (data chunk declares {m.group(1)} bytes, file holds {m.group(2)})")


def read_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Read a WAV / FLAC file as mono float32 at ``sample_rate`` (channels averaged, polyphase resampling)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        _check_wav_length(path, sf.info(str(path)).extra_info)
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        if isinstance(err, MediaError):
            raise
        raise MediaError(path, f"cannot decode audio ({err})") from None
    if data.shape[0] == 0:
        raise MediaError(path, "audio has no samples")
    wave = data.mean(axis=1)
    if sr != sample_rate:
        g = gcd(int(sr), int(sample_rate))
        wave = resample_poly(wave, sample_rate // g, int(sr) // g).astype(np.float32)
    return wave


def extractor_for(settings: AudioSettings):
    """The transformers feature extractor of ``settings`` (checked against the other settings)."""
    from ..encoders.processors import feature_extractor

    fe = feature_extractor(settings.features, settings.processor)
    mels = fe.feature_size if settings.features == "whisper" else fe.num_mel_bins
    where = f"audio loader (features: {settings.features}, processor: {settings.processor or 'default'})"
    if settings.n_mels is not None and settings.n_mels != mels:
        raise ValueError(f"{where}: n_mels {settings.n_mels} but the extractor has {mels} mel bins")
    if settings.sample_rate != fe.sampling_rate:
        raise ValueError(f"{where}: sample_rate {settings.sample_rate} but the extractor wants {fe.sampling_rate}")
    if (settings.win_ms, settings.hop_ms) != (25.0, 10.0):
        raise ValueError(f"{where}: win_ms / hop_ms are the extractor's (25 / 10 ms), not settings")
    window = fe.nb_max_frames if settings.features == "whisper" else fe.max_length
    if settings.chunk_frames is not None and settings.chunk_frames > window:
        raise ValueError(f"{where}: chunk_frames {settings.chunk_frames}, the extractor gives at most {window}")
    return fe


def extractor_chunks(wave: np.ndarray, settings: AudioSettings) -> np.ndarray:
    """Mono ``[S]`` -> ``[num_chunks, chunk_frames, n_mels]``: the extractor run on each chunk's samples
    (windows spread uniformly over the clip as for Kaldi features), its frames cut to ``chunk_frames``."""
    fe = extractor_for(settings)
    hop = int(round(settings.sample_rate * settings.hop_ms / 1000))
    window = fe.nb_max_frames if settings.features == "whisper" else fe.max_length
    frames = settings.chunk_frames or window
    num_chunks = settings.num_chunks or 1
    total = -(-len(wave) // hop)  # frames the clip spans
    span = frames * hop + (int(round(settings.sample_rate * settings.win_ms / 1000)) if settings.features == "ast" else 0)
    out = []
    for s in np.linspace(0, max(total - frames, 0), num_chunks).round().astype(int):
        piece = wave[s * hop: s * hop + span]
        if settings.features == "whisper":
            feats = fe(piece, sampling_rate=fe.sampling_rate, return_tensors="np").input_features[0].T
        else:
            feats = fe(piece, sampling_rate=fe.sampling_rate, return_tensors="np").input_values[0]
        out.append(feats[:frames])
    return np.stack(out).astype(np.float32)


@register_modality("audio")
class AudioModality(Modality):
    """Returns ``[num_chunks, chunk_frames, n_mels]`` float32: Kaldi log-mel (natural log of mel power),
    or the Whisper / AST extractor's features (``features``)."""

    extensions = AUDIO_EXTENSIONS
    settings_cls = AudioSettings
    frames_setting = "num_chunks"  # a path spec's num_frames is its number of chunks

    def _load(self, path: Path, settings: AudioSettings) -> torch.Tensor:
        path = self.check_path(path)
        wave = read_mono(path, settings.sample_rate)
        if settings.features != "kaldi":
            return torch.from_numpy(extractor_chunks(wave, settings))
        feats = log_mel(wave, settings)
        return torch.from_numpy(chunk_features(feats, settings.num_chunks, settings.chunk_frames))
