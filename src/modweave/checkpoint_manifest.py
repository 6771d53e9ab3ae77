"""Reading a checkpoint manifest safely: its shape, its stage records, where each stage's file lives.

Every problem is a one-line `CheckpointError` naming the manifest and the key: a manifest that is not
an object, without stages, with an unknown or mistyped stage key or config value, a stage without a
file, a file outside the checkpoint folder (`..`, an absolute path, a symlink out), a parent checkpoint
that is missing or no longer holds the stages this one was grown from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "modweave-checkpoint/1"
MAX_PARENTS = 16  # a chain of grown checkpoints deeper than this is taken for a loop


class CheckpointError(RuntimeError):
    """A missing, corrupt or mismatching checkpoint; the message names the file or tensor."""


def read_manifest(save_dir: Path) -> dict[str, Any]:
    """The manifest of `save_dir`, checked: an object in this format with a non-empty stage list."""
    path = Path(save_dir) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {save_dir}: {MANIFEST} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt manifest ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a modweave checkpoint (the manifest is a JSON {type(data).__name__}, "
                              "not an object)")
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a modweave checkpoint (format {data.get('format')!r})")
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise CheckpointError(f"{path}: manifest key 'stages' must be a non-empty list of stage records "
                              f"(got {stages!r:.40}); a checkpoint holds at least its base stage")
    if not isinstance(data.get("config"), dict):
        raise CheckpointError(f"{path}: manifest key 'config' must be an object (the model's config)")
    for key, kind in (("parent", dict), ("external", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise CheckpointError(f"{path}: manifest key '{key}' must be an object")
    return data


def stage_records(data: dict[str, Any], path: Path) -> list[Any]:
    """The manifest's stages as `StageRecord`s; an unknown key or a mistyped value names `stages[i].key`."""
    from .config import from_dict
    from .stages import StageRecord

    records = []
    for i, raw in enumerate(data["stages"]):
        try:
            rec = from_dict(StageRecord, raw, f"stages[{i}]")
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: {str(err).replace('config key', 'manifest key')}") from None
        for key in ("name", "method", "phase"):
            if not isinstance(getattr(rec, key), str):
                raise CheckpointError(f"{path}: manifest key 'stages[{i}].{key}' must be a string")
        for key in ("file", "sha256", "modality"):
            if getattr(rec, key) is not None and not isinstance(getattr(rec, key), str):
                raise CheckpointError(f"{path}: manifest key 'stages[{i}].{key}' must be a string or null")
        for key in ("settings", "state"):
            if not isinstance(getattr(rec, key), dict):
                raise CheckpointError(f"{path}: manifest key 'stages[{i}].{key}' must be an object")
        if i > 0 and not (rec.modality and isinstance(rec.spec, dict)):
            raise CheckpointError(f"{path}: manifest key 'stages[{i}]' ('{rec.name}') needs a modality and its spec")
        records.append(rec)
    if records[0].modality is not None:
        raise CheckpointError(f"{path}: manifest key 'stages[0]' must be the base stage (modality null)")
    return records


def model_config(data: dict[str, Any], path: Path) -> Any:
    from .config import ModelConfig, from_dict

    try:
        return from_dict(ModelConfig, data["config"], "config")
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: {err}") from None


def contained(folder: Path, name: str, manifest: Path, stage: str) -> Path:
    """`folder / name`, refused unless it stays inside `folder` (no `..`, absolute path or symlink out)."""
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not name.strip():
        raise CheckpointError(f"{manifest}: stage '{stage}' file {name!r} is not a plain name inside the checkpoint "
                              "folder (absolute paths and '..' are refused)")
    path = folder / rel
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        raise CheckpointError(f"{manifest}: stage '{stage}' file {path} is a link leading outside the checkpoint "
                              "folder (refused)") from None
    return path


def parent_dir(save_dir: Path, parent: dict[str, Any]) -> Path:
    raw = parent.get("path")
    if not isinstance(raw, str) or not raw:
        raise CheckpointError(f"{save_dir / MANIFEST}: manifest key 'parent.path' must be a path")
    path = Path(raw)
    return path if path.is_absolute() else (save_dir / path)


def _same_stage(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("name", "modality", "method", "phase", "file", "sha256"))


def stage_folders(save_dir: Path, data: dict[str, Any], depth: int = 0) -> list[Path]:
    """For each stage of the manifest `data` of `save_dir`, the folder its file lives in: a grown
    checkpoint's first `parent.stages` stages live in its parent (recursively)."""
    path = save_dir / MANIFEST
    parent = data.get("parent")
    n_stages = len(data["stages"])
    if not parent:
        return [save_dir] * n_stages
    if depth >= MAX_PARENTS:
        raise CheckpointError(f"{path}: more than {MAX_PARENTS} parent checkpoints (a loop?)")
    n = parent.get("stages")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= n_stages:
        raise CheckpointError(f"{path}: manifest key 'parent.stages' must be a count from 1 to {n_stages}")
    pdir = parent_dir(save_dir, parent)
    try:
        pdata = read_manifest(pdir)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: its parent checkpoint cannot be read: {err}") from None
    theirs = pdata["stages"]
    if len(theirs) < n or not all(_same_stage(a, b) for a, b in zip(theirs[:n], data["stages"][:n])):
        bad = next((i for i in range(n) if i >= len(theirs) or not _same_stage(theirs[i], data["stages"][i])), n)
        raise CheckpointError(f"{path}: the parent checkpoint {pdir} no longer holds stage {bad} "
                              f"('{data['stages'][bad]['name']}') as this checkpoint was grown from")
    return stage_folders(pdir, pdata, depth + 1)[:n] + [save_dir] * (n_stages - n)
