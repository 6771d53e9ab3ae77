"""Run folders: who owns an output folder, so that no command writes over another run's work.

Each folder a command writes into (`train --out`, `demo --out`) holds `modweave-run.json` naming the
kind of run that owns it. A command claims a missing or empty folder, reuses a folder of its own kind,
and refuses anything else with one line: a folder owned by another kind of run, a non-empty folder the
library did not create, or a path that is a file. Folders written before this marker existed are
recognised by their contents (`demo.json` for a demo, `checkpoint/manifest.json` or `progress.json`
for a training run) and adopted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .version import __version__
from .config import ConfigError
from .utils import atomic_write_bytes

OWNER_FILE = "modweave-run.json"
KINDS = ("train", "demo")


def run_kind(folder: Path) -> str | None:
    """The kind of modweave run that owns `folder` (None: none, or not a run folder)."""
    folder = Path(folder)
    marker = folder / OWNER_FILE
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text()).get("kind")
        except (ValueError, AttributeError):
            raise ConfigError(f"{marker}: not a modweave run marker (invalid JSON)") from None
        return kind if kind in KINDS else None
    if (folder / "demo.json").is_file():  # demo folders written before the marker
        return "demo"
    if (folder / "checkpoint" / "manifest.json").is_file() or (folder / "progress.json").is_file():
        return "train"
    return None


def check_run_folder(folder: str | Path, kind: str, option: str = "--out") -> Path:
    """Refuse (ConfigError) a `folder` that a `kind` run may not write into; writes nothing."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind '{kind}' (known: {', '.join(KINDS)})")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder}: is a file, not a folder")
    owner = run_kind(folder) if folder.is_dir() else None
    if owner is not None and owner != kind:
        raise ConfigError(f"{option} {folder}: holds a modweave {owner} run, not a {kind} run: use another {option}")
    if owner is None and folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"{option} {folder}: is not empty and is not a modweave run folder: use an empty "
                          f"or new folder")
    return folder


def claim_run_folder(folder: str | Path, kind: str, option: str = "--out") -> Path:
    """Make `folder` a `kind` run folder (created if missing), or refuse as `check_run_folder` does.
    Never deletes or changes anything already in it; adds only the marker."""
    folder = check_run_folder(folder, kind, option)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OWNER_FILE
    if not marker.exists():
        atomic_write_bytes(marker, json.dumps({"kind": kind, "library": "modweave",
                                               "version": __version__}).encode())
    return folder


def first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first key path (`train.steps`, `stages[1].method`) where two JSON-like values differ, with
    the two values there (`MISSING` where one side lacks the key)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                return where, old.get(key, MISSING), new.get(key, MISSING)
            found = first_difference(old[key], new[key], where)
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        for i, (a, b) in enumerate(zip(old, new)):
            found = first_difference(a, b, f"{prefix}[{i}]")
            if found is not None:
                return found
        if len(old) == len(new):
            return None
        n = min(len(old), len(new))
        return f"{prefix}[{n}]", old[n] if n < len(old) else MISSING, new[n] if n < len(new) else MISSING
    return None if old == new else (prefix or "(the whole config)", old, new)


MISSING = "(missing)"
