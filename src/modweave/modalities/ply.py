"""A small PLY reader / writer for point clouds and meshes (ASCII, binary little- and big-endian).

``read_ply`` gives the ``vertex`` element's x, y, z and, when the file has a ``face`` element, its
polygons fan-triangulated; other elements and properties are skipped. Kept by hand because the
format is small and no light, maintained PyPI reader is installed here.
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
_FACE_LISTS = ("vertex_indices", "vertex_index")  # both spellings are in the wild

Element = tuple[str, int, list[tuple]]  # (name, count, [(prop, dtype) | (prop, count_dtype, item_dtype)])


class PlyError(ValueError):
    """Malformed, truncated or unsupported PLY (message is one line, without the path)."""


def _parse_header(raw: bytes) -> tuple[str, list[Element], int]:
    """Return (format, elements, data offset)."""
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
        if elements and elements[-1][1] < 0:
            raise PlyError(f"negative element count in header line {line.strip()!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise PlyError(f"unsupported PLY format {fmt!r}")
    return fmt, elements, offset


def _xyz(table: dict[str, np.ndarray], n: int) -> np.ndarray:
    if not all(k in table for k in "xyz"):
        raise PlyError("vertex element lacks x, y, z properties")
    return np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float32).reshape(n, 3)


def _face_list(props: list[tuple]) -> str:
    lists = [p[0] for p in props if len(p) == 3]
    if not lists:
        raise PlyError("face element has no vertex index list")
    return next((name for name in lists if name in _FACE_LISTS), lists[0])


def _fan(p: np.ndarray) -> np.ndarray:
    """Polygons ``[M, k]`` (k >= 3 corners each) -> their fan triangles ``[M * (k - 2), 3]``."""
    first = np.repeat(p[:, :1], p.shape[1] - 2, axis=1)
    return np.stack([first, p[:, 1:-1], p[:, 2:]], axis=-1).reshape(-1, 3)


def triangulate(polygons: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Polygons (an ``[M, k]`` array, or a list of index arrays) -> triangles ``[T, 3]`` int64.

    Fan triangulation in file order (what OBJ faces get too); polygons with fewer than 3 corners
    are dropped.
    """
    if isinstance(polygons, np.ndarray):
        return _fan(polygons.astype(np.int64)) if polygons.ndim == 2 and polygons.shape[1] >= 3 else np.zeros((0, 3), np.int64)
    by_size: dict[int, list[int]] = {}
    for i, p in enumerate(polygons):
        if len(p) >= 3:
            by_size.setdefault(len(p), []).append(i)
    if not by_size:
        return np.zeros((0, 3), np.int64)
    tris, order = [], []
    for k, idx in by_size.items():  # one vectorised fan per corner count, then back to file order
        tris.append(_fan(np.stack([polygons[i] for i in idx]).astype(np.int64)))
        order.append(np.repeat(np.asarray(idx), k - 2))
    return np.concatenate(tris)[np.argsort(np.concatenate(order), kind="stable")]


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(vertices [N, 3] float32, triangles [M, 3] int64 or None)``; None when the file has no faces.

    Raises PlyError on a malformed file or a face that refers to a missing vertex.
    """
    raw = Path(path).read_bytes()
    fmt, elements, offset = _parse_header(raw)
    reader = _read_ascii if fmt == "ascii" else _read_binary
    verts, faces = reader(raw, offset, elements, "<" if fmt == "binary_little_endian" else ">")
    if verts is None:
        raise PlyError("no vertex element")
    if faces is None:
        return verts, None
    tris = triangulate(faces)
    if len(tris) and (tris.min() < 0 or tris.max() >= len(verts)):
        raise PlyError(f"face refers to a missing vertex (index {int(tris.max() if tris.max() >= len(verts) else tris.min())}, "
                       f"{len(verts)} vertices)")
    return verts, tris


def read_ply_vertices(path: Path) -> np.ndarray:
    """Vertex positions ``[N, 3]`` float32 of a PLY file (N may be 0)."""
    return read_ply(path)[0]


def _read_ascii(raw: bytes, offset: int, elements: list[Element], _endian: str):
    rows = raw[offset:].decode("ascii", errors="replace").splitlines()
    pos, verts, faces = 0, None, None
    for name, count, props in elements:
        chunk = rows[pos : pos + count]
        pos += count
        if name == "vertex":
            if any(len(p) == 3 for p in props):
                raise PlyError("list properties on vertices are not supported")
            if len(chunk) < count:
                raise PlyError(f"truncated: {len(chunk)} of {count} vertex rows")
            try:
                data = np.array([r.split()[: len(props)] for r in chunk], dtype=np.float64).reshape(count, len(props))
            except ValueError:
                raise PlyError("non-numeric or short vertex row") from None
            verts = _xyz({p[0]: data[:, i] for i, p in enumerate(props)}, count)
        elif name == "face":
            if len(chunk) < count:
                raise PlyError(f"truncated: {len(chunk)} of {count} face rows")
            want, faces = _face_list(props), []
            for row in chunk:
                tokens, i = row.split(), 0
                try:
                    for p in props:
                        if len(p) == 2:
                            i += 1
                            continue
                        k = int(tokens[i])
                        if k < 0:
                            raise PlyError(f"negative list length in face row {row.strip()!r}")
                        if p[0] == want:
                            faces.append(np.array([int(t) for t in tokens[i + 1 : i + 1 + k]], np.int64))
                            if len(faces[-1]) != k:
                                raise IndexError
                        i += 1 + k
                except (IndexError, ValueError) as err:
                    if isinstance(err, PlyError):
                        raise
                    raise PlyError(f"non-numeric or short face row {row.strip()!r}") from None
    return verts, faces


def _read_binary(raw: bytes, offset: int, elements: list[Element], endian: str):
    verts, faces = None, None
    for name, count, props in elements:
        if any(len(p) == 3 for p in props):
            if name == "vertex":
                raise PlyError("list properties on vertices are not supported")
            lists, offset = _read_list_rows(raw, offset, count, props, endian, name)
            if name == "face":
                faces = lists[_face_list(props)]
            continue
        dtype = np.dtype([(p[0], endian + p[1]) for p in props])
        need = dtype.itemsize * count
        if name == "vertex":
            if len(raw) - offset < need:
                raise PlyError(f"truncated: {(len(raw) - offset) // max(dtype.itemsize, 1)} of {count} vertices")
            data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
            verts = _xyz({p[0]: data[p[0]] for p in props}, count)
        offset += need
    return verts, faces


def _read_list_rows(raw: bytes, offset: int, count: int, props: list[tuple], endian: str, name: str):
    """Rows holding list properties: ``({list prop: [count, k] array or [arrays]}, offset after the element)``.

    Most meshes give every face the same corner count, so the first row's counts are tried as a fixed
    record layout for the whole element (one numpy read); otherwise the rows are walked one by one.
    """
    def layout(counts: list[int]) -> np.dtype:
        fields, it = [], iter(counts)
        for p in props:
            if len(p) == 2:
                fields.append((p[0], endian + p[1]))
            else:
                fields += [(p[0] + "#n", endian + p[1]), (p[0], endian + p[2], (next(it),))]
        return np.dtype(fields)

    if count == 0:
        return {p[0]: [] for p in props if len(p) == 3}, offset
    first = _walk_row(raw, offset, props, endian, name)[1]
    fixed = layout(first)
    if len(raw) - offset >= fixed.itemsize * count:
        data = np.frombuffer(raw, dtype=fixed, count=count, offset=offset)
        if all((data[p[0] + "#n"] == k).all() for p, k in zip([p for p in props if len(p) == 3], first)):
            lists = {p[0]: data[p[0]].astype(np.int64).reshape(count, -1) for p in props if len(p) == 3}
            return lists, offset + fixed.itemsize * count
    lists = {p[0]: [] for p in props if len(p) == 3}
    for _ in range(count):
        row, _counts, offset = _walk_row(raw, offset, props, endian, name)
        for k, v in row.items():
            lists[k].append(v)
    return lists, offset


def _walk_row(raw: bytes, offset: int, props: list[tuple], endian: str, name: str):
    """One binary row: ``({list prop: int64 array}, [list lengths], offset after the row)``."""
    row, counts = {}, []
    for p in props:
        if len(p) == 2:
            offset += np.dtype(p[1]).itemsize
            continue
        cdt, idt = np.dtype(endian + p[1]), np.dtype(endian + p[2])
        if offset + cdt.itemsize > len(raw):
            raise PlyError(f"truncated {name} element")
        n = int(np.frombuffer(raw, dtype=cdt, count=1, offset=offset)[0])
        if n < 0:
            raise PlyError(f"negative list length {n} in {name} element")
        offset += cdt.itemsize
        if offset + n * idt.itemsize > len(raw):
            raise PlyError(f"truncated {name} element")
        row[p[0]] = np.frombuffer(raw, dtype=idt, count=n, offset=offset).astype(np.int64)
        counts.append(n)
        offset += n * idt.itemsize
    return row, counts, offset


def write_ply(path: Path, points: np.ndarray, binary: bool = True, faces: np.ndarray | None = None) -> None:
    """Write ``[N, 3]`` points (and optional ``[M, 3]`` triangles) as a PLY (binary LE float32, or ASCII)."""
    pts = np.asarray(points, dtype="<f4").reshape(-1, 3)
    tris = None if faces is None else np.asarray(faces, dtype="<i4").reshape(-1, 3)
    fmt = "binary_little_endian" if binary else "ascii"
    header = f"ply\nformat {fmt} 1.0\nelement vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\n"
    if tris is not None:
        header += f"element face {len(tris)}\nproperty list uchar int vertex_indices\n"
    with open(path, "wb") as f:
        f.write((header + "end_header\n").encode("ascii"))
        if binary:
            f.write(pts.tobytes())
            if tris is not None:
                rows = np.zeros(len(tris), dtype=[("n", "u1"), ("i", "<i4", (3,))])
                rows["n"], rows["i"] = 3, tris
                f.write(rows.tobytes())
        else:
            np.savetxt(f, pts, fmt="%.6f")
            if tris is not None:
                np.savetxt(f, np.hstack([np.full((len(tris), 1), 3), tris]), fmt="%d")
