"""References to frozen modules loaded from elsewhere (hub ids, local folders), kept in the manifest.

A module loaded from a checkpoint (an `hf-*` encoder, an `hf` LLM, an InstructBLIP base's parts) is not
copied into a stage file: the stage that built it records where it came from instead, and a reload
rebuilds it from there. So that a stage's trained modules are never paired with different weights
without a word, the record names the source and pins it:

    "external": {"encoders.audio": {"stage": "audio", "name_or_path": "/ckpts/whisper-tiny",
                                    "revision": null,
                                    "files": {"model.safetensors": {"sha256": ..., "size": ..., "mtime_ns": ...},
                                              "config.json": {...}}}}

- a local folder (or file): the sha256 of its weight files and config. At load a file whose size and
  modification time are unchanged is taken as unchanged (no re-hash of a 14 GB LLM per load); otherwise it
  is hashed, and a different hash is an error (`verify=False` turns it into a warning).
- a hub id: the same hashes of the cached snapshot's files, plus its commit (`revision`); a different
  commit alone is a warning (a new commit need not change the weights), different weights an error.

Which modules: those marked `modweave_external = True` (encoders, bases), plus an `hf` LLM not marked
either way. A module may say where it came from with `modweave_source = {"name_or_path": ...,
"revision": ...}`; otherwise the inner transformers config's `_name_or_path`, or the config's own
`name_or_path`, is used (transformers v5 no longer keeps the commit on the config: it is read from the
hub cache's snapshot folder).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .checkpoint_manifest import CheckpointError

if TYPE_CHECKING:
    from .model import XModalLM

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".npz", ".h5", ".msgpack")
CONFIG_FILES = ("config.json",)
_CACHE = "_modweave_source_record"  # the record computed once per module object (hashing is not free)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _llm_from_checkpoint(model: "XModalLM") -> bool:
    cfg = model.config.llm
    return cfg.kind == "hf" and bool(cfg.name_or_path) and not str(cfg.name_or_path).endswith(".json")


def external_modules(model: "XModalLM") -> dict[str, nn.Module]:
    """The outermost modules loaded from a checkpoint elsewhere, by state-key prefix."""
    found: dict[str, nn.Module] = {}
    for prefix, mod in model.named_modules():
        if not prefix or any(prefix.startswith(p + ".") for p in found):
            continue
        flag = getattr(mod, "modweave_external", None)
        if flag is None and prefix == "llm":  # llm.py does not mark a from_pretrained LLM
            flag = _llm_from_checkpoint(model)
        if flag:
            found[prefix] = mod
    return found


def module_keys(prefix: str, mod: nn.Module) -> set[str]:
    return {f"{prefix}.{k}" for k in mod.state_dict()}


def birth_stage(model: "XModalLM", keys: set[str]) -> int | None:
    """The stage whose new state keys include the module's (the stage that built it)."""
    for i in range(len(model.stages)):
        if model.stage_keys(i) & keys:
            return i
    return None


def referenced_keys(model: "XModalLM", index: int, trained: set[str]) -> dict[str, set[str]]:
    """Per external module built in stage `index`: the keys stage `index`'s file leaves out (the module's
    own, minus any that train in the stage). Modules added inside it in later stages (adapters, experts)
    are new keys of those stages and are always saved."""
    out: dict[str, set[str]] = {}
    for prefix, mod in external_modules(model).items():
        keys = module_keys(prefix, mod)
        if birth_stage(model, keys) == index:
            out[prefix] = (keys & model.stage_keys(index)) - trained
    return out


# ------------------------------------------------------------------------------------------------
# where a module came from


def _inner_config(mod: nn.Module) -> Any:
    for m in mod.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_name_or_path"):
            return cfg
    return None


