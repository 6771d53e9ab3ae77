"""Frozen-encoder features computed once per input frame and reused by every step, stage and method.

Encoders are frozen, so the features of one frame never change while its encoder's weights do not:
a cache keyed by (encoder fingerprint, frame content) holds them. Each missing frame is encoded on its
own (a batch of one) with the encoder in eval mode, so a cached feature is a pure function of the
encoder and the frame: runs with a cache, resumed or not, see the same values whatever the batch
composition or the model's train/eval mode. (An uncached pass may differ from it in the last float
bits: matmul blocking depends on the batch, and torch's TransformerEncoder has a fused eval kernel.)

In memory by default (`train.feature_cache: memory`); `modweave cache-features` (or
`train.feature_cache: DIR`) also keeps them on disk as safetensors shards, `DIR/<encoder fp>/shard-*.safetensors`,
so paper-scale runs encode their media once for every later run. Files are only added, never
rewritten; a folder of another encoder (other fingerprint) is simply not read.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

SHARD_ENTRIES = 4096  # features per shard file on disk


def encoder_fingerprint(encoder: nn.Module) -> str:
    """sha256 (16 hex digits) over the encoder's class, parameter and buffer names, shapes, dtypes and values."""
    h = hashlib.sha256(type(encoder).__qualname__.encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.device.type != "meta":
            h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def frame_key(frame: torch.Tensor) -> str:
    """Content key of one encoder input: shape, dtype and bytes."""
    t = frame.detach().to("cpu").contiguous()
    h = hashlib.sha1(f"{tuple(t.shape)}:{t.dtype}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """`encode(encoder, frames [N, *frame]) -> [N, T, d]`, from the cache where it has the frame.

    `folder`: where shards are read from and written to (None: memory only). Call `flush()` to write
    what was computed since the last flush (the trainer does after every phase)."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else None
        self._mem: dict[str, dict[str, torch.Tensor]] = {}  # fingerprint -> frame key -> [T, d]
        self._new: dict[str, dict[str, torch.Tensor]] = {}  # not yet on disk
        self._fps: dict[int, tuple[tuple, str]] = {}  # id(encoder) -> (version key, fingerprint)
        self.hits = self.misses = 0

    def fingerprint(self, encoder: nn.Module) -> str:
        # every step asks: iterate the tensors (state_dict() would build a new dict of them each time)
        version = tuple((t.data_ptr(), t._version) for t in (*encoder.parameters(), *encoder.buffers()))
        cached = self._fps.get(id(encoder))
        if cached is None or cached[0] != version:
            fp = encoder_fingerprint(encoder)
            self._fps[id(encoder)] = (version, fp)
            if fp not in self._mem:
                self._mem[fp] = self._read(fp)
        return self._fps[id(encoder)][1]

    def _read(self, fp: str) -> dict[str, torch.Tensor]:
        if self.folder is None or not (self.folder / fp).is_dir():
            return {}
        from safetensors.torch import load_file

        out: dict[str, torch.Tensor] = {}
        for shard in sorted((self.folder / fp).glob("shard-*.safetensors")):
            out.update(load_file(str(shard)))
        logger.info("feature cache: %d features of encoder %s from %s", len(out), fp, self.folder / fp)
        return out

    @torch.no_grad()
    def encode(self, encoder: nn.Module, frames: torch.Tensor) -> torch.Tensor:
        """Features `[N, T, d]` of `frames [N, *frame]`; missing ones are encoded one frame at a time."""
        fp = self.fingerprint(encoder)
        store = self._mem[fp]
        keys = [frame_key(f) for f in frames]
        out = []
        was_training = encoder.training
        encoder.eval()  # the encoder as at inference, whatever mode the model trains in (fused kernels differ)
        try:
            for key, frame in zip(keys, frames):
                feat = store.get(key)
                if feat is None:
                    self.misses += 1
                    feat = encoder(frame.unsqueeze(0))[0].detach().to("cpu").contiguous()
                    store[key] = feat
                    self._new.setdefault(fp, {})[key] = feat
                else:
                    self.hits += 1
                out.append(feat)
        finally:
            encoder.train(was_training)
        return torch.stack(out).to(frames.device)

    def flush(self) -> list[Path]:
        """Write the features computed since the last flush as new shards (atomically); returns them."""
        if self.folder is None:
            self._new.clear()
            return []
        from safetensors.torch import save_file

        from .utils import atomic_path

        written = []
        for fp, new in self._new.items():
            folder = self.folder / fp
            folder.mkdir(parents=True, exist_ok=True)
            start = len(list(folder.glob("shard-*.safetensors")))
            items = sorted(new.items())
            for k in range(0, len(items), SHARD_ENTRIES):
                path = folder / f"shard-{start + k // SHARD_ENTRIES:05d}.safetensors"
                with atomic_path(path) as tmp:
                    save_file(dict(items[k:k + SHARD_ENTRIES]), str(tmp))
                written.append(path)
        self._new.clear()
        return written
