"""``data check``: validate every record of an annotation file (or of every one under a data folder)
and open every media file it names."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from ..modalities import MediaError, get_modality
from .formats import resolve_media

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CheckReport:
    """Counts of good records per (modality, task) and one line per problem (``file:line: reason``)."""

    counts: Counter = dataclasses.field(default_factory=Counter)
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> list[str]:
        lines = [f"{m:<12} {t:<8} {n}" for (m, t), n in sorted(self.counts.items())]
        lines.append(f"{sum(self.counts.values())} records ok, {len(self.errors)} problems")
        return lines


def check_file(path: str | Path, root: str | Path | None = None, settings_by_modality: Mapping[str, Any] | None = None, progress: bool = True,
               follow_symlinks: bool = False) -> CheckReport:
    """Read ``path`` (any supported format; a malformed or empty file raises AnnotationError) and load
    every media file, resolved against ``root`` (default: the file's folder) as ``MediaDataset`` does.

    Each media file is opened once even when several records share it.
    """
    from tqdm.auto import tqdm

    from .dataset import read_records

    path = Path(path)
    records = read_records(path)
    root = Path(root) if root is not None else path.parent
    settings = dict(settings_by_modality or {})
    report, seen = CheckReport(), {}
    for r in tqdm(records, desc=f"check {path.name}", unit="rec", disable=not progress or len(records) < 500):
        where = r.source or f"{path}:{r.id}"
        if not r.multi:
            modality = get_modality(r.modality)
            if modality.has_media != (r.media is not None):
                report.errors.append(f"{where}: {r.modality} record {'needs' if modality.has_media else 'must not have'} media")
                continue
        problem = None
        for name, ref in r.media_parts():  # every media of the record, each by its own loader
            key = repr((name, ref))
            if key not in seen:
                try:
                    get_modality(name).load(resolve_media(ref, root, follow_symlinks), settings.get(name))
                    seen[key] = None
                except (MediaError, ValueError) as err:
                    seen[key] = str(err)
            problem = problem or seen[key]
        if problem is not None:
            report.errors.append(f"{where}: {problem}")
            continue
        report.counts[(r.modality, r.task)] += 1
    return report


def annotation_files(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """``(annotation files, skipped .json files)`` under ``folder``, sorted, hidden folders left out.

    Every ``.jsonl`` is an annotation file; a ``.json`` is one when it holds a list (LAVIS, LLaVA) or
    an object with an ``"annotations"`` list, so ``meta.json`` and other objects are skipped.
    """
    folder = Path(folder)
    found, skipped = [], []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.suffix == ".jsonl":
            found.append(p)
        elif p.suffix == ".json":
            (found if _is_annotation_json(p) else skipped).append(p)
    return found, skipped


def _is_annotation_json(path: Path) -> bool:
    import json

    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if not head.startswith(b"{"):
        return True  # a list, or not JSON at all: read_records reports what is wrong with it
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True
    return isinstance(data, dict) and isinstance(data.get("annotations"), list)


def check_folder(folder: str | Path, root: str | Path | None = None, settings_by_modality: Mapping[str, Any] | None = None,
                 progress: bool = True, follow_symlinks: bool = False) -> tuple[dict[Path, CheckReport], list[Path]]:
    """``check_file`` on every annotation file under ``folder`` (see ``annotation_files``).

    Media paths resolve against ``root``, by default ``folder`` itself (the trainer's ``data.root``),
    whichever subfolder a file is in. A file that cannot be read (malformed, empty) gets a report
    holding that one error instead of stopping the check. Returns (reports by file, skipped .json
    files); a folder without annotation files raises AnnotationError.
    """
    from .formats import AnnotationError

    folder = Path(folder)
    files, skipped = annotation_files(folder)
    if not files:
        raise AnnotationError(folder, "no annotation files (.jsonl, or LAVIS / LLaVA .json) under this folder")
    reports = {}
    for f in files:
        try:
            reports[f] = check_file(f, root if root is not None else folder, settings_by_modality, progress, follow_symlinks)
        except AnnotationError as err:
            reports[f] = CheckReport(errors=[str(err)])
    return reports, skipped
