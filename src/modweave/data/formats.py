"""Annotation formats: the library's JSONL records, and readers for LAVIS- and LLaVA-style JSON.

A record is ``{"id", "modality", "media", "task", "prompt", "answer", "candidates"?}``; ``media`` is a
path relative to a data root, a ``{"depth": ..., "rgb": ...}`` dict of such paths, null (text), or a
list of media of any modalities, ``[{"modality": "image", "path": "a.png"}, {"modality": "audio", "path":
"b.wav"}]``, referenced from the prompt as ``<media:1>``, ``<media:2>`` (1-based; see data/collate.py).
A multi-media record's ``modality`` may be omitted: it is then the media's modalities joined by ``+``
(``"image+audio"``), the label its scores are grouped under.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from .templates import TASKS, render_prompt

MediaRef = str | dict[str, str] | list[dict[str, Any]] | None
#: `<media:K>` in a prompt: where the K-th media of the record goes (1-based)
MEDIA_MARKER = re.compile(r"<media:(\d+)>")


def joined_label(modalities: Iterable[str]) -> str:
    """The label of a multi-media sample: its media's modalities in order, joined by ``+``."""
    return "+".join(modalities)


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

    @property
    def multi(self) -> bool:
        """Whether the record holds a list of media (each with its own modality)."""
        return isinstance(self.media, list)

    def media_parts(self) -> list[tuple[str, str | dict[str, str]]]:
        """`(modality, path or path dict)` of each media in order: [] for text, one pair for one media."""
        if self.media is None:
            return []
        if isinstance(self.media, list):
            return [(m["modality"], m["path"]) for m in self.media]
        return [(self.modality, self.media)]

    @property
    def media_modalities(self) -> list[str]:
        """The modality of each media, in order (what the model's paths must cover)."""
        return [m for m, _ in self.media_parts()]


def _known_modalities() -> list[str]:
    from ..modalities import list_modalities  # lazy: keeps torch out of plain annotation handling

    return list_modalities()


def _check_media_ref(modality: str, media: Any, where: str = "'media'") -> None:
    if not (isinstance(media, str) or (isinstance(media, Mapping) and all(isinstance(v, str) for v in media.values()))):
        raise ValueError(f"{where} must be a path, a dict of paths or null")
    if isinstance(media, Mapping):
        from ..modalities import get_modality

        get_modality(modality).check_media_ref(media)  # e.g. a dict on an image record


def _check_media_list(media: list, known: list[str]) -> list[dict[str, Any]]:
    """A multi-media list: each entry ``{"modality", "path"}`` of a modality that has media."""
    from ..modalities import get_modality

    if not media:
        raise ValueError("'media' is an empty list (use null for a text record)")
    out = []
    for k, part in enumerate(media, 1):
        where = f"'media' entry {k}"
        if not isinstance(part, Mapping) or set(part) != {"modality", "path"}:
            raise ValueError(f"{where} must be an object with exactly 'modality' and 'path'")
        if part["modality"] not in known:
            raise ValueError(f"{where}: unknown modality {part['modality']!r} (known: {', '.join(known)})")
        if not get_modality(part["modality"]).has_media:
            raise ValueError(f"{where}: modality {part['modality']!r} takes no media")
        _check_media_ref(part["modality"], part["path"], f"{where} 'path'")
        path = part["path"]
        out.append({"modality": part["modality"], "path": dict(path) if isinstance(path, Mapping) else path})
    return out


def check_markers(prompt: str, n_media: int) -> list[int]:
    """The 0-based media indices of the `<media:K>` markers in `prompt`, in order; ValueError when a
    marker names no media, or (with markers present) a media is referenced not exactly once."""
    refs = [int(k) - 1 for k in MEDIA_MARKER.findall(prompt)]
    if not refs:
        return []
    bad = [r + 1 for r in refs if not 0 <= r < n_media]
    if bad:
        raise ValueError(f"prompt marker <media:{bad[0]}> names no media (the record has {n_media})")
    if sorted(refs) != list(range(n_media)):
        counts = {k + 1: refs.count(k) for k in range(n_media)}
        wrong = next(k for k, c in counts.items() if c != 1)
        raise ValueError(f"prompt references <media:{wrong}> {counts[wrong]} times: each media needs exactly one marker")
    return refs


def validate_record(d: Any, known: Iterable[str] | None = None) -> Record:
    """Check a decoded JSON object against the record schema; ValueError with a one-line reason."""
    if not isinstance(d, Mapping):
        raise ValueError(f"record must be a JSON object, got {type(d).__name__}")
    media = d.get("media")
    multi = isinstance(media, list)
    missing = [k for k in ("id", "modality", "task", "prompt", "answer") if k not in d and not (k == "modality" and multi)]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}")
    extra = sorted(set(d) - {"id", "modality", "media", "task", "prompt", "answer", "candidates"})
    if extra:
        raise ValueError(f"unknown record keys {', '.join(extra)}")
    known = list(known) if known is not None else _known_modalities()
    if d["task"] not in TASKS:
        raise ValueError(f"unknown task {d['task']!r} (known: {', '.join(TASKS)})")
    for k in ("id", "prompt", "answer"):
        if not isinstance(d[k], str):
            raise ValueError(f"{k!r} must be a string")
    if multi:
        media = _check_media_list(media, known)
        label = joined_label(m["modality"] for m in media)
        modality = d.get("modality", label)
        if modality != label:
            raise ValueError(f"'modality' of a multi-media record must be {label!r} (its media's modalities) or omitted, got {modality!r}")
        check_markers(d["prompt"], len(media))
    else:
        modality = d["modality"]
        if modality not in known:
            raise ValueError(f"unknown modality {modality!r} (known: {', '.join(known)})")
        if media is not None:
            _check_media_ref(modality, media)
            media = dict(media) if isinstance(media, Mapping) else media
        check_markers(d["prompt"], 0 if media is None else 1)
    cands = d.get("candidates")
    if cands is not None and not (isinstance(cands, list) and all(isinstance(c, str) for c in cands)):
        raise ValueError("'candidates' must be a list of strings")
    return Record(d["id"], modality, media, d["task"], d["prompt"], d["answer"], cands)


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