def _declared_source(model: "XModalLM", prefix: str, mod: nn.Module, stage_spec: dict | None) -> dict[str, Any]:
    """name_or_path / revision of a module: its own declaration, its transformers config, or the config."""
    src = getattr(mod, "modweave_source", None)
    if isinstance(src, dict) and src.get("name_or_path"):
        return {"name_or_path": str(src["name_or_path"]), "revision": src.get("revision")}
    cfg = _inner_config(mod)
    name = getattr(cfg, "_name_or_path", None) if cfg is not None else None
    if not name:
        if prefix == "llm":
            name = model.config.llm.name_or_path
        elif prefix.startswith("encoders.") and isinstance((stage_spec or {}).get("encoder"), dict):
            name = stage_spec["encoder"].get("name_or_path")
        elif model.config.base:
            name = model.config.base.partition(":")[2]
    return {"name_or_path": str(name) if name else None, "revision": None}


def _location(name_or_path: str | None) -> tuple[Path | None, str | None]:
    """The folder (or file) a source's weights are in, and the commit when it is a cached hub snapshot."""
    if not name_or_path:
        return None, None
    path = Path(name_or_path)
    if path.exists():
        return path, None
    try:  # a hub id: the snapshot transformers loaded from the local cache (no network)
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name_or_path, "config.json")
    except (ImportError, ValueError, OSError):  # not a valid repo id (gguf:..., ct2:...)
        return None, None
    if not isinstance(found, str):
        return None, None
    snapshot = Path(found).parent
    return snapshot, snapshot.name


def _local_files(root: Path | None) -> list[Path]:
    if root is None:
        return []
    if root.is_file():
        return [root]
    return sorted(p for p in root.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in CONFIG_FILES))


def _file_entry(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"sha256": sha256_file(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def source_record(model: "XModalLM", prefix: str, mod: nn.Module, stage: str, stage_spec: dict | None) -> dict:
    """The manifest record of external module `prefix`, built in stage `stage` (cached on the module)."""
    cached = getattr(mod, _CACHE, None)
    if cached is not None and cached.get("stage") == stage:
        return cached
    src = _declared_source(model, prefix, mod, stage_spec)
    root, commit = _location(src["name_or_path"])
    record = {"stage": stage, "name_or_path": src["name_or_path"], "revision": src["revision"] or commit,
              "files": {p.name: _file_entry(p) for p in _local_files(root)}}
    _cache(mod, record)
    return record


def _cache(mod: nn.Module, record: dict) -> None:
    object.__setattr__(mod, _CACHE, record)  # plain attribute: not a submodule, not in the state


def verify_source(model: "XModalLM", prefix: str, recorded: dict[str, Any], manifest: Path, verify: bool) -> None:
    """Check that external module `prefix`, just rebuilt, comes from what the manifest recorded."""
    mod = dict(model.named_modules()).get(prefix)
    if mod is None:
        raise CheckpointError(f"{manifest}: external module '{prefix}' (stage '{recorded.get('stage')}') is not in "
                              "the rebuilt model")
    name = recorded.get("name_or_path") or _declared_source(model, prefix, mod, None)["name_or_path"]
    root, commit = _location(name)
    rev = recorded.get("revision")
    if rev and commit and rev != commit:
        logger.warning("%s: %s was built from %s at revision %s; it now loads revision %s (the stage trained on "
                       "the recorded one)", manifest, prefix, name, rev, commit)
    changed = []
    for fname, entry in (recorded.get("files") or {}).items():
        if root is None or Path(fname).name != fname or not isinstance(entry, dict):
            changed.append(f"{name}: {fname} cannot be found")
            continue
        path = root if root.is_file() else root / fname
        if not path.is_file():
            changed.append(f"{path} is missing")
            continue
        st = path.stat()
        if st.st_size == entry.get("size") and st.st_mtime_ns == entry.get("mtime_ns"):
            continue  # unchanged since the stage was saved (size and time): not re-hashed
        if sha256_file(path) != entry.get("sha256"):
            changed.append(f"{path} changed (sha256 differs)")
    if changed:
        msg = (f"{manifest}: {prefix} of stage '{recorded.get('stage')}' is referenced, not copied, and its source "
               f"differs from when the stage was saved: {'; '.join(changed[:3])}")
        if verify:
            raise CheckpointError(msg + " (restore those files, or load with verify=False / --no-verify to accept them)")
        logger.warning(msg)
    _cache(mod, {**recorded, "stage": recorded.get("stage")})
