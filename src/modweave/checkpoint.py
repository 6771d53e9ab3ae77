"""Stage-wise checkpoints: one safetensors file per stage plus a JSON manifest.

DIR/manifest.json   {"format", "library_version", "config", "stages": [StageRecord...], "data": {...}}
DIR/tokenizer/      the tokenizer (save_pretrained)
DIR/stage-NN-<name>.safetensors   tensors created or trained in stage NN

A model as it was after stage k is rebuilt by building the base from the config and replaying the
stages' `add_modality` / phase records up to k, loading each stage's file on the way. Every file
is written to a temp name and renamed; the manifest is written last, so a file it does not list
(half-written or from a killed run) is never read. No pickle anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .config import ModelConfig, from_dict, modality_spec, to_dict
from .utils import atomic_path, atomic_write_bytes

if TYPE_CHECKING:
    from .model import StageRecord, XModalLM

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "modweave-checkpoint/1"


class CheckpointError(RuntimeError):
    """A missing, corrupt or mismatching checkpoint; the message names the file or tensor."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _external(model: "XModalLM") -> set[str]:
    """State keys of modules loaded from elsewhere (hub encoders/LLMs marked `_modweave_external`)."""
    keys: set[str] = set()
    for prefix, mod in model.named_modules():
        if getattr(mod, "_modweave_external", False):
            keys.update(f"{prefix}.{k}" if prefix else k for k in mod.state_dict())
    return keys


def stage_tensors(model: "XModalLM", index: int) -> dict[str, torch.Tensor]:
    """Tensors stage `index` owns: those created in it, plus every parameter that trained in it."""
    from .methods import get_method

    state = model.state_dict()
    record = model.stages[index]
    trained: set[str] = set()
    if record.modality is not None:
        impl = get_method(record.method)
        ids = {id(p) for p in impl.trainable(model, record.modality, record.phase, record.settings)}
        trained = {n for n, p in model.named_parameters() if id(p) in ids}
    keys = (model._stage_keys[index] | trained) & set(state)
    if index == 0:  # the base's hub weights are referenced, not copied; modules added later inside
        keys -= _external(model)  # them (adapters) and tensors later stages train are always saved
    return {k: state[k] for k in sorted(keys)}


def _file_name(index: int, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    return f"stage-{index:02d}-{safe}.safetensors"


def write_stage(model: "XModalLM", save_dir: Path, index: int) -> None:
    """Write stage `index`'s tensors and update the manifest (atomically, manifest last)."""
    save_dir.mkdir(parents=True, exist_ok=True)
    if index == 0 or not (save_dir / "tokenizer").exists():
        _save_tokenizer(model, save_dir)
    record = model.stages[index]
    tensors = stage_tensors(model, index)
    name = _file_name(index, record.name)
    path = save_dir / name
    # safetensors refuses tensors sharing storage: give each its own contiguous copy on CPU
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata={"stage": record.name, "format": FORMAT})
    record.file, record.sha256 = name, _sha256(path)
    write_manifest(model, save_dir)


