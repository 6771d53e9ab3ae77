"""Annotation formats: the library's JSONL records, and readers for LAVIS- and LLaVA-style JSON.

A record is ``{"id", "modality", "media", "task", "prompt", "answer", "candidates"?}``; ``media`` is a
path relative to a data root, a ``{"depth": ..., "rgb": ...}`` dict of such paths, or null (text).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from .templates import TASKS, render_prompt

MediaRef = str | dict[str, str] | None


class AnnotationError(ValueError):
    """A bad annotation: ``str(err)`` is one line, ``file:line: reason`` (line omitted when unknown)."""

    def __init__(self, path: Any, reason: str, line: int | None = None) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


@dataclasses.dataclass
class Record:
    """One sample: a prompt about (optional) media and its reference answer."""

    id: str
    modality: str
    media: MediaRef
    task: str
    prompt: str
    answer: str
    candidates: list[str] | None = None
    source: str | None = dataclasses.field(default=None, compare=False)  # "file:line", for messages

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "source"}
        if d["candidates"] is None:
            del d["candidates"]
        return d


def _known_modalities() -> list[str]:
    from ..modalities import list_modalities  # lazy: keeps torch out of plain annotation handling

    return list_modalities()


def validate_record(d: Any, known: Iterable[str] | None = None) -> Record:
    """Check a decoded JSON object against the record schema; ValueError with a one-line reason."""
    if not isinstance(d, Mapping):
        raise ValueError(f"record must be a JSON object, got {type(d).__name__}")
    missing = [k for k in ("id", "modality", "task", "prompt", "answer") if k not in d]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}")
    extra = sorted(set(d) - {"id", "modality", "media", "task", "prompt", "answer", "candidates"})
    if extra:
        raise ValueError(f"unknown record keys {', '.join(extra)}")
    known = list(known) if known is not None else _known_modalities()
    if d["modality"] not in known:
        raise ValueError(f"unknown modality {d['modality']!r} (known: {', '.join(known)})")
    if d["task"] not in TASKS:
        raise ValueError(f"unknown task {d['task']!r} (known: {', '.join(TASKS)})")
    for k in ("id", "prompt", "answer"):
        if not isinstance(d[k], str):
            raise ValueError(f"{k!r} must be a string")
    media = d.get("media")
    if not (media is None or isinstance(media, str) or (isinstance(media, Mapping) and all(isinstance(v, str) for v in media.values()))):
        raise ValueError("'media' must be a path, a dict of paths or null")
    if isinstance(media, Mapping):
        from ..modalities import get_modality

        get_modality(d["modality"]).check_media_ref(media)  # e.g. a dict on an image record
    cands = d.get("candidates")
    if cands is not None and not (isinstance(cands, list) and all(isinstance(c, str) for c in cands)):
        raise ValueError("'candidates' must be a list of strings")
    return Record(d["id"], d["modality"], dict(media) if isinstance(media, Mapping) else media, d["task"], d["prompt"], d["answer"], cands)


def read_jsonl(path: str | Path) -> list[Record]:
    """Read the library's JSONL; AnnotationError names the file and line of the first bad record."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "annotation file not found")
    known = _known_modalities()
    records, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = validate_record(json.loads(line), known)
            except json.JSONDecodeError as err:
                raise AnnotationError(path, f"malformed JSON ({err.msg}, column {err.colno})", lineno) from None
            except ValueError as err:
                raise AnnotationError(path, str(err), lineno) from None
            if rec.id in seen:
                raise AnnotationError(path, f"duplicate id {rec.id!r}", lineno)
            seen.add(rec.id)
            rec.source = f"{path}:{lineno}"
            records.append(rec)
    return records


