"""Real frozen audio encoders from transformers checkpoints: `hf-whisper` and `hf-ast`.

Input features (`options.features`, which must match the audio loader's `features`):
- `kaldi` (default): the loader's own Kaldi log-mels (natural log of mel power, HTK filterbank), adapted
  here to the model's scaling. Close to, not the same as, the features the model was trained on.
- `whisper` / `ast`: the checkpoint's own feature extractor's output (`WhisperFeatureExtractor`,
  `ASTFeatureExtractor`), computed by the loader (`loader: {features: whisper, processor: <ckpt>}`) and
  consumed as is: the encoder's input then equals the processor's output.

Whisper's length (`options.length`): `padded` (default, what Whisper was trained on) pads every chunk to
30 s (3000 frames) and keeps the `ceil(T / 2)` output tokens of the real frames; `native` runs the
encoder on the chunk's own T frames with the position embeddings sliced to `ceil(T / 2)`. Measured with
Whisper tiny.en on espeak-ng digits in 2-s chunks, 2 CPU cores (benchmarks/real_whisper_digits.py):
native is ~10x faster per encoder forward and per training step (0.7 vs 7.4 s at batch 16), 2.7x less
peak memory; accuracy on held-out voices after 100 steps moved both ways (`ana` 0.83 native vs 0.69
padded, `lora` 0.80 vs 0.91). `padded` stays the default because it is the encoder exactly as pretrained
(and what existing configs get); `native` is the choice for clips much shorter than 30 s when compute
matters. The setting is saved with the stage, so a stage is evaluated as it was trained.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..config import EncoderConfig
from . import register_encoder
from .hf import load_hf_module
from .options import ASTOptions, WhisperOptions

AST_MEAN, AST_STD = -4.2677393, 4.5689974  # AudioSet fbank statistics AST was trained with
LN10 = math.log(10.0)
WHISPER_FLOOR = (-10.0 + 4.0) / 4.0  # Whisper's scaled log10(1e-10): the floor of zero-signal frames
LENGTHS = ("padded", "native")


def _check_once(enc: nn.Module, x: torch.Tensor, bad: torch.Tensor, what: str) -> None:
    """Refuse input that cannot be the extractor's output (first batch only: one host sync per encoder).
    `bad`: a 0-d bool tensor computed from `x`; on the meta device nothing can be checked."""
    if getattr(enc, "_input_checked", False) or x.is_meta:
        return
    if bool(bad):
        raise ValueError(f"{what}; set the path's loader to `features: {enc.features}` (with `processor:` the "
                         "checkpoint), or the encoder option `features: kaldi` for the loader's Kaldi log-mels")
    enc._input_checked = True


def _choice(cfg: EncoderConfig, key: str, default: str, known: tuple[str, ...]) -> str:
    value = cfg.options.get(key, default)
    if value not in known:
        raise ValueError(f"encoder option '{key}' of kind {cfg.kind}: '{value}' is not one of {', '.join(known)}")
    return value


class WhisperAudioEncoder(nn.Module):
    """The Whisper encoder on `[N, T, n_mels]` audio features (see the module doc for `features`, `length`).

    `kaldi` features: log10, clamped to 8 below the chunk's maximum, scaled `(x + 4) / 4`, padded with the
    floor (Whisper's own recipe on the loader's mels). `whisper` features are already scaled; padding
    frames get Whisper's value for silence, `max(chunk max - 2, -1.5)`, as its extractor gives them."""

    frame_dims = 2

    def __init__(self, encoder: nn.Module, features: str = "kaldi", length: str = "padded"):
        super().__init__()
        self.encoder = encoder
        self.features, self.length = features, length
        self.n_mels = encoder.config.num_mel_bins
        self.frames = 2 * encoder.config.max_source_positions
        self.output_width = encoder.config.d_model

    def input_features(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, T, n_mels]` -> the encoder's `input_features` `[N, n_mels, 3000]` (`native`: `[N, n_mels, T]`)."""
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"Whisper encoder expects [N, T, {self.n_mels}] {self.features} features, got {list(x.shape)}")
        t = min(x.shape[1], self.frames)
        pad = self.frames - t if self.length == "padded" else 0
        if self.features == "whisper":
            feats = x[:, :t].float()
            top = feats.amax(dim=(1, 2), keepdim=True)
            # Whisper's features span at most 2 per chunk (clamped 8 below the max in log10, then / 4)
            _check_once(self, x, ((top - feats.amin(dim=(1, 2), keepdim=True)) > 2.0 + 1e-3).any(),
                        "hf-whisper (features: whisper) got features spanning more than Whisper's 2.0")
            fill = torch.clamp(top - 2.0, min=WHISPER_FLOOR)
        else:
            logmel = x[:, :t].float() / LN10
            logmel = torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - 8.0)
            fill = logmel.amin(dim=(1, 2), keepdim=True)
            feats = logmel
        if pad:
            feats = torch.cat([feats, fill.expand(-1, pad, self.n_mels)], dim=1)
        if self.features != "whisper":
            feats = (feats + 4.0) / 4.0
        return feats.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = min(x.shape[1], self.frames) if x.dim() == 3 else 0
        feats = self.input_features(x).to(next(self.encoder.parameters()).dtype)
        if self.length == "native":
            return self._native(feats)
        return self.encoder(input_features=feats).last_hidden_state[:, : math.ceil(t / 2)]

    def _native(self, feats: torch.Tensor) -> torch.Tensor:
        """The encoder's own modules on `[N, n_mels, T]`: transformers' forward insists on 3000 frames,
        so its loop is run here with the position table cut to the `ceil(T / 2)` positions used."""
        enc = self.encoder
        h = F.gelu(enc.conv2(F.gelu(enc.conv1(feats)))).transpose(1, 2)  # [N, ceil(T/2), d]
        h = h + enc.embed_positions.weight[: h.shape[1]].to(h.dtype)
        for layer in enc.layers:
            h = layer(h, None)
        return enc.layer_norm(h)


@register_encoder("hf-whisper", WhisperOptions)
def build_hf_whisper(cfg: EncoderConfig) -> WhisperAudioEncoder:
    """A Whisper checkpoint (full model or encoder config, or `ct2:<dir or package>` for a CTranslate2
    model); only its encoder is kept. Options: `features` (kaldi | whisper), `length` (padded | native), `dtype`."""
    from transformers import WhisperModel

    from ..llm import torch_dtype
    from .ct2_whisper import is_ct2, load_ct2_encoder, resolve_ct2

    features = _choice(cfg, "features", "kaldi", ("kaldi", "whisper"))
    length = _choice(cfg, "length", "padded", LENGTHS)
    source = None
    if is_ct2(cfg.name_or_path):
        encoder = load_ct2_encoder(cfg.name_or_path, torch_dtype(cfg.options.get("dtype", "float32")))
        external = True  # the folder that holds model.bin is what checkpoints reference (and hash)
        source = {"name_or_path": str(resolve_ct2(cfg.name_or_path)), "revision": None}
    else:
        model = load_hf_module(cfg, {"whisper": WhisperModel})
        encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
        external = getattr(model, "modweave_external", False)
    enc = WhisperAudioEncoder(encoder, features, length)
    enc.modweave_external = external
    if source:
        enc.modweave_source = source
    return enc


class ASTAudioEncoder(nn.Module):
    """Audio Spectrogram Transformer on `[N, T, n_mels]` features, exactly `max_length` frames.

    `kaldi`: the loader's fbank, normalised with AudioSet statistics `(x - mean) / (2 * std)`, shorter
    chunks padded with zeros after normalising. `ast`: the extractor's normalised output, padded with
    its value for padding (`(0 - mean) / (2 * std)`: it pads the fbank with zeros, then normalises).
    Output: `[N, 2 + patches, width]` (CLS + distillation token first; `drop_cls` drops both)."""

    frame_dims = 2

    def __init__(self, model: nn.Module, drop_cls: bool = False, features: str = "kaldi",
                 mean: float = AST_MEAN, std: float = AST_STD):
        super().__init__()
        self.model = model
        self.n_mels = model.config.num_mel_bins
        self.frames = model.config.max_length
        self.drop_cls = drop_cls
        self.features = features
        self.mean, self.std = mean, std
        self.output_width = model.config.hidden_size

    def input_values(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, T, n_mels]` -> the model's `input_values` `[N, max_length, n_mels]`."""
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"AST expects [N, T, {self.n_mels}] {self.features} features, got {list(x.shape)}")
        feats = x[:, : self.frames].float()
        if self.features == "ast":
            fill = (0.0 - self.mean) / (2 * self.std)
            # the extractor's log floor (ln 1.19e-7), normalised, bounds its output from below
            floor = (math.log(1.192092955078125e-07) - self.mean) / (2 * self.std)
            _check_once(self, x, (feats.amin() < floor - 1e-3), f"hf-ast (features: ast) got values below "
                        f"the extractor's floor {floor:.3f}: not its normalised fbank")
        else:
            feats, fill = (feats - self.mean) / (2 * self.std), 0.0
        return F.pad(feats, (0, 0, 0, self.frames - feats.shape[1]), value=fill)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.input_values(x)
        h = self.model(input_values=feats.to(next(self.model.parameters()).dtype)).last_hidden_state
        return h[:, 2:] if self.drop_cls else h


@register_encoder("hf-ast", ASTOptions)
def build_hf_ast(cfg: EncoderConfig) -> ASTAudioEncoder:
    """An AST checkpoint. Options: `features` (kaldi | ast; `ast` normalises with the checkpoint's
    extractor statistics), `drop_cls`, `dtype`."""
    features = _choice(cfg, "features", "kaldi", ("kaldi", "ast"))
    model = load_hf_module(cfg)
    mean, std = AST_MEAN, AST_STD
    if features == "ast":
        from .processors import feature_extractor

        fe = feature_extractor("ast", cfg.name_or_path)
        mean, std = fe.mean, fe.std
    enc = ASTAudioEncoder(model, cfg.options.get("drop_cls", False), features, mean, std)
    enc.modweave_external = getattr(model, "modweave_external", False)
    return enc
