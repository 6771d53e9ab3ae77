"""The embedded tiny encoders: shapes, frozen + seeded determinism, PointNet's grouped max-pool."""

from __future__ import annotations

import pytest
import torch

from modweave.config import EncoderConfig
from modweave.encoders import build_encoder, list_encoders

CASES = {
    "tiny-image": (EncoderConfig(kind="tiny-image", width=32, options={"image_size": 16, "patch": 4}), (3, 16, 16), 16),
    "tiny-audio": (EncoderConfig(kind="tiny-audio", width=32, options={"n_mels": 16, "patch_frames": 4}), (32, 16), 8),
    "tiny-points": (EncoderConfig(kind="tiny-points", width=32, options={"num_tokens": 4}), (100, 3), 4),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_shapes_frozen_and_seeded(kind):
    cfg, frame, tokens = CASES[kind]
    enc = build_encoder(cfg)
    assert kind in list_encoders()
    assert not any(p.requires_grad for p in enc.parameters())
    assert enc.frame_dims == len(frame)
    x = torch.rand(2, *frame)
    y = enc(x)
    assert y.shape == (2, tokens, cfg.width)
    assert torch.equal(build_encoder(cfg)(x), y)  # same seed, same encoder
    other = build_encoder(EncoderConfig(kind=cfg.kind, width=cfg.width, seed=cfg.seed + 1, options=cfg.options))
    assert not torch.equal(other(x), y)


def test_pointnet_pools_the_max_of_each_anchor_group():
    enc = build_encoder(CASES["tiny-points"][0])
    x = torch.randn(3, 200, 3)
    feats = enc.mlp(x)
    group = (x @ enc.anchors.T).argmax(-1)
    mask = torch.nn.functional.one_hot(group, enc.anchors.shape[0]).bool()
    ref = feats.unsqueeze(2).masked_fill(~mask.unsqueeze(-1), -float("inf")).max(1).values
    ref = torch.where(torch.isinf(ref), torch.zeros_like(ref), ref)
    assert torch.equal(enc(x), enc.norm(ref))


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="unknown encoder kind 'nope'"):
        build_encoder(EncoderConfig(kind="nope"))


@pytest.mark.parametrize("kind", sorted(CASES))
def test_wrong_shape_is_reported(kind):
    enc = build_encoder(CASES[kind][0])
    with pytest.raises(ValueError, match="expects"):
        enc(torch.rand(2, 5))
