"""Frozen-encoder features cached per frame: same training, encoded once, on disk for later runs."""

from __future__ import annotations

from pathlib import Path

import torch

from modweave.config import load_run_config
from modweave.feature_cache import FeatureCache, encoder_fingerprint
from modweave.train import ContinualTrainer

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "test-train.yaml"
BUDGET = ("eval.enabled=false", "train.steps=3", "train.base.steps=3")


def _run(root: Path, out: Path, *overrides: str) -> ContinualTrainer:
    trainer = ContinualTrainer(load_run_config(CONFIG, [f"data.root={root}", *BUDGET, *overrides]), out)
    trainer.run()
    return trainer


def test_cached_training_gives_the_same_losses_and_a_folder_serves_later_runs(digits_root, tmp_path, capsys):
    from modweave.cli import main

    plain = _run(digits_root, tmp_path / "plain")
    memory = _run(digits_root, tmp_path / "memory", "data.feature_cache=memory")
    cache = memory.model.feature_cache
    assert cache.hits > 0 and cache.misses > 0  # frames seen again were not re-encoded
    for stage, losses in plain.progress["losses"].items():
        cached = memory.progress["losses"][stage]
        assert [s for s, _ in losses] == [s for s, _ in cached]
        assert all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for (_, a), (_, b) in zip(losses, cached)), stage

    feats = tmp_path / "features"
    assert main(["cache-features", str(CONFIG), f"data.root={digits_root}", "--out", str(feats)]) == 0
    assert "features in" in capsys.readouterr().out
    shards = sorted(feats.glob("*/shard-*.safetensors"))
    assert len({p.parent.name for p in shards}) == 2  # the image encoder (image, video) and the audio one
    disk = _run(digits_root, tmp_path / "disk", f"data.feature_cache={feats}")
    assert disk.progress["losses"] == memory.progress["losses"]  # the same per-frame values, bit for bit
    assert disk.model.feature_cache.misses == 0 and disk.model.feature_cache.hits > 0  # all read from disk
    before = sorted(feats.rglob("*.safetensors"))
    assert [p.read_bytes() for p in before[: len(shards)]] == [p.read_bytes() for p in shards]  # only added to


def test_a_changed_encoder_never_reads_anothers_features(tmp_path):
    enc = torch.nn.Linear(4, 3)
    frames = torch.rand(5, 2, 4)
    cache = FeatureCache(tmp_path)
    first = cache.encode(enc, frames)
    assert torch.equal(first, torch.stack([enc(f.unsqueeze(0))[0] for f in frames]).detach())
    cache.flush()
    fp, weight = encoder_fingerprint(enc), enc.weight.detach().clone()
    with torch.no_grad():
        enc.weight.add_(1.0)
    assert encoder_fingerprint(enc) != fp
    again = FeatureCache(tmp_path)
    assert not torch.equal(again.encode(enc, frames), first) and again.misses == 5  # recomputed, not read
    reread = FeatureCache(tmp_path)
    with torch.no_grad():
        enc.weight.copy_(weight)
    assert torch.equal(reread.encode(enc, frames), first) and reread.misses == 0 and reread.hits == 5