def _lavis_media(item: Mapping[str, Any], modality: str | None) -> list[tuple[str, str]]:
    """`(modality, path)` of each media of a LAVIS item: every media key present, a list value giving
    several media of that key's modality (the modality is forced to `modality` only for a single key)."""
    keys = [k for k in item if k in _MEDIA_KEYS]
    parts = []
    for k in keys:
        mod = modality if modality and len(keys) == 1 else _MEDIA_KEYS[k]
        values = item[k] if isinstance(item[k], list) else [item[k]]
        parts += [(mod, str(v)) for v in values]
    return parts


def _record_media(parts: list[tuple[str, str]]) -> tuple[str, MediaRef]:
    """The record's modality label and media field for `parts` (one media: the plain form)."""
    if len(parts) == 1:
        return parts[0]
    return joined_label(m for m, _ in parts), [{"modality": m, "path": p} for m, p in parts]


def read_lavis(path: str | Path, modality: str | None = None) -> list[Record]:
    """LAVIS-style lists: ``{"video","question","answer"}`` (qa) or ``{"audio"|"image"|"pc",...,"caption"}``.

    The modality comes from the media key unless given. A list of answers keeps the first. An item
    with several media keys (``{"image": ..., "audio": ...}``) or a list of paths under one key is a
    multi-media record (media in the item's key order, placed where the prompt's ``<media:K>``
    markers are, else all at the template's media slot).
    """
    path = Path(path)
    records = []
    for i, item in enumerate(_load_json_list(path)):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise AnnotationError(where, "annotation must be a JSON object")
        parts = _lavis_media(item, modality)
        if not parts:
            raise AnnotationError(where, f"no media key (one of {', '.join(_MEDIA_KEYS)})")
        mod, media = _record_media(parts)
        rid = str(item.get("question_id", item.get("instance_id", item.get("id", f"{path.stem}-{i}"))))
        if "question" in item and "answer" in item:
            task, prompt, answer = "qa", render_prompt(mod, "qa", str(item["question"])), _first(item["answer"])
        elif "caption" in item:
            task, prompt, answer = "caption", render_prompt(mod, "caption"), _first(item["caption"])
        else:
            raise AnnotationError(where, "needs question+answer or caption")
        if not isinstance(answer, str):
            raise AnnotationError(where, "answer / caption must be text")
        try:
            check_markers(prompt, len(parts))
        except ValueError as err:
            raise AnnotationError(where, str(err)) from None
        records.append(Record(rid, mod, media, task, prompt, answer, source=where))
    return records


def _llava_question(text: str, tag: str, counter: list[int], n_media: int) -> str:
    """A human turn's text with each media tag replaced by the next `<media:K>` marker (several media),
    or dropped (one media, as LLaVA's single-image data is laid out)."""
    text = str(text)
    if n_media <= 1:
        return text.replace(tag, "").replace("<image>", "").strip()
    pieces = re.split(f"{re.escape(tag)}|<image>", text)
    out = pieces[0]
    for piece in pieces[1:]:
        counter[0] += 1
        out += f"<media:{counter[0]}>" + piece
    return out.strip()


def read_llava(path: str | Path, modality: str = "image") -> list[Record]:
    """LLaVA conversations: each human / gpt turn pair becomes one qa record (``<image>`` tag dropped).

    Several images (``"image": ["a.png", "b.png"]``, interleaved-LLaVA style) make multi-media records:
    the ``<image>`` tags become ``<media:1>``, ``<media:2>``, ... in order of appearance; a turn that
    references only some of them has its markers dropped (all media then sit at the media slot)."""
    path = Path(path)
    records = []
    tag = f"<{modality}>"
    for i, item in enumerate(_load_json_list(path)):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("conversations"), list):
            raise AnnotationError(where, "expected an object with a 'conversations' list")
        media = item.get(modality, item.get("image"))
        paths = [] if media is None else [str(m) for m in (media if isinstance(media, list) else [media])]
        mod, ref = _record_media([(modality, p) for p in paths]) if paths else ("text", None)
        turns = item["conversations"]
        rid = str(item.get("id", f"{path.stem}-{i}"))
        counter = [0]
        for t in range(0, len(turns) - 1, 2):
            q, a = turns[t], turns[t + 1]
            if not (isinstance(q, Mapping) and isinstance(a, Mapping)) or q.get("from") != "human" or a.get("from") != "gpt":
                raise AnnotationError(where, f"turn {t} is not a human / gpt pair")
            counter[0] = 0
            question = _llava_question(q.get("value", ""), tag, counter, len(paths))
            try:
                check_markers(question, len(paths))
            except ValueError:  # a turn naming only some of the media: they all go to the media slot
                question = MEDIA_MARKER.sub("", question).strip()
            records.append(
                Record(f"{rid}-{t // 2}", mod, ref, "qa", render_prompt(mod, "qa", question), str(a.get("value", "")).strip(), source=where)
            )
    return records
