"""A torch Dataset over annotation records, loading media with the registered modality loaders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch.utils.data import Dataset

from ..modalities import get_modality
from .formats import AnnotationError, Record, read_jsonl, read_lavis, read_llava, resolve_media


def read_records(path: str | Path, modality: str | None = None, allow_empty: bool = False) -> list[Record]:
    """Read annotations, dispatching on format: ``.jsonl`` (the library's records), or a ``.json`` list
    in LLaVA conversation style (items with ``"conversations"``) or LAVIS style (everything else).

    A file with no records (empty, blank lines only, ``[]``) is an AnnotationError unless
    ``allow_empty``: scoring or checking nothing would look like success.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "annotation file not found")
    if path.suffix == ".jsonl":
        records = read_jsonl(path)
    elif path.suffix != ".json":
        raise AnnotationError(path, f"unknown annotation format {path.suffix or '(none)'!r} (expected .jsonl or .json)")
    else:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096)
        records = read_llava(path, modality or "image") if '"conversations"' in head else read_lavis(path, modality)
    if not records and not allow_empty:
        raise AnnotationError(path, "no records (the annotation file is empty)")
    return records


class MediaDataset(Dataset):
    """Items ``{"id", "modality", "media", "media_modalities", "task", "prompt", "answer", "candidates"}``.

    ``media`` is the loader's float32 tensor (shapes in ``modweave.modalities``), None for text, or for
    a multi-media record a list of tensors, one per media, whose modalities ``media_modalities`` lists
    (``[]`` for text, ``[modality]`` for one media); ``modality`` is then the record's label (``image+audio``);
    ``candidates`` is a list (empty when the record has none). Media paths resolve against ``root``
    and may not escape it, not even through a symlink unless ``follow_symlinks`` (see ``resolve_media``).
    ``settings_by_modality`` maps a modality to its settings (instance or dict).
    """

    def __init__(self, records: Sequence[Record | Mapping[str, Any]], root: str | Path, settings_by_modality: Mapping[str, Any] | None = None,
                 media_cache: dict | None = None, follow_symlinks: bool = False):
        self.records = [r if isinstance(r, Record) else Record(**{k: v for k, v in r.items() if k in Record.__dataclass_fields__}) for r in records]
        self.root = Path(root)
        settings_by_modality = dict(settings_by_modality or {})
        used = {m for r in self.records for m in (r.media_modalities if r.multi else [r.modality])}
        self.settings = {m: get_modality(m).make_settings(settings_by_modality.get(m)) for m in used | set(settings_by_modality)}
        # several records often share one file (a question each about the same clip): load it once
        self.media_cache = media_cache
        self.follow_symlinks = follow_symlinks

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, r: Record, modality_name: str, ref: Any) -> Any:
        """One media of record `r`: resolved inside the root, loaded by its modality (cached by file)."""
        modality = get_modality(modality_name)
        try:
            path = resolve_media(ref, self.root, self.follow_symlinks)
        except ValueError as err:
            raise AnnotationError(r.source or r.id, str(err)) from None
        key = (modality_name, str(path), repr(self.settings[modality_name]))
        if self.media_cache is not None and key in self.media_cache:
            return self.media_cache[key]
        media = modality.load(path, self.settings[modality_name])
        if self.media_cache is not None:
            self.media_cache[key] = media
        return media

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        if r.multi:
            media: Any = [self._load(r, m, ref) for m, ref in r.media_parts()]
            media_modalities = r.media_modalities
        elif get_modality(r.modality).has_media and r.media is not None:
            media, media_modalities = self._load(r, r.modality, r.media), [r.modality]
        else:
            media, media_modalities = None, []
        return {
            "id": r.id,
            "modality": r.modality,
            "media": media,
            "media_modalities": media_modalities,
            "task": r.task,
            "prompt": r.prompt,
            "answer": r.answer,
            "candidates": list(r.candidates or []),
        }

    @classmethod
    def from_file(cls, path: str | Path, root: str | Path | None = None, settings_by_modality: Mapping[str, Any] | None = None,
                  follow_symlinks: bool = False) -> "MediaDataset":
        """Records of ``path`` with media resolved against ``root`` (default: the file's folder).

        An annotation file without records is refused (AnnotationError), see ``read_records``.
        """
        path = Path(path)
        return cls(read_records(path), root if root is not None else path.parent, settings_by_modality,
                   follow_symlinks=follow_symlinks)


def load_meta(root: str | Path) -> dict:
    """The ``meta.json`` of a benchmark folder written by ``write_digits``."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise AnnotationError(path, "meta.json not found (write the benchmark first: modweave data digits --out DIR)")
    return json.loads(path.read_text())
