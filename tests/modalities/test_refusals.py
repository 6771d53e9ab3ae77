"""Bad media and loader settings become one-line errors naming the file or key (issue 11, items 6-7).

Each case is checked at the loader and, where a user meets it, through `modweave data check FILE`.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modweave.cli import main
from modweave.config import ModalitySpec
from modweave.data.digits import _write_mp4
from modweave.modalities import MediaError, SettingsError, get_modality, loader_settings_for
from modweave.modalities.base import DEFAULT_MAX_PIXELS


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid 1x1 PNG whose header (IHDR, CRC fixed) declares ``width x height``: a decompression bomb."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    raw = bytearray(buf.getvalue())
    i = raw.index(b"IHDR")
    raw[i + 4 : i + 12] = struct.pack(">II", width, height)
    raw[i + 17 : i + 21] = struct.pack(">I", zlib.crc32(bytes(raw[i : i + 17])))
    path.write_bytes(bytes(raw))
    return path


def one_record(tmp_path: Path, modality: str, media, name: str = "a.jsonl") -> Path:
    path = tmp_path / name
    rec = {"id": "r1", "modality": modality, "media": media, "task": "qa", "prompt": "p", "answer": "a"}
    path.write_text(json.dumps(rec) + "\n")
    return path


def check_cli(capsys, path: Path, *needles: str) -> str:
    """`modweave data check PATH` exits 2 with one `error:` line holding every needle, no traceback."""
    rc = main(["data", "check", str(path)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, captured
    assert len(lines) == 1 and "error: " in lines[0] and "Traceback" not in captured.err, captured.err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# ---- image size limits --------------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["image", "depth"])
def test_decompression_bomb_png_is_one_line(tmp_path, modality):
    bomb = png_declaring(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(MediaError, match=r"bomb\.png: .*too large: 400\.0 Mpx exceeds the limit of 50\.0 Mpx"):
        get_modality(modality).load(bomb)


def test_decompression_bomb_through_data_check(tmp_path, capsys):
    png_declaring(tmp_path / "bomb.png", 20000, 20000)
    check_cli(capsys, one_record(tmp_path, "image", "bomb.png"), "a.jsonl:1:", "bomb.png", "too large", "max_pixels")


def test_100_mpx_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    big = png_declaring(tmp_path / "big.png", 10000, 10000)  # under Pillow's hard limit: it would decode it

    def no_decode(self):  # the refusal must come from the header alone
        raise AssertionError("decoded a 100-Mpx image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(MediaError, match=r"big\.png: image too large: 10000x10000 = 100\.0 Mpx .*max_pixels"):
        get_modality("image").load(big)
    assert DEFAULT_MAX_PIXELS == 50_000_000


def test_max_pixels_setting_per_modality(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "x.png")
    assert get_modality("image").load(tmp_path / "x.png", {"size": 8, "max_pixels": 600}).shape == (3, 8, 8)
    with pytest.raises(MediaError, match=r"x\.png: image too large: 30x20 = 600 px exceeds the limit of 599 px"):
        get_modality("image").load(tmp_path / "x.png", {"size": 8, "max_pixels": 599})
    Image.fromarray(np.zeros((20, 30), np.uint16)).save(tmp_path / "d.png")
    with pytest.raises(MediaError, match="depth image too large"):
        get_modality("depth").load(tmp_path / "d.png", {"max_pixels": 100})
    np.save(tmp_path / "d.npy", np.ones((20, 30), np.float32))
    with pytest.raises(MediaError, match="depth array too large"):
        get_modality("depth").load(tmp_path / "d.npy", {"max_pixels": 100})


def test_video_frame_size_limit(tmp_path):
    _write_mp4(tmp_path / "v.mp4", [np.zeros((16, 16), np.uint8)] * 2, fps=2)
    assert get_modality("video").load(tmp_path / "v.mp4", {"num_frames": 2, "size": 8}).shape == (2, 3, 8, 8)
    with pytest.raises(MediaError, match=r"v\.mp4: video frames too large: 16x16"):
        get_modality("video").load(tmp_path / "v.mp4", {"num_frames": 2, "size": 8, "max_pixels": 255})


# ---- media dicts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["image", "video", "audio", "point_cloud"])
def test_dict_media_on_single_path_modality(tmp_path, capsys, modality):
    path = one_record(tmp_path, modality, {"rgb": "x.png"})
    check_cli(capsys, path, "a.jsonl:1:", f"'media' is a dict, but {modality} media must be one path")
    with pytest.raises(MediaError, match=f"'media' is a dict, but {modality} media must be one path"):
        get_modality(modality).load({"rgb": tmp_path / "x.png"})


def test_depth_media_dict_with_unknown_key(tmp_path, capsys):
    path = one_record(tmp_path, "depth", {"depth": "d.png", "rbg": "x.png"})
    check_cli(capsys, path, "a.jsonl:1:", "unknown depth media key 'rbg' (known: depth, rgb)")


# ---- arrays and PLY headers ----------------------------------------------------------------------
def test_string_typed_point_npy(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.array([["1", "2", "3"]] * 4))
    with pytest.raises(MediaError, match=r"p\.npy: point array must be numeric .*<U1"):
        get_modality("point_cloud").load(tmp_path / "p.npy")
    check_cli(capsys, one_record(tmp_path, "point_cloud", "p.npy"), "a.jsonl:1:", "p.npy", "must be numeric")


def test_string_typed_depth_npy(tmp_path):
    np.save(tmp_path / "d.npy", np.array([["1.5", "2"], ["3", "4"]]))  # numeric strings would convert silently
    with pytest.raises(MediaError, match=r"d\.npy: depth array must be numeric"):
        get_modality("depth").load(tmp_path / "d.npy")


def test_negative_ply_vertex_count(tmp_path, capsys):
    (tmp_path / "n.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex -5\nproperty float x\n"
                                     b"property float y\nproperty float z\nend_header\n1 2 3\n")
    with pytest.raises(MediaError, match=r"n\.ply: negative element count in header line 'element vertex -5'"):
        get_modality("point_cloud").load(tmp_path / "n.ply")
    check_cli(capsys, one_record(tmp_path, "point_cloud", "n.ply"), "a.jsonl:1:", "n.ply", "negative element count")


def test_negative_ply_list_length(tmp_path):
    header = (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
              b"property float z\nelement face 1\nproperty list char int vertex_indices\nend_header\n")
    body = np.eye(3, dtype="<f4").tobytes() + struct.pack("<b", -3) + np.arange(3, dtype="<i4").tobytes()
    (tmp_path / "l.ply").write_bytes(header + body)
    with pytest.raises(MediaError, match=r"l\.ply: negative list length -3 in face element"):
        get_modality("point_cloud").load(tmp_path / "l.ply")


# ---- loader settings and the path spec's num_frames ----------------------------------------------
def test_unknown_or_mistyped_loader_setting():
    with pytest.raises(SettingsError, match="unknown video loader setting 'frames' .*known: num_frames, size"):
        get_modality("video").make_settings({"frames": 3})
    with pytest.raises(SettingsError, match="image loader setting 'size' must be int, got 'big'"):
        get_modality("image").make_settings({"size": "big"})
    assert issubclass(SettingsError, ValueError) and issubclass(SettingsError, TypeError)  # both old catches work


def test_spec_num_frames_reaches_the_video_loader(tmp_path):
    _write_mp4(tmp_path / "v.mp4", [np.full((16, 16), 25 * t, np.uint8) for t in range(8)], fps=4)
    spec = ModalitySpec(name="video", encoder="image", num_frames=2, loader={"size": 8})
    settings = loader_settings_for(spec)
    assert settings == {"size": 8, "num_frames": 2}
    assert get_modality("video").load(tmp_path / "v.mp4", settings).shape == (2, 3, 8, 8)
    # the run's data.loader on top agrees, or is refused naming both values
    assert loader_settings_for(spec, {"num_frames": 2})["num_frames"] == 2
    with pytest.raises(SettingsError, match=r"'video': num_frames 2 on its path spec disagrees with loader setting num_frames=5"):
        loader_settings_for(spec, {"num_frames": 5})


def test_spec_num_frames_beyond_a_fixed_frame_loader_is_an_error():
    with pytest.raises(SettingsError, match=r"'image': num_frames 3 cannot take effect, its loader gives at most 1"):
        loader_settings_for(ModalitySpec(name="image", num_frames=3))
    with pytest.raises(SettingsError, match="'point_cloud': num_frames 2"):
        loader_settings_for(ModalitySpec(name="point_cloud", num_frames=2))
    assert loader_settings_for(ModalitySpec(name="depth", num_frames=2, loader={"size": 8})) == {"size": 8}  # [rgb, depth]
    with pytest.raises(SettingsError, match="num_frames must be a positive integer, got 0"):
        loader_settings_for(ModalitySpec(name="video", num_frames=0))
    # num_frames=None (not given) leaves the loader's own default
    assert loader_settings_for(ModalitySpec(name="video", num_frames=None, loader={"num_frames": 4})) == {"num_frames": 4}
