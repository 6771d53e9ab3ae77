"""Real media that nobody here wrote, through the loaders and `modweave data check` (issue 18, item 7).

scikit-image ships sample images, the Middlebury 2014 "motorcycle" stereo pair with its ground-truth
disparity, and an animated GIF; pybullet ships meshes (OBJ). Each test is skipped when its package is
absent; neither is a dependency of modweave. Shapes (default loader settings, S = 224):

| file | on disk | loader output |
|---|---|---|
| skimage astronaut.png / camera.png / logo.png / coffee.png | 512x512 RGB / 512x512 L / 500x500 RGBA / 600x400 RGB | image `[3, S, S]` |
| Middlebury motorcycle disparity (`motorcycle_disp.npz`) | 741x500 float32, 7.3% inf (occluded) | depth `[1, 3, S, S]`; with motorcycle_left.png `[2, 3, S, S]` |
| pybullet duck.obj / duck_vhacd.obj / soccerball.obj | 2108 / 208 / 4526 vertices | point_cloud `[8192, 3]`, all distinct |
| skimage no_time_for_that_tiny.gif | 14x25, 24 frames, 14.3 fps | video `[5, 3, S, S]` |
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence, PngImagePlugin

from modweave.cli import main
from modweave.modalities import get_modality
from modweave.modalities.depth import normalize_depth, read_depth
from modweave.modalities.ply import write_ply
from modweave.modalities.point_cloud import read_obj
from modweave.modalities.video import uniform_indices

MESHES = ("duck", "duck_vhacd", "soccerball")


@pytest.fixture(scope="module")
def skdata() -> Path:
    skimage = pytest.importorskip("skimage")
    return Path(skimage.__file__).parent / "data"


@pytest.fixture(scope="module")
def meshes() -> Path:
    pybullet_data = pytest.importorskip("pybullet_data")
    return Path(pybullet_data.getDataPath())


# ---- images ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, native, mode", [("astronaut", (512, 512), "RGB"), ("camera", (512, 512), "L"),
                                                 ("logo", (500, 500), "RGBA"), ("coffee", (600, 400), "RGB")])
def test_skimage_sample_images(skdata, name, native, mode):
    import skimage.data

    path = skdata / f"{name}.png"
    with Image.open(path) as img:
        assert img.size == native and img.mode == mode
    ref = getattr(skimage.data, name)()  # decoded by scikit-image's own reader
    x = get_modality("image").load(path, {"size": 64})
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    if mode == "L":
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    rgb = ref[..., :3] if ref.ndim == 3 else ref
    assert abs(x.mean().item() - rgb.mean() / 255) < 0.02  # resizing keeps the mean brightness
    if native == (512, 512) and mode == "RGB":  # no resize: exactly scikit-image's pixels
        full = get_modality("image").load(path, {"size": 512})
        assert torch.equal(full, torch.from_numpy(ref).permute(2, 0, 1).float() / 255)


# ---- Middlebury ground-truth disparity as depth --------------------------------------------------
@pytest.fixture(scope="module")
def motorcycle(skdata, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The disparity saved as float32 NPY and as a KITTI-style 16-bit PNG (disp * 256, 0 = invalid)."""
    import skimage.data

    _, _, disp = skimage.data.stereo_motorcycle()
    out = tmp_path_factory.mktemp("middlebury")
    np.save(out / "disp.npy", disp)
    png = np.where(np.isfinite(disp), np.round(disp * 256), 0).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text("depth_scale", str(1 / 256))  # what the loader reads as "metres per unit"
    Image.fromarray(png).save(out / "disp.png", pnginfo=info)
    Image.open(skdata / "motorcycle_left.png").save(out / "left.png")
    return out, disp


def test_middlebury_disparity_npy_and_16bit_png(motorcycle):
    out, disp = motorcycle
    assert disp.shape == (500, 741) and np.isinf(disp).mean() == pytest.approx(0.0735, abs=1e-3)
    with Image.open(out / "disp.png") as img:
        assert img.mode in ("I;16", "I") and img.size == (741, 500)
    raw_npy, raw_png = read_depth(out / "disp.npy"), read_depth(out / "disp.png")
    ok = np.isfinite(disp)
    assert np.array_equal(raw_npy[ok], disp[ok]) and np.all(np.isinf(raw_npy[~ok]))
    assert np.abs(raw_png[ok] - disp[ok]).max() <= 1 / 512 + 1e-6 and np.all(raw_png[~ok] == 0)
    # occluded pixels become 0 whichever file carried them; the rest scale to (0, 1]
    for raw in (raw_npy, raw_png):
        d = normalize_depth(raw, "max")
        assert np.all(d[~ok] == 0) and d[ok].min() > 0.1 and d.max() == pytest.approx(1.0)
    a = get_modality("depth").load(out / "disp.npy", {"size": 64})
    b = get_modality("depth").load(out / "disp.png", {"size": 64})
    assert a.shape == b.shape == (1, 3, 64, 64) and torch.allclose(a, b, atol=1e-3)


def test_middlebury_rgb_depth_pair(motorcycle):
    out, _ = motorcycle
    x = get_modality("depth").load({"depth": out / "disp.png", "rgb": out / "left.png"}, {"size": 64})
    assert x.shape == (2, 3, 64, 64)
    assert torch.equal(x[0], get_modality("image").load(out / "left.png", {"size": 64}))


