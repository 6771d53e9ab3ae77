"""Hand-made edge cases per loader: odd channel layouts, rates, lengths and file variants."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image, PngImagePlugin

from modweave.data.digits import _write_mp4
from modweave.modalities import MediaError, get_modality
from modweave.modalities.audio import LOG_FLOOR, AudioSettings, log_mel
from modweave.modalities.ply import write_ply
from modweave.modalities.video import uniform_indices


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_image_modes_become_rgb(tmp_path, mode):
    path = tmp_path / "x.png"
    Image.fromarray((np.arange(100).reshape(10, 10) * 2).astype(np.uint8)).convert(mode).save(path)
    x = get_modality("image").load(path, {"size": 16})
    assert x.shape == (3, 16, 16) and 0 <= x.min() and x.max() <= 1


def test_image_jpeg_grayscale_channels_equal(tmp_path):
    path = tmp_path / "x.jpg"
    Image.fromarray(np.full((20, 30), 128, np.uint8)).save(path)
    x = get_modality("image").load(path, {"size": 8})
    assert torch.allclose(x[0], x[1]) and torch.allclose(x[1], x[2])
    assert abs(x.mean().item() - 128 / 255) < 0.02


def test_uniform_indices_repeat_when_short():
    assert uniform_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert uniform_indices(10, 5).tolist() == [1, 3, 5, 7, 9]


def test_one_frame_video_repeats_its_frame(tmp_path):
    path = tmp_path / "one.mp4"
    _write_mp4(path, [np.full((16, 16), 200, np.uint8)], fps=5)
    x = get_modality("video").load(path, {"num_frames": 4, "size": 16})
    assert x.shape == (4, 3, 16, 16)
    assert torch.equal(x[0], x[3]) and abs(x.mean().item() - 200 / 255) < 0.02


def test_video_samples_uniformly_from_longer_clip(tmp_path):
    path = tmp_path / "ramp.mp4"
    _write_mp4(path, [np.full((16, 16), 20 * t, np.uint8) for t in range(10)], fps=5)
    x = get_modality("video").load(path, {"num_frames": 5, "size": 16})
    means = (x.mean(dim=(1, 2, 3)) * 255).round().tolist()
    assert means == pytest.approx([20, 60, 100, 140, 180], abs=2)


def test_video_without_frame_count_in_header(tmp_path):
    import av

    path = tmp_path / "ramp.mkv"  # Matroska stores no frame count: the loader decodes all, then samples
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=5)
        s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
        for t in range(6):
            img = np.full((16, 16, 3), 40 * t, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0
    x = get_modality("video").load(path, {"num_frames": 3, "size": 16})
    assert (x.mean(dim=(1, 2, 3)) * 255).round().tolist() == pytest.approx([40, 120, 200], abs=4)


def test_video_frame_folder(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for t in range(3):
        Image.fromarray(np.full((8, 8), 50 * t, np.uint8)).save(folder / f"{t:02d}.png")
    x = get_modality("video").load(folder, {"num_frames": 3, "size": 8})
    assert x.shape == (3, 3, 8, 8) and x[0].max() < x[2].min()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MediaError, match="no images"):
        get_modality("video").load(empty)


def _tone(sr: float, seconds: float, hz: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


@pytest.mark.parametrize("sr", [8000, 16000, 44100])
def test_audio_any_rate_gives_same_shape_and_peak(tmp_path, sr):
    path = tmp_path / f"tone{sr}.wav"
    sf.write(path, _tone(sr, 1.0, 1000.0), sr)
    settings = {"num_chunks": 2, "chunk_frames": 50, "n_mels": 64}
    x = get_modality("audio").load(path, settings)
    assert x.shape == (2, 50, 64)
    ref = torch.from_numpy(log_mel(_tone(16000, 1.0, 1000.0), AudioSettings(n_mels=64)))
    assert x[0, 10].argmax() == ref[10].argmax()  # the tone lands in the same mel bin


def test_audio_stereo_is_mixed_to_mono(tmp_path):
    left, right = _tone(16000, 0.5, 500.0), _tone(16000, 0.5, 2000.0)
    # float WAVs: with 16-bit ones, quantisation noise differs in the near-silent mel bins
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", (left + right) / 2, 16000, subtype="FLOAT")
    s = {"chunk_frames": 40, "n_mels": 32}
    st, mono = get_modality("audio").load(tmp_path / "st.wav", s), get_modality("audio").load(tmp_path / "mono.wav", s)
    assert torch.allclose(st, mono, atol=1e-2)


def test_audio_flac_and_short_clip_padded_with_floor(tmp_path):
    path = tmp_path / "short.flac"
    sf.write(path, _tone(16000, 0.2, 440.0), 16000)
    x = get_modality("audio").load(path, {"num_chunks": 2, "chunk_frames": 100, "n_mels": 32})
    assert x.shape == (2, 100, 32)
    assert torch.all(x[:, 30:] == LOG_FLOOR) and torch.all(x[:, :10].amax(-1) > LOG_FLOOR + 5)


def _depth_png(path, depth_mm, scale=None):
    info = PngImagePlugin.PngInfo()
    if scale is not None:
        info.add_text("depth_scale", str(scale))
    Image.fromarray(depth_mm.astype(np.uint16)).save(path, pnginfo=info)


def test_depth_png_normalised_by_max_and_scale_read(tmp_path):
    d = np.full((8, 8), 2000)
    d[:4] = 1000
    _depth_png(tmp_path / "d.png", d)
    _depth_png(tmp_path / "s.png", d, scale=0.01)
    for name in ("d.png", "s.png"):
        x = get_modality("depth").load(tmp_path / name, {"size": 8})
        assert x.shape == (1, 3, 8, 8)
        assert x[0, 0, 0, 0].item() == pytest.approx(0.5) and x[0, 0, 7, 7].item() == pytest.approx(1.0)
    from modweave.modalities.depth import read_depth

    assert read_depth(tmp_path / "s.png").max() == pytest.approx(20.0)  # metres via the metadata scale
    assert read_depth(tmp_path / "d.png").max() == pytest.approx(2.0)  # millimetres by default


def test_depth_npy_and_rgb_pair(tmp_path):
    np.save(tmp_path / "d.npy", np.linspace(1, 2, 64, dtype=np.float32).reshape(8, 8))
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(tmp_path / "rgb.png")
    x = get_modality("depth").load({"depth": tmp_path / "d.npy", "rgb": tmp_path / "rgb.png"}, {"size": 8})
    assert x.shape == (2, 3, 8, 8) and torch.all(x[0] == 1.0) and x[1].max() == pytest.approx(1.0)
    x = get_modality("depth").load(tmp_path / "d.npy", {"size": 8, "normalize": "minmax"})
    assert x.min() == 0 and x.max() == pytest.approx(1.0)


def test_depth_refuses_colour_png(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(MediaError, match="single-channel"):
        get_modality("depth").load(tmp_path / "c.png")


def _square(n=50, seed=0):
    return np.random.default_rng(seed).uniform(-3, 5, (n, 3)).astype(np.float32)


@pytest.mark.parametrize("binary", [True, False])
def test_ply_fewer_points_than_n(tmp_path, binary):
    write_ply(tmp_path / "p.ply", _square(50), binary=binary)
    x = get_modality("point_cloud").load(tmp_path / "p.ply", {"num_points": 300})
    assert x.shape == (300, 3)
    assert torch.allclose(x.mean(0), torch.zeros(3), atol=0.2) and x.norm(dim=1).max() == pytest.approx(1.0)


def test_ply_big_endian_with_faces_and_extra_properties(tmp_path):
    pts = _square(10)
    header = (
        "ply\nformat binary_big_endian 1.0\ncomment made by hand\nelement vertex 10\n"
        "property double x\nproperty double y\nproperty double z\nproperty uchar red\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
    )
    rows = np.zeros(10, dtype=[("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("red", "u1")])
    rows["x"], rows["y"], rows["z"] = pts.T
    face = bytes([3]) + np.array([0, 1, 2], ">i4").tobytes()
    (tmp_path / "be.ply").write_bytes(header.encode() + rows.tobytes() + face)
    from modweave.modalities.ply import read_ply_vertices

    assert np.allclose(read_ply_vertices(tmp_path / "be.ply"), pts)


def test_point_cloud_sampling_is_seeded(tmp_path):
    write_ply(tmp_path / "p.ply", _square(5000))
    a = get_modality("point_cloud").load(tmp_path / "p.ply", {"num_points": 100})
    b = get_modality("point_cloud").load(tmp_path / "p.ply", {"num_points": 100})
    c = get_modality("point_cloud").load(tmp_path / "p.ply", {"num_points": 100, "seed": 1})
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_obj_surface_sampling(tmp_path):
    # a unit square in z = 0 made of a quad (fan-triangulated) with "v/vt/vn" style indices
    (tmp_path / "sq.obj").write_text("# square\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1 4//1\n")
    x = get_modality("point_cloud").load(tmp_path / "sq.obj", {"num_points": 2000})
    assert x.shape == (2000, 3) and torch.all(x[:, 2].abs() < 1e-6)
    # area-weighted: both triangles (halves of the square) get about half the points
    assert abs((x[:, 0] > x[:, 1]).float().mean().item() - 0.5) < 0.05


def test_npy_point_cloud_and_empty_cloud(tmp_path):
    np.save(tmp_path / "p.npy", np.hstack([_square(20), np.ones((20, 3), np.float32)]))  # xyz + rgb
    assert get_modality("point_cloud").load(tmp_path / "p.npy", {"num_points": 8}).shape == (8, 3)
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3)))
    with pytest.raises(MediaError, match="empty point cloud"):
        get_modality("point_cloud").load(tmp_path / "empty.ply")
