"""BEATs and PointBERT: public checkpoint formats and key names (tiny shapes), strict loading,
`weights_only` pickles, and the shapes the modweave protocol promises."""

from __future__ import annotations

import pytest
import torch

from modweave.config import EncoderConfig
from modweave.encoders import build_encoder
from modweave.encoders.beats import BEATsConfig, BEATsEncoder, relative_buckets
from modweave.encoders.pointbert import PointBERTConfig, PointBERTEncoder, group_points

TINY_BEATS = dict(input_patch_size=4, embed_dim=12, encoder_layers=2, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                  encoder_attention_heads=2, conv_pos=8, conv_pos_groups=2, num_buckets=16, max_distance=32)
TINY_POINTS = dict(num_group=8, group_size=4, encoder_dims=16, trans_dim=24, depth=2, num_heads=2, projection_dim=20)


def test_beats_public_key_names():
    keys = set(BEATsEncoder(BEATsConfig(**TINY_BEATS)).state_dict())
    for k in ("patch_embedding.weight", "layer_norm.weight", "post_extract_proj.weight",
              "encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v", "encoder.pos_conv.0.bias",
              "encoder.layer_norm.bias", "encoder.layers.1.self_attn.q_proj.weight",
              "encoder.layers.0.self_attn.relative_attention_bias.weight", "encoder.layers.1.self_attn.grep_linear.weight",
              "encoder.layers.1.self_attn.grep_a", "encoder.layers.1.self_attn_layer_norm.weight",
              "encoder.layers.1.fc1.weight", "encoder.layers.1.fc2.bias", "encoder.layers.1.final_layer_norm.weight"):
        assert k in keys, k
    assert "patch_embedding.bias" not in keys  # conv_bias=False as published


def test_beats_checkpoint_roundtrip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    src = BEATsEncoder(BEATsConfig(**TINY_BEATS)).eval()
    state = src.state_dict()
    state["predictor.weight"] = torch.zeros(3, 16)  # fine-tuned heads are ignored
    path = tmp_path / "BEATs_iter3.pt"
    torch.save({"cfg": TINY_BEATS, "model": state}, path)
    enc = build_encoder(EncoderConfig(kind="beats", name_or_path=str(path)))
    x = torch.randn(2, 18, 8) - 6  # 18 frames: truncated to 16 (a multiple of the patch)
    out = enc(x)
    assert out.shape == (2, (16 // 4) * (8 // 4), 16) and enc.modweave_external
    with torch.no_grad():
        assert torch.equal(out, src(x))

    state = {k: v for k, v in src.state_dict().items() if k != "encoder.layers.1.fc1.weight"}
    state["encoder.layers.0.fc2.weight"] = torch.zeros(2, 2)
    torch.save({"cfg": TINY_BEATS, "model": state}, path)
    with pytest.raises(ValueError, match=r"missing encoder.layers.1.fc1.weight.*fc2.weight: file \[2, 2\]"):
        build_encoder(EncoderConfig(kind="beats", name_or_path=str(path)))


def test_beats_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"cfg": TINY_BEATS, "model": {}, "obj": BEATsConfig()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        build_encoder(EncoderConfig(kind="beats", name_or_path=str(path)))


def test_relative_buckets_are_symmetric_and_bounded():
    b = relative_buckets(50, 50, 16, 32, torch.device("cpu"))
    assert b.min() >= 0 and b.max() < 16
    assert torch.equal(b.diagonal(), torch.zeros(50, dtype=torch.long))
    assert (b[0, 1:] >= 8).all() and (b[1:, 0] < 8).all()  # later keys use the upper half


def test_group_points_fps_knn():
    torch.manual_seed(0)
    xyz = torch.randn(2, 64, 3)
    groups, centers = group_points(xyz, 8, 4)
    assert groups.shape == (2, 8, 4, 3) and centers.shape == (2, 8, 3)
    assert torch.equal(centers[:, 0], xyz[:, 0])  # FPS starts at point 0
    assert torch.allclose(groups[:, :, 0], torch.zeros(2, 8, 3))  # each centre is its own nearest point
    assert len({tuple(c.tolist()) for c in centers[0]}) == 8  # distinct centres


def test_pointbert_ulip_checkpoint(tmp_path):
    torch.manual_seed(0)
    src = PointBERTEncoder(PointBERTConfig(**TINY_POINTS)).eval()
    state = {f"module.point_encoder.{k}": v for k, v in src.state_dict().items() if k != "pc_projection"}
    state["module.pc_projection"] = src.pc_projection.detach()
    state["module.text_projection"] = torch.zeros(4, 4)  # other towers are dropped
    keys = set(state)
    for k in ("module.point_encoder.encoder.first_conv.0.weight", "module.point_encoder.encoder.second_conv.1.running_mean",
              "module.point_encoder.reduce_dim.weight", "module.point_encoder.cls_token", "module.point_encoder.cls_pos",
              "module.point_encoder.pos_embed.0.weight", "module.point_encoder.blocks.blocks.1.attn.qkv.weight",
              "module.point_encoder.blocks.blocks.1.mlp.fc2.weight", "module.point_encoder.norm.weight"):
        assert k in keys, k
    path = tmp_path / "ulip2_pointbert.pt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    enc = build_encoder(EncoderConfig(kind="pointbert", name_or_path=str(path),
                                      options={"num_group": 8, "group_size": 4, "num_heads": 2}))
    pts = torch.randn(3, 40, 6)  # xyz + rgb: colour ignored
    out = enc(pts)
    assert out.shape == (3, 1, 20) and enc.output_width == 20 and enc.frame_dims == 2
    with torch.no_grad():
        assert torch.equal(out, src(pts))

    del state["module.point_encoder.norm.weight"]
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match="missing norm.weight"):
        build_encoder(EncoderConfig(kind="pointbert", name_or_path=str(path), options={"num_heads": 2}))


