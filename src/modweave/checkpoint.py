"""Stage-wise checkpoints: one safetensors file per stage plus a JSON manifest.

DIR/manifest.json   {"format", "library_version", "config", "stages": [StageRecord...], "external",
                     "parent" (grown checkpoints), "data": {...}}
DIR/tokenizer/      the tokenizer (save_pretrained)
DIR/stage-NN-<name>.safetensors   tensors created or trained in stage NN
DIR/README.md       the Hub model card (model_card.py), rewritten with the manifest
DIR/peft/<modality>/  standard PEFT adapter folders a method exports (`Method.export`: the lora baseline)

A model as it was after stage k is rebuilt by building the base from the config and replaying the
stages' `add_modality` / phase records up to k, loading each stage's file on the way; every tensor a
stage owns must come from its file. Frozen modules loaded from a checkpoint elsewhere are referenced
(checkpoint_refs.py), not copied. A model loaded with `load_pretrained(PARENT)` and grown into another
folder writes only its new stages there; the manifest's `parent` entry points at PARENT for the others.
Every file is written to a temp name and renamed; the manifest is written last, so a file it does not
list (half-written or from a killed run) is never read. No pickle anywhere. `load_pretrained` also takes
a Hub repo id (`org/name`, `revision=`), resolved to a cached snapshot by hub.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .version import __version__
from .checkpoint_manifest import (FORMAT, MANIFEST, CheckpointError, contained, model_config, read_manifest,
                                  stage_folders, stage_records)
from .checkpoint_refs import (birth_stage, external_modules, module_keys, referenced_keys, sha256_file, source_record,
                              verify_source)
from .checkpoint_target import saved_in, target_parent
from .config import to_dict
from .utils import atomic_path, atomic_write_bytes

if TYPE_CHECKING:
    from .stages import StageRecord
    from .model import XModalLM

__all__ = ["CheckpointError", "FORMAT", "MANIFEST", "load_pretrained", "read_manifest", "save_pretrained",
           "stage_tensors", "write_stage", "write_manifest", "manifest_dict", "load_checked"]

logger = logging.getLogger(__name__)

try:  # transformers' configs validate their fields with huggingface_hub's strict dataclasses
    from huggingface_hub.errors import StrictDataclassError as _StrictError
except ImportError:  # an older huggingface_hub
    _StrictError = TypeError
_BUILD_ERRORS = (TypeError, _StrictError)

_sha256 = sha256_file


def _external(model: "XModalLM") -> set[str]:
    """State keys of modules loaded from elsewhere (hub encoders/LLMs marked `modweave_external`)."""
    return set().union(*(module_keys(p, m) for p, m in external_modules(model).items()))


def _trained(model: "XModalLM", index: int) -> set[str]:
    """What trained in stage `index`, by the names it had when the stage opened (so a stage file is
    the same whether written when the stage ends or re-saved after later stages renamed tensors)."""
    return model.stage_trained(index)


def _state_name(key: str, state: dict[str, torch.Tensor]) -> str | None:
    """Where `key` is in the state now: itself, or where peft moved it when a later stage wrapped its
    Linear (`q.weight` -> `q.base_layer.weight`); None when it is gone."""
    if key in state:
        return key
    # a wrapper inserts `base_layer` right after the wrapped module's name, which may sit anywhere in
    # the key (`proj.ana.video.adapter.down.bias` -> `proj.base_layer.ana.video.adapter.down.bias`);
    # wrappers nest (peft over ana), so look two levels deep
    frontier = [key]
    for _ in range(2):
        nxt = []
        for k in frontier:
            parts = k.split(".")
            for i in range(1, len(parts)):
                moved = ".".join([*parts[:i], "base_layer", *parts[i:]])
                if moved in state:
                    return moved
                nxt.append(moved)
        frontier = nxt
    return None


def owned_keys(model: "XModalLM", index: int) -> set[str]:
    """The state keys stage `index` owns: those created in it, plus every parameter that trained in it,
    minus the modules it loaded from a checkpoint elsewhere (referenced in the manifest)."""
    trained = _trained(model, index)
    keys = model.stage_keys(index) | trained
    for ref in referenced_keys(model, index, trained).values():
        keys -= ref
    return keys


def stage_tensors(model: "XModalLM", index: int) -> dict[str, torch.Tensor]:
    """Tensors stage `index` owns, by the names they had when the stage was built."""
    state = model.state_dict()
    out = {}
    for k in sorted(owned_keys(model, index)):
        now = _state_name(k, state)
        if now is not None:
            out[k] = state[now]
    return out


def _file_name(index: int, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    return f"stage-{index:02d}-{safe}.safetensors"


def write_stage(model: "XModalLM", save_dir: Path, index: int) -> None:
    """Write stage `index`'s tensors and update the manifest (atomically, manifest last). A stage that
    lives in the parent checkpoint (the model was loaded from it) is referenced, not written."""
    save_dir = Path(save_dir)
    parent = target_parent(model, save_dir)
    mine = saved_in(model, save_dir)
    for i in range(index):  # earlier stages closed without a folder: written now, so no stage lacks a file
        if i not in mine:
            _write_stage(model, save_dir, i, parent)
    _write_stage(model, save_dir, index, parent)
    write_manifest(model, save_dir, parent=parent)


def _write_stage(model: "XModalLM", save_dir: Path, index: int, parent: dict[str, Any] | None) -> None:
    save_dir.mkdir(parents=True, exist_ok=True)
    if index == 0 or not (save_dir / "tokenizer").exists():
        _save_tokenizer(model, save_dir)
    if parent and index < parent["stages"]:
        return
    record = model.stages[index]
    tensors = stage_tensors(model, index)
    name = _file_name(index, record.name)
    path = save_dir / name
    # safetensors refuses tensors sharing storage: give each its own contiguous copy on CPU
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    # one metadata key: safetensors writes its metadata map in a random order, so two keys would make
    # the sha256 of identical tensors differ from run to run
    meta = {"modweave": json.dumps({"format": FORMAT, "stage": record.name}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=meta)
    record.file, record.sha256 = name, _sha256(path)
    saved_in(model, save_dir)[index] = (record.file, record.sha256)
    if record.modality is not None:  # a method's extra export (lora: a PEFT folder per modality)
        from .methods import get_method

        get_method(record.method).export(model, record.modality, save_dir)


def _save_tokenizer(model: "XModalLM", save_dir: Path) -> None:
    """Write the tokenizer into a temp folder, then swap it in (a half-written one is never read)."""
    if model.tokenizer is None:
        return
    tmp, final = save_dir / ".tokenizer.tmp", save_dir / "tokenizer"
    shutil.rmtree(tmp, ignore_errors=True)
    model.tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _external_records(model: "XModalLM", written: int) -> dict[str, Any]:
    """Manifest records of the external modules built in the first `written` stages."""
    out = {}
    for prefix, mod in external_modules(model).items():
        born = birth_stage(model, module_keys(prefix, mod))
        if born is None or born >= written:
            continue
        rec = model.stages[born]
        out[prefix] = source_record(model, prefix, mod, rec.name, rec.spec)
    return out


def manifest_dict(model: "XModalLM", extra: dict[str, Any] | None = None, parent: dict[str, Any] | None = None,
                  save_dir: Path | None = None) -> dict[str, Any]:
    """The manifest of `model`; with `save_dir`, the stages and files it holds in that folder."""
    if save_dir is None:
        stages = [dataclasses.asdict(s) for s in model.stages if s.file is not None or s.modality is None]
    else:
        mine = saved_in(model, save_dir)
        stages = [{**dataclasses.asdict(model.stages[i]), "file": mine[i][0], "sha256": mine[i][1]}
                  for i in sorted(mine) if i < len(model.stages)]
    return {
        "format": FORMAT,
        "library_version": __version__,
        "base": model.config.llm.name_or_path or model.config.llm.kind,
        "method": sorted({s.method for s in model.stages if s.modality is not None}),
        "modalities": [s.modality for s in model.stages if s.modality is not None and s.phase == _first_phase(s)],
        "config": to_dict(model.config),
        "stages": stages,
        "external": _external_records(model, len(stages)),
        "parent": parent,
        **(extra or {}),
    }


def _first_phase(record: "StageRecord") -> str:
    from .methods import get_method

    return get_method(record.method).phases[0]


def write_manifest(model: "XModalLM", save_dir: Path, extra: dict[str, Any] | None = None,
                   parent: dict[str, Any] | None = None) -> None:
    old = save_dir / MANIFEST
    current = manifest_dict(model, parent=parent, save_dir=save_dir)
    keep = {}
    if old.exists():  # keep fields other tools wrote (data checksums, trainer state)
        keep = {k: v for k, v in json.loads(old.read_text()).items() if k not in current}
    data = {**current, **keep, **(extra or {})}
    atomic_write_bytes(old, json.dumps(data, indent=2).encode())
    from .model_card import write_model_card

    write_model_card(save_dir, model)  # after the manifest: the card describes what it lists


def save_pretrained(model: "XModalLM", save_dir: Path, copy_parent: bool = False, push_to_hub: bool = False,
                    repo_id: str | None = None, private: bool = False, revision: str | None = None,
                    token: str | None = None) -> Path:
    """Write every stage not yet written to `save_dir` with the model's current tensors.

    A trainer writes each stage as it ends (`end_stage(save_dir)`); this call is for a model grown by
    hand. Where a later stage changed tensors an earlier stage owns (the `finetune` baseline),
    `upto=` on such a save gives the final values: write stages as they end to keep every step.
    A model loaded from another checkpoint references that checkpoint's stages (manifest `parent`)
    unless `copy_parent=True`, which writes a standalone copy. `push_to_hub=True` then uploads the
    folder to Hub repo `repo_id` (`HfApi.upload_folder`; branch `revision`) — see hub.push_checkpoint."""
    save_dir = Path(save_dir)
    if push_to_hub and not repo_id:
        raise CheckpointError("save_pretrained(push_to_hub=True) needs repo_id='org/name'")
    parent = target_parent(model, save_dir)
    mine = saved_in(model, save_dir)
    if copy_parent and parent and not (save_dir / MANIFEST).exists():
        parent = None
        mine.clear()
    for i in range(len(model.stages)):
        if i not in mine or not (parent and i < parent["stages"]) and not (save_dir / mine[i][0]).is_file():
            _write_stage(model, save_dir, i, parent)
    write_manifest(model, save_dir, parent=parent)
    if push_to_hub:
        from .hub import push_checkpoint

        push_checkpoint(save_dir, repo_id, private=private, revision=revision, token=token)
    return save_dir


# ------------------------------------------------------------------------------------------------
# loading


def _load_stage_file(model: "XModalLM", folder: Path, index: int, record: "StageRecord", manifest: Path,
                     verify: bool) -> set[str]:
    """Fill stage `index` from its file; every tensor the stage owns must be in it. Returns the file's keys."""
    if not record.file:
        raise CheckpointError(f"{manifest}: stage '{record.name}' has no file (\"file\": null), so its tensors "
                              "cannot be loaded")
    path = contained(folder, record.file, manifest, record.name)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    if verify:
        if not record.sha256:
            raise CheckpointError(f"{manifest}: stage '{record.name}' has no sha256, so {path.name} cannot be "
                                  "checked (load with verify=False, or --no-verify, to skip every checksum)")
        if _sha256(path) != record.sha256:
            raise CheckpointError(f"checkpoint file corrupt (checksum mismatch): {path}")
    try:
        tensors = load_file(str(path), device=str(model.param_device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint file unreadable: {path} ({err})") from None
    state = model.state_dict()
    missing = sorted(k for k in owned_keys(model, index) - set(tensors) if k in state)
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} tensor(s) of stage '{record.name}' (nothing is left "
                              f"randomly initialised): {', '.join(missing[:5])}")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        logger.warning("%s: %d tensor(s) hold NaN or inf values: %s", path, len(bad), ", ".join(sorted(bad)[:5]))
    load_checked(model, tensors, str(path))
    return set(tensors)


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


def _check_tokenizer_dir(tok_dir: Path) -> None:
    """A checkpoint's tokenizer/ never holds code: refuse one that would make transformers run some."""
    code = sorted(p.name for p in tok_dir.glob("*.py"))
    for name in ("tokenizer_config.json", "config.json"):
        f = tok_dir / name
        try:
            data = json.loads(f.read_text()) if f.is_file() else {}
        except (OSError, ValueError):
            continue  # transformers names a corrupt file itself
        if isinstance(data, dict) and data.get("auto_map"):
            code.insert(0, f"{name}: auto_map")
    if code:
        raise CheckpointError(f"{tok_dir}: the tokenizer ships custom code ({', '.join(code[:3])}); modweave never "
                              "runs code from a checkpoint (trust_remote_code=False)")


def _references(model: "XModalLM", external: dict[str, Any], stage: str, manifest: Path, verify: bool) -> None:
    for prefix, rec in external.items():
        if isinstance(rec, dict) and rec.get("stage") == stage:
            verify_source(model, prefix, rec, manifest, verify)


def _adopt_copied(model: "XModalLM", loaded: set[str]) -> None:
    """A module the stage's file filled entirely (an older checkpoint, or a trained base LLM) is the
    checkpoint's own from now on: a later save keeps writing it rather than referencing its source."""
    for prefix, mod in external_modules(model).items():
        keys = module_keys(prefix, mod)
        if keys and keys <= loaded:
            object.__setattr__(mod, "modweave_external", False)


def load_pretrained(save_dir: Path | str, upto: str | None = None, device: str | torch.device | None = None,
                    verify: bool = True, revision: str | None = None, *, model_cls: type) -> "XModalLM":
    """Rebuild the model saved in `save_dir` as it was after stage/modality `upto` (default: the last).

    `verify=False` skips the stage files' checksums and accepts changed sources of referenced modules
    (with a warning). A grown checkpoint loads its parent's stages from the parent folder. `save_dir`
    that is not a folder but looks like a Hub repo id (`org/name`) is downloaded at `revision` through
    huggingface_hub's cache (HF_HUB_OFFLINE=1: the cache only). `model_cls`: `XModalLM` (its
    `from_pretrained` passes itself)."""
    from .hub import resolve_checkpoint

    # the model class is given (XModalLM.from_pretrained passes itself): this format never imports the model
    save_dir = resolve_checkpoint(save_dir, revision)
    manifest = read_manifest(save_dir)
    mpath = save_dir / MANIFEST
    records = stage_records(manifest, mpath)
    config = model_config(manifest, mpath)
    folders = stage_folders(save_dir, manifest)
    names = [r.name for r in records]
    if upto is not None:
        last = [i for i, r in enumerate(records) if r.name == upto or r.modality == upto]
        if not last:
            raise CheckpointError(f"upto='{upto}': no such stage in {save_dir} (stages: {', '.join(names)})")
        records = records[: last[-1] + 1]
    external = manifest.get("external") or {}

    tok_dir = next((f / "tokenizer" for f in dict.fromkeys([save_dir, *folders]) if (f / "tokenizer").is_dir()), None)
    tok_cfg = dataclasses.replace(config.tokenizer)
    if tok_dir is not None:  # the saved tokenizer, not the corpus or the hub
        _check_tokenizer_dir(tok_dir)
        config.tokenizer.kind, config.tokenizer.name_or_path = "hf", str(tok_dir)
    try:
        model = model_cls.build(config)
    except _BUILD_ERRORS as err:  # a value the config checks let through but the builders refuse
        why = " ".join(str(err).split())
        raise CheckpointError(f"{mpath}: the manifest's config does not build a model ({why})") from None
    model.config.tokenizer = tok_cfg
    model.stages[0] = records[0]
    for i, rec in enumerate(records):
        if i:
            model.replay(rec)  # the same path training opened the stage by
        _references(model, external, rec.name, mpath, verify)
        model.end_stage(replayed=True)  # as when the stage was written: after it closed
        _adopt_copied(model, _load_stage_file(model, folders[i], i, rec, mpath, verify))
    model.eval()
    model.checkpoint_origin = {"dir": str(save_dir.resolve()), "stages": len(records),
                               "manifest_sha256": _sha256(mpath)}
    saved_in(model, save_dir).update({i: (r.file, r.sha256) for i, r in enumerate(records)})
    if device is not None:
        model.to(device)
    return model