def write_jsonl(path: str | Path, records: Iterable[Record | Mapping[str, Any]]) -> None:
    """Write records one per line (via a temporary file and rename, so no half-written file remains)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict() if isinstance(r, Record) else dict(r), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def resolve_media(media: MediaRef, root: str | Path, follow_symlinks: bool = False) -> Path | dict[str, Path] | None:
    """Join media paths to ``root``, refusing any that escape it.

    ``../`` and absolute paths outside the root are always refused. Symlinks are followed for the
    check too: by default a path whose real location (``os.path.realpath``) lies outside the root's
    real location is refused, and for a folder (video frames) so is any entry in it that points out.
    ``follow_symlinks=True`` (config ``data.follow_symlinks: true``) allows links that point out, for
    data folders linked in from other disks. Raises ValueError naming the media path.
    """
    if media is None:
        return None
    if isinstance(media, Mapping):
        return {k: resolve_media(v, root, follow_symlinks) for k, v in media.items()}  # type: ignore[misc]
    base = os.path.abspath(root)
    full = os.path.normpath(os.path.join(base, media))
    if os.path.commonpath([base, full]) != base:
        raise ValueError(f"media path {media!r} escapes the data root {base}")
    if not follow_symlinks:
        real_base = os.path.realpath(base)
        real = os.path.realpath(full)
        _check_inside(media, real, real_base)
        if os.path.isdir(real):  # a frame folder: its files are read too
            for entry in sorted(os.listdir(real)):
                _check_inside(f"{media}/{entry}", os.path.realpath(os.path.join(real, entry)), real_base)
    return Path(full)


def _check_inside(media: str, real: str, real_base: str) -> None:
    if os.path.commonpath([real_base, real]) != real_base:
        raise ValueError(f"media path {media!r} resolves through a symlink to {real}, outside the data root {real_base} "
                         "(set data.follow_symlinks: true to allow links out of the root)")


# ---- LAVIS-style JSON lists -------------------------------------------------------------------
_MEDIA_KEYS = {"video": "video", "audio": "audio", "image": "image", "depth": "depth", "pc": "point_cloud", "point_cloud": "point_cloud"}


def _load_json_list(path: Path) -> list:
    if not path.is_file():
        raise AnnotationError(path, "annotation file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnnotationError(path, f"malformed JSON ({err.msg}, column {err.colno})", err.lineno) from None
    if isinstance(data, Mapping) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise AnnotationError(path, "expected a JSON list of annotations")
    return data


def _first(x: Any) -> Any:
    return x[0] if isinstance(x, list) and x else x


def read_lavis(path: str | Path, modality: str | None = None) -> list[Record]:
    """LAVIS-style lists: ``{"video","question","answer"}`` (qa) or ``{"audio"|"image"|"pc",...,"caption"}``.

    The modality comes from the media key unless given. A list of answers keeps the first.
    """
    path = Path(path)
    records = []
    for i, item in enumerate(_load_json_list(path)):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise AnnotationError(where, "annotation must be a JSON object")
        key = next((k for k in _MEDIA_KEYS if k in item), None)
        if key is None:
            raise AnnotationError(where, f"no media key (one of {', '.join(_MEDIA_KEYS)})")
        mod = modality or _MEDIA_KEYS[key]
        rid = str(item.get("question_id", item.get("instance_id", item.get("id", f"{path.stem}-{i}"))))
        if "question" in item and "answer" in item:
            task, prompt, answer = "qa", render_prompt(mod, "qa", str(item["question"])), _first(item["answer"])
        elif "caption" in item:
            task, prompt, answer = "caption", render_prompt(mod, "caption"), _first(item["caption"])
        else:
            raise AnnotationError(where, "needs question+answer or caption")
        if not isinstance(answer, str):
            raise AnnotationError(where, "answer / caption must be text")
        records.append(Record(rid, mod, str(item[key]), task, prompt, answer, source=where))
    return records


def read_llava(path: str | Path, modality: str = "image") -> list[Record]:
    """LLaVA conversations: each human / gpt turn pair becomes one qa record (``<image>`` tag dropped)."""
    path = Path(path)
    records = []
    for i, item in enumerate(_load_json_list(path)):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("conversations"), list):
            raise AnnotationError(where, "expected an object with a 'conversations' list")
        media = item.get(modality, item.get("image"))
        media = None if media is None else str(media)
        mod = modality if media is not None else "text"  # LLaVA mixes in text-only conversations
        turns = item["conversations"]
        rid = str(item.get("id", f"{path.stem}-{i}"))
        for t in range(0, len(turns) - 1, 2):
            q, a = turns[t], turns[t + 1]
            if not (isinstance(q, Mapping) and isinstance(a, Mapping)) or q.get("from") != "human" or a.get("from") != "gpt":
                raise AnnotationError(where, f"turn {t} is not a human / gpt pair")
            question = str(q.get("value", "")).replace(f"<{modality}>", "").replace("<image>", "").strip()
            records.append(
                Record(f"{rid}-{t // 2}", mod, media, "qa", render_prompt(mod, "qa", question), str(a.get("value", "")).strip(), source=where)
            )
    return records
