"""PLY meshes: faces read in every encoding and sampled over the surface exactly like the same OBJ."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modweave.modalities import MediaError, get_modality
from modweave.modalities.ply import PlyError, read_ply, triangulate, write_ply

# a unit square (two triangles) and a 1 x 3 strip beside it as one quad: the quad holds 3/4 of the area
VERTS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [5, 0, 0], [5, 1, 0], [2, 1, 0]], np.float32)
POLYS = [np.array([0, 1, 2]), np.array([0, 2, 3]), np.array([4, 5, 6, 7])]
OBJ = "".join(f"v {x} {y} {z}\n" for x, y, z in VERTS) + "f 1 2 3\nf 1 3 4\nf 5 6 7 8\n"


def _mixed_ply(binary_endian: str | None, list_name: str = "vertex_indices") -> bytes:
    """Triangles and a quad in one face element (so no fixed row layout), with an extra face property."""
    fmt = "ascii" if binary_endian is None else ("binary_little_endian" if binary_endian == "<" else "binary_big_endian")
    header = (f"ply\nformat {fmt} 1.0\nelement vertex {len(VERTS)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"property float nx\nelement face {len(POLYS)}\nproperty uchar flags\nproperty list uchar int {list_name}\n"
              "end_header\n").encode()
    if binary_endian is None:
        body = "".join(f"{x} {y} {z} 0.5\n" for x, y, z in VERTS) + "".join(f"9 {len(p)} {' '.join(map(str, p))}\n" for p in POLYS)
        return header + body.encode()
    e = binary_endian
    rows = np.zeros(len(VERTS), dtype=[("x", e + "f4"), ("y", e + "f4"), ("z", e + "f4"), ("nx", e + "f4")])
    rows["x"], rows["y"], rows["z"] = VERTS.T
    faces = b"".join(bytes([9, len(p)]) + p.astype(e + "i4").tobytes() for p in POLYS)
    return header + rows.tobytes() + faces


@pytest.mark.parametrize("endian", [None, "<", ">"], ids=["ascii", "le", "be"])
def test_mixed_polygons_read_in_file_order(tmp_path, endian):
    (tmp_path / "m.ply").write_bytes(_mixed_ply(endian))
    verts, tris = read_ply(tmp_path / "m.ply")
    assert np.array_equal(verts, VERTS)
    assert tris.tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]  # the quad fanned, as OBJ does


def test_ply_mesh_sampled_like_the_same_obj(tmp_path):
    (tmp_path / "m.obj").write_text(OBJ)
    (tmp_path / "m.ply").write_bytes(_mixed_ply(">", list_name="vertex_index"))
    pc = get_modality("point_cloud")
    a, b = pc.load(tmp_path / "m.ply", {"num_points": 4000}), pc.load(tmp_path / "m.obj", {"num_points": 4000})
    assert torch.allclose(a, b, atol=1e-6)  # one sampler, same triangles, same seed
    # area-weighted over the surface, not the 8 corners repeated
    assert len(torch.unique(a, dim=0)) == 4000
    raw = read_ply(tmp_path / "m.ply")
    from modweave.modalities.point_cloud import sample_surface

    pts = sample_surface(*raw, 4000, np.random.default_rng(0))
    assert abs((pts[:, 0] >= 2).mean() - 0.75) < 0.03 and np.all(pts[:, 2] == 0)


@pytest.mark.parametrize("binary", [True, False])
def test_write_ply_with_faces_round_trip(tmp_path, binary):
    tris = triangulate(POLYS)
    write_ply(tmp_path / "w.ply", VERTS, binary=binary, faces=tris)
    verts, back = read_ply(tmp_path / "w.ply")
    assert np.array_equal(verts, VERTS) and np.array_equal(back, tris)


def test_point_ply_without_faces_keeps_its_points(tmp_path):
    write_ply(tmp_path / "p.ply", VERTS)
    assert read_ply(tmp_path / "p.ply")[1] is None
    x = get_modality("point_cloud").load(tmp_path / "p.ply", {"num_points": 16})
    assert len(torch.unique(x, dim=0)) == len(VERTS)  # every point kept once, then repeats


def test_face_element_without_faces_or_area_falls_back_to_vertices(tmp_path):
    write_ply(tmp_path / "z.ply", VERTS, faces=np.zeros((0, 3), np.int64))
    assert read_ply(tmp_path / "z.ply")[1].shape == (0, 3)
    write_ply(tmp_path / "flat.ply", VERTS, faces=np.array([[0, 0, 1]]))  # zero area
    for name in ("z.ply", "flat.ply"):
        x = get_modality("point_cloud").load(tmp_path / name, {"num_points": 16})
        assert len(torch.unique(x, dim=0)) == len(VERTS)


@pytest.mark.parametrize("binary", [True, False])
def test_face_index_out_of_range(tmp_path, binary):
    write_ply(tmp_path / "bad.ply", VERTS, binary=binary, faces=np.array([[0, 1, 8]]))
    with pytest.raises(MediaError, match=r"bad\.ply: face refers to a missing vertex \(index 8, 8 vertices\)"):
        get_modality("point_cloud").load(tmp_path / "bad.ply")


def test_truncated_faces(tmp_path):
    write_ply(tmp_path / "t.ply", VERTS, faces=triangulate(POLYS))
    raw = (tmp_path / "t.ply").read_bytes()
    (tmp_path / "t.ply").write_bytes(raw[:-5])
    with pytest.raises(PlyError, match="truncated face element"):
        read_ply(tmp_path / "t.ply")
    write_ply(tmp_path / "a.ply", VERTS, binary=False, faces=triangulate(POLYS))
    (tmp_path / "a.ply").write_text((tmp_path / "a.ply").read_text().rsplit("\n", 2)[0] + "\n")
    with pytest.raises(PlyError, match="truncated: 3 of 4 face rows"):
        read_ply(tmp_path / "a.ply")