def test_random_builds_follow_options():
    enc = build_encoder(EncoderConfig(kind="pointbert", options={**TINY_POINTS, "projection_dim": None}))
    assert enc(torch.randn(1, 16, 3)).shape == (1, 1, 48)
    beats = build_encoder(EncoderConfig(kind="beats", options=TINY_BEATS))
    assert beats(torch.randn(1, 8, 8)).shape == (1, 4, 16)


def test_checkpoint_builds_on_meta_check_shapes_without_loading(tmp_path):
    """On the meta device (preflight, `modweave params`) a BEATs / PointBERT checkpoint gives its
    architecture (tensors memory-mapped, never copied) and a mismatching file is still refused."""
    torch.manual_seed(0)
    beats = BEATsEncoder(BEATsConfig(**TINY_BEATS))
    torch.save({"cfg": TINY_BEATS, "model": beats.state_dict()}, tmp_path / "beats.pt")
    points = PointBERTEncoder(PointBERTConfig(**TINY_POINTS))
    torch.save({"state_dict": {f"point_encoder.{k}": v for k, v in points.state_dict().items()}}, tmp_path / "pb.pt")
    for kind, src, opts in (("beats", beats, {}), ("pointbert", points, {"num_group": 8, "group_size": 4, "num_heads": 2})):
        with torch.device("meta"):
            enc = build_encoder(EncoderConfig(kind=kind, name_or_path=str(tmp_path / f"{'beats' if kind == 'beats' else 'pb'}.pt"),
                                              options=opts))
        assert all(p.is_meta for p in enc.parameters()) and enc.modweave_external
        assert {k: v.shape for k, v in enc.state_dict().items()} == {k: v.shape for k, v in src.state_dict().items()}
    state = dict(beats.state_dict())
    state["encoder.layers.0.fc2.weight"] = torch.zeros(2, 2)
    torch.save({"cfg": TINY_BEATS, "model": state}, tmp_path / "bad.pt")
    with torch.device("meta"), pytest.raises(ValueError, match=r"fc2.weight: file \[2, 2\]"):
        build_encoder(EncoderConfig(kind="beats", name_or_path=str(tmp_path / "bad.pt")))
