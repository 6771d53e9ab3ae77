"""``data check``: validate every record of an annotation file and open every media file it names."""

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


def check_file(path: str | Path, root: str | Path | None = None, settings_by_modality: Mapping[str, Any] | None = None, progress: bool = True) -> CheckReport:
    """Read ``path`` (any supported format; a malformed file raises AnnotationError) and load every media.

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
        modality = get_modality(r.modality)
        if modality.has_media != (r.media is not None):
            report.errors.append(f"{where}: {r.modality} record {'needs' if modality.has_media else 'must not have'} media")
            continue
        if r.media is not None:
            key = repr(r.media)
            if key not in seen:
                try:
                    media = resolve_media(r.media, root)
                    modality.load(media, settings.get(r.modality))
                    seen[key] = None
                except (MediaError, ValueError) as err:
                    seen[key] = str(err)
            if seen[key] is not None:
                report.errors.append(f"{where}: {seen[key]}")
                continue
        report.counts[(r.modality, r.task)] += 1
    return report
