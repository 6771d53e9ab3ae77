"""A small PLY reader / writer for point clouds (ASCII, binary little- and big-endian).

Only the ``vertex`` element's x, y, z are read; other elements (faces ...) are skipped. Kept by hand
because the format is small and no light, maintained PyPI reader is installed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


class PlyError(ValueError):
    """Malformed, truncated or unsupported PLY (message is one line, without the path)."""


def _parse_header(raw: bytes) -> tuple[str, list[tuple[str, int, list[tuple]]], int]:
    """Return (format, [(element, count, [(prop, dtype) | (prop, count_dtype, item_dtype)])], data offset)."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise PlyError("not a PLY file (missing 'ply' magic or 'end_header')")
    nl = raw.find(b"\n", end)
    offset = len(raw) if nl < 0 else nl + 1
    fmt, elements = "", []
    for line in raw[:end].decode("ascii", errors="replace").splitlines()[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        try:
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                elements.append((parts[1], int(parts[2]), []))
            elif parts[0] == "property" and parts[1] == "list":
                elements[-1][2].append((parts[4], _TYPES[parts[2]], _TYPES[parts[3]]))
            elif parts[0] == "property":
                elements[-1][2].append((parts[2], _TYPES[parts[1]]))
        except (IndexError, KeyError, ValueError):
            raise PlyError(f"bad PLY header line {line.strip()!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise PlyError(f"unsupported PLY format {fmt!r}")
    return fmt, elements, offset


def _xyz(table: dict[str, np.ndarray], n: int) -> np.ndarray:
    if not all(k in table for k in "xyz"):
        raise PlyError("vertex element lacks x, y, z properties")
    return np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float32).reshape(n, 3)


def read_ply_vertices(path: Path) -> np.ndarray:
    """Vertex positions ``[N, 3]`` float32 of a PLY file (N may be 0)."""
    raw = Path(path).read_bytes()
    fmt, elements, offset = _parse_header(raw)
    if fmt == "ascii":
        rows = raw[offset:].decode("ascii", errors="replace").splitlines()
        pos = 0
        for name, count, props in elements:
            if name == "vertex":
                if any(len(p) == 3 for p in props):
                    raise PlyError("list properties on vertices are not supported")
                chunk = rows[pos : pos + count]
                if len(chunk) < count:
                    raise PlyError(f"truncated: {len(chunk)} of {count} vertex rows")
                try:
                    data = np.array([r.split()[: len(props)] for r in chunk], dtype=np.float64).reshape(count, len(props))
                except ValueError:
                    raise PlyError("non-numeric or short vertex row") from None
                return _xyz({p[0]: data[:, i] for i, p in enumerate(props)}, count)
            pos += count
        raise PlyError("no vertex element")
    endian = "<" if fmt == "binary_little_endian" else ">"
    for name, count, props in elements:
        if any(len(p) == 3 for p in props):
            if name == "vertex":
                raise PlyError("list properties on vertices are not supported")
            offset = _skip_list_element(raw, offset, count, props, endian)
            continue
        dtype = np.dtype([(p[0], endian + p[1]) for p in props])
        need = dtype.itemsize * count
        if name == "vertex":
            if len(raw) - offset < need:
                raise PlyError(f"truncated: {(len(raw) - offset) // max(dtype.itemsize, 1)} of {count} vertices")
            data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
            return _xyz({p[0]: data[p[0]] for p in props}, count)
        offset += need
    raise PlyError("no vertex element")


def _skip_list_element(raw: bytes, offset: int, count: int, props: list[tuple], endian: str) -> int:
    """Walk past ``count`` binary rows holding list properties (rare before the vertices)."""
    for _ in range(count):
        for p in props:
            if len(p) == 2:
                offset += np.dtype(p[1]).itemsize
                continue
            cdt = np.dtype(endian + p[1])
            if offset + cdt.itemsize > len(raw):
                raise PlyError("truncated list element")
            n = int(np.frombuffer(raw, dtype=cdt, count=1, offset=offset)[0])
            offset += cdt.itemsize + n * np.dtype(p[2]).itemsize
    return offset


def write_ply(path: Path, points: np.ndarray, binary: bool = True) -> None:
    """Write ``[N, 3]`` points as a PLY (binary little-endian float32, or ASCII)."""
    pts = np.asarray(points, dtype="<f4").reshape(-1, 3)
    fmt = "binary_little_endian" if binary else "ascii"
    header = f"ply\nformat {fmt} 1.0\nelement vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        if binary:
            f.write(pts.tobytes())
        else:
            np.savetxt(f, pts, fmt="%.6f")