# ---- pybullet meshes as OBJ and PLY -----------------------------------------------------------------
@pytest.mark.parametrize("name", MESHES)
def test_pybullet_mesh_obj_and_ply_sample_the_same_surface(meshes, tmp_path, name):
    obj = meshes / f"{name}.obj"
    verts, tris = read_obj(obj)
    write_ply(tmp_path / "m.ply", verts, binary=True, faces=tris)
    write_ply(tmp_path / "a.ply", verts, binary=False, faces=tris)
    pc = get_modality("point_cloud")
    ref = pc.load(obj)
    assert ref.shape == (8192, 3) and len(torch.unique(ref, dim=0)) == 8192  # surface samples, not repeated vertices
    assert ref.norm(dim=1).max().item() == pytest.approx(1.0) and ref.mean(0).abs().max() < 1e-5
    for ply in ("m.ply", "a.ply"):
        assert torch.allclose(pc.load(tmp_path / ply), ref, atol=1e-5)


# ---- an animated GIF, and the same clip converted to MP4 ---------------------------------------------
@pytest.fixture(scope="module")
def gif(skdata) -> Path:
    return skdata / "no_time_for_that_tiny.gif"


def test_animated_gif_is_a_video(gif):
    with Image.open(gif) as img:
        frames = [np.asarray(f.convert("RGB"), dtype=np.float32) / 255 for f in ImageSequence.Iterator(img)]
    assert len(frames) == 24 and frames[0].shape == (25, 14, 3)
    x = get_modality("video").load(gif)
    assert x.shape == (5, 3, 224, 224)
    x = get_modality("video").load(gif, {"num_frames": 6, "size": 14})  # frames are 14 wide: only the height resizes
    want = np.stack([frames[i] for i in uniform_indices(24, 6)])  # Pillow's decoding of the same frames
    got = x.permute(0, 2, 3, 1).numpy()
    small = np.stack([np.asarray(Image.fromarray((f * 255).round().astype(np.uint8)).resize((14, 14), Image.Resampling.BICUBIC),
                                 dtype=np.float32) / 255 for f in want])
    assert np.abs(got - small).max() < 1e-6


def _gif_to_mp4(gif: Path, out: Path) -> None:
    """What a user's ffmpeg would do: lossless H.264 at the GIF's rate (4:4:4, so odd sizes are fine)."""
    import av

    with av.open(str(gif)) as src, av.open(str(out), "w", format="mp4") as dst:
        s_in = src.streams.video[0]
        st = dst.add_stream("libx264", rate=s_in.average_rate)
        st.width, st.height, st.pix_fmt = s_in.codec_context.width, s_in.codec_context.height, "yuv444p"
        st.options = {"qp": "0", "preset": "ultrafast"}
        for frame in src.decode(video=0):
            for packet in st.encode(frame.reformat(format="yuv444p")):
                dst.mux(packet)
        for packet in st.encode():
            dst.mux(packet)


def test_gif_converted_to_mp4_loads_the_same_clip(gif, tmp_path):
    _gif_to_mp4(gif, tmp_path / "clip.mp4")
    a = get_modality("video").load(gif, {"num_frames": 8, "size": 32})
    b = get_modality("video").load(tmp_path / "clip.mp4", {"num_frames": 8, "size": 32})
    assert a.shape == b.shape == (8, 3, 32, 32)
    assert (a - b).abs().max() < 0.02  # RGB -> YUV -> RGB rounding only


# ---- all of it through `modweave data check ROOT` ------------------------------------------------------
def test_data_check_on_a_folder_of_real_media(skdata, meshes, motorcycle, gif, tmp_path, capsys):
    import shutil

    root = tmp_path / "real"
    root.mkdir()
    for name in ("astronaut.png", "camera.png", "logo.png", "hubble_deep_field.jpg"):
        shutil.copy(skdata / name, root / name)
    for name in ("disp.npy", "disp.png", "left.png"):
        shutil.copy(motorcycle[0] / name, root / name)
    shutil.copy(meshes / "duck.obj", root / "duck.obj")
    verts, tris = read_obj(meshes / "duck.obj")
    write_ply(root / "duck.ply", verts, faces=tris)
    shutil.copy(gif, root / "clip.gif")
    _gif_to_mp4(gif, root / "clip.mp4")
    media = {"image": ["astronaut.png", "camera.png", "logo.png", "hubble_deep_field.jpg"],
             "depth": ["disp.npy", "disp.png", {"depth": "disp.png", "rgb": "left.png"}],
             "point_cloud": ["duck.obj", "duck.ply"], "video": ["clip.gif", "clip.mp4"]}
    for modality, items in media.items():
        rows = [{"id": f"{modality}{i}", "modality": modality, "media": m, "task": "caption", "prompt": "describe",
                 "answer": "x"} for i, m in enumerate(items)]
        (root / f"{modality}_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["data", "check", str(root)])
    captured = capsys.readouterr()
    assert rc == 0 and captured.err == ""
    assert "4 annotation files, 11 records ok, 0 problems" in captured.out
    for modality, items in media.items():
        assert f"{modality:<12} caption  {len(items)}" in captured.out
