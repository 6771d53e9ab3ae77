"""Point cloud: PLY (ASCII / binary), OBJ (surface-sampled) or NPY -> ``[num_points, 3]`` in the unit sphere."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from .base import MediaError, Modality, ModalitySettings, register_modality
from .ply import PlyError, read_ply_vertices

PC_EXTENSIONS = (".ply", ".obj", ".npy")


@dataclasses.dataclass
class PointCloudSettings(ModalitySettings):
    num_points: int = 8192  # Point-BERT / ULIP input size used by the paper-scale encoders
    seed: int = 0  # the sampling generator is re-seeded per file, so a file always gives the same points


def read_obj(path: Path, n: int, rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform sample of ``n`` points on an OBJ's triangles (faces fan-triangulated).

    An OBJ without faces is read as its vertices.
    """
    verts: list[list[float]] = []
    tris: list[tuple[int, int, int]] = []
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
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                tris.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))
        except ValueError as err:
            raise MediaError(path, f"bad OBJ line {lineno} ({err})") from None
    v = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    if not tris:
        return v
    t = np.asarray(tris, dtype=np.int64)
    if t.min() < 0 or t.max() >= len(v):
        raise MediaError(path, "OBJ face refers to a missing vertex")
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if area.sum() <= 0:
        return v
    pick = rng.choice(len(t), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random((n, 1))), rng.random((n, 1))  # sqrt makes the barycentric sample uniform
    return (1 - r1) * a[pick] + r1 * (1 - r2) * b[pick] + r1 * r2 * c[pick]


def read_points(path: Path, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw ``[M, 3]`` points of a PLY / OBJ / NPY file (M may differ from ``n``)."""
    suffix = path.suffix.lower()
    if suffix == ".ply":
        try:
            return read_ply_vertices(path)
        except PlyError as err:
            raise MediaError(path, str(err)) from None
    if suffix == ".obj":
        return read_obj(path, n, rng)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise MediaError(path, f"cannot read point array ({err})") from None
    arr = np.asarray(arr)
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

    def _load(self, path: Path, settings: PointCloudSettings) -> torch.Tensor:
        path = self.check_path(path)
        rng = np.random.default_rng(settings.seed)
        points = read_points(path, settings.num_points, rng)
        points = points[np.isfinite(points).all(axis=1)] if len(points) else points
        if len(points) == 0:
            raise MediaError(path, "empty point cloud (no finite points)")
        return torch.from_numpy(normalize_points(points, settings.num_points, rng))