def _save_tokenizer(model: "XModalLM", save_dir: Path) -> None:
    """Write the tokenizer into a temp folder, then swap it in (a half-written one is never read)."""
    if model.tokenizer is None:
        return
    tmp, final = save_dir / ".tokenizer.tmp", save_dir / "tokenizer"
    shutil.rmtree(tmp, ignore_errors=True)
    model.tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def manifest_dict(model: "XModalLM", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    written = [s for s in model.stages if s.file is not None or s.modality is None]
    return {
        "format": FORMAT,
        "library_version": __version__,
        "base": model.config.llm.name_or_path or model.config.llm.kind,
        "method": sorted({s.method for s in model.stages if s.modality is not None}),
        "modalities": [s.modality for s in model.stages if s.modality is not None and s.phase == _first_phase(s)],
        "config": to_dict(model.config),
        "stages": [dataclasses.asdict(s) for s in written],
        **(extra or {}),
    }


def _first_phase(record: "StageRecord") -> str:
    from .methods import get_method

    return get_method(record.method).phases[0]


def write_manifest(model: "XModalLM", save_dir: Path, extra: dict[str, Any] | None = None) -> None:
    old = save_dir / MANIFEST
    current = manifest_dict(model)
    keep = {}
    if old.exists():  # keep fields other tools wrote (data checksums, trainer state)
        keep = {k: v for k, v in json.loads(old.read_text()).items() if k not in current}
    data = {**current, **keep, **(extra or {})}
    atomic_write_bytes(old, json.dumps(data, indent=2).encode())


def save_pretrained(model: "XModalLM", save_dir: Path) -> Path:
    """Write every stage not yet written to `save_dir` with the model's current tensors.

    A trainer writes each stage as it ends (`end_stage(save_dir)`); this call is for a model grown by
    hand. Where a later stage changed tensors an earlier stage owns (the `finetune` baseline),
    `upto=` on such a save gives the final values: write stages as they end to keep every step."""
    save_dir.mkdir(parents=True, exist_ok=True)
    fresh = not (save_dir / MANIFEST).exists()
    for i, s in enumerate(model.stages):
        if fresh or s.file is None or not (save_dir / s.file).exists():
            write_stage(model, save_dir, i)
    write_manifest(model, save_dir)
    return save_dir


def read_manifest(save_dir: Path) -> dict[str, Any]:
    path = save_dir / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {save_dir}: {MANIFEST} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: corrupt manifest ({err})") from None
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a modweave checkpoint (format {data.get('format')!r})")
    return data


def _load_stage_file(model: "XModalLM", save_dir: Path, record: "StageRecord", verify: bool) -> None:
    path = save_dir / record.file
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    if verify and record.sha256 and _sha256(path) != record.sha256:
        raise CheckpointError(f"checkpoint file corrupt (checksum mismatch): {path}")
    try:
        tensors = load_file(str(path), device=str(model._param_device()))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint file unreadable: {path} ({err})") from None
    load_checked(model, tensors, str(path))


def load_checked(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy `tensors` into `model`, refusing unknown keys and shape mismatches (first ones listed)."""
    state = model.state_dict()
    unknown = [k for k in tensors if k not in state]
    bad = [f"{k}: file {list(tensors[k].shape)} vs model {list(state[k].shape)}"
           for k in tensors if k in state and tensors[k].shape != state[k].shape]
    if unknown or bad:
        lines = [f"unexpected key {k}" for k in unknown[:5]] + bad[:5]
        raise CheckpointError(f"{source} does not match the architecture: " + "; ".join(lines))
    with torch.no_grad():
        for k, v in tensors.items():
            state[k].copy_(v)


def load_pretrained(save_dir: Path, upto: str | None = None, device: str | torch.device | None = None,
                    verify: bool = True) -> "XModalLM":
    """Rebuild the model saved in `save_dir` as it was after stage/modality `upto` (default: the last)."""
    from .model import StageRecord, XModalLM
    from .methods import get_method

    save_dir = Path(save_dir)
    manifest = read_manifest(save_dir)
    config = from_dict(ModelConfig, manifest["config"], "config")
    records = [StageRecord(**s) for s in manifest["stages"]]
    names = [r.name for r in records]
    if upto is not None:
        last = [i for i, r in enumerate(records) if r.name == upto or r.modality == upto]
        if not last:
            raise CheckpointError(f"upto='{upto}': no such stage in {save_dir} (stages: {', '.join(names)})")
        records = records[: last[-1] + 1]

    tok_dir = save_dir / "tokenizer"
    tok_cfg = dataclasses.replace(config.tokenizer)
    if tok_dir.is_dir():  # the saved tokenizer, not the corpus or the hub
        config.tokenizer.kind, config.tokenizer.name_or_path = "hf", str(tok_dir)
    model = XModalLM.build(config)
    model.config.tokenizer = tok_cfg
    if records[0].file:
        _load_stage_file(model, save_dir, records[0], verify)
    model.stages[0] = records[0]
    for rec in records[1:]:
        impl = get_method(rec.method)
        if rec.modality not in model.paths:
            spec = modality_spec(rec.spec, f"stage {rec.name}")
            model._stage_open = False
            impl.add_modality(model, spec, rec.settings)
        impl.start_phase(model, rec.modality, rec.phase, rec.settings, model._method_state(rec.modality))
        model.stages.append(rec)
        model._record_new_keys()
        if rec.file:
            _load_stage_file(model, save_dir, rec, verify)
    model._stage_open = False
    model.freeze_all()
    model.eval()
    if device is not None:
        model.to(device)
    return model
