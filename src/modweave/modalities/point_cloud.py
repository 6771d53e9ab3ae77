"""Point cloud: PLY (ASCII / binary), OBJ or NPY -> ``[num_points, 3]`` in the unit sphere.

Meshes (OBJ, PLY with faces) are sampled over their surface, area-weighted and seeded; point files
(PLY without faces, NPY) give their own points, resampled to ``num_points``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from .base import MediaError, Modality, ModalitySettings, register_modality
from .ply import PlyError, read_ply, triangulate

PC_EXTENSIONS = (".ply", ".obj", ".npy")


@dataclasses.dataclass
class PointCloudSettings(ModalitySettings):
    num_points: int = 8192  # Point-BERT / ULIP input size used by the paper-scale encoders
    seed: int = 0  # the sampling generator is re-seeded per file, so a file always gives the same points


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(vertices [N, 3] float64, triangles [M, 3] int64 or None)`` of an OBJ (faces fan-triangulated)."""
    verts: list[list[float]] = []
    polygons: list[np.ndarray] = []
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, OSError) as err:
        raise MediaError(path, f"cannot read OBJ ({err})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "v":
                verts.append([float(x) for x in parts[1:4]])
                if len(verts[-1]) != 3:
                    raise ValueError("vertex needs 3 coordinates")
            elif parts[0] == "f":
                # "f 1/2/3 4//6 -1": the vertex index is the first field; negatives count from the end
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                polygons.append(np.array([i - 1 if i > 0 else len(verts) + i for i in idx], np.int64))
        except ValueError as err:
            raise MediaError(path, f"bad OBJ line {lineno} ({err})") from None
    v = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    if not polygons:
        return v, None
    t = triangulate(polygons)
    if len(t) and (t.min() < 0 or t.max() >= len(v)):
        raise MediaError(path, "OBJ face refers to a missing vertex")
    return v, t


def sample_surface(verts: np.ndarray, tris: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform sample of ``n`` points ``[n, 3]`` on triangles ``[M, 3]`` of ``verts [N, 3]``.

    The one sampler of every mesh format (OBJ, PLY with faces). Without faces, or when all of them
    have zero area, the vertices themselves are returned.
    """
    v = np.asarray(verts, dtype=np.float64)
    if tris is None or len(tris) == 0:
        return v
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    area = np.where(np.isfinite(area), area, 0.0)  # a face on a non-finite vertex gets no samples
    if area.sum() <= 0:
        return v
    pick = rng.choice(len(tris), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random((n, 1))), rng.random((n, 1))  # sqrt makes the barycentric sample uniform
    return (1 - r1) * a[pick] + r1 * (1 - r2) * b[pick] + r1 * r2 * c[pick]


def read_points(path: Path, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw ``[M, 3]`` points of a PLY / OBJ / NPY file (M may differ from ``n``).

    Meshes (OBJ, or PLY with a face element) are sampled over their surface with ``sample_surface``;
    point files give their points.
    """
    suffix = path.suffix.lower()
    if suffix in (".ply", ".obj"):
        if suffix == ".ply":
            try:
                verts, tris = read_ply(path)
            except PlyError as err:
                raise MediaError(path, str(err)) from None
        else:
            verts, tris = read_obj(path)
        return sample_surface(verts, tris, n, rng)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise MediaError(path, f"cannot read point array ({err})") from None
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf":  # strings, bools, complex, records: not coordinates
        raise MediaError(path, f"point array must be numeric (int or float), got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise MediaError(path, f"point array must be [N, >=3], got shape {tuple(arr.shape)}")
    return arr[:, :3]


def normalize_points(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Resample to exactly ``n`` points (with replacement only when fewer), centre, scale to the unit sphere."""
    m = len(points)
    if m >= n:
        idx = rng.choice(m, size=n, replace=False)
    else:  # keep every point once, then repeat random ones
        idx = np.concatenate([np.arange(m), rng.choice(m, size=n - m, replace=True)])
    p = points[idx].astype(np.float64)
    p -= p.mean(axis=0)
    radius = np.linalg.norm(p, axis=1).max()
    if radius > 0:
        p /= radius
    return p.astype(np.float32)


@register_modality("point_cloud")
class PointCloudModality(Modality):
    """Returns ``[num_points, 3]`` float32 xyz, centred, max radius 1."""

    extensions = PC_EXTENSIONS
    settings_cls = PointCloudSettings
    max_frames = 1

    def _load(self, path: Path, settings: PointCloudSettings) -> torch.Tensor:
        path = self.check_path(path)
        rng = np.random.default_rng(settings.seed)
        points = read_points(path, settings.num_points, rng)
        points = points[np.isfinite(points).all(axis=1)] if len(points) else points
        if len(points) == 0:
            raise MediaError(path, "empty point cloud (no finite points)")
        return torch.from_numpy(normalize_points(points, settings.num_points, rng))
