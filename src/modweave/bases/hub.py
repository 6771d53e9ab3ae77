"""Safe loading of real transformers checkpoints (hub id or local directory) for every builder.

Two rules every load in modweave follows:
- No checkpoint code ever runs: `trust_remote_code=False` at every transformers load, and a checkpoint
  whose config / tokenizer / processor JSON names custom classes (`auto_map`) is refused with a one-line
  error before transformers sees it (a known `model_type` with an `auto_map` would otherwise load the
  built-in class silently; an unknown one would prompt "run custom code?").
- On the meta device (the trainer's preflight, `modweave params`) a checkpoint is built from its
  config only: no weight is read, `from_pretrained` is never called under a meta device context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

CODE_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def is_meta(device: str | torch.device | None = None) -> bool:
    """True when building on the meta device: `device` says so, or the caller is inside
    `with torch.device("meta")` (how `XModalLM.get_encoder` builds encoders next to meta weights)."""
    if device is not None:
        return torch.device(device).type == "meta"
    return torch.get_default_device().type == "meta"


def _checkpoint_file(name_or_path: str, filename: str, subfolder: str = "") -> Path | None:
    """`filename` of a local directory or of a hub id (local cache / hub); None when it has none."""
    root = Path(name_or_path)
    if root.is_dir():
        found = root / subfolder / filename
        return found if found.is_file() else None
    try:
        from transformers.utils import cached_file

        found = cached_file(name_or_path, filename, subfolder=subfolder,
                            _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    return Path(found) if found else None


def refuse_remote_code(name_or_path: str, subfolder: str = "") -> None:
    """Raise ValueError when the checkpoint's JSON files name custom code (`auto_map`)."""
    for filename in CODE_FILES:
        path = _checkpoint_file(name_or_path, filename, subfolder)
        if path is None:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # unreadable JSON: transformers reports it with the file's name
        if isinstance(data, dict) and data.get("auto_map"):
            raise ValueError(f"{path}: the checkpoint ships custom code (auto_map); modweave never runs "
                             "checkpoint code (trust_remote_code=False): use a checkpoint of a built-in architecture")


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def pretrained_config(name_or_path: str, **kwargs: Any):
    """`AutoConfig.from_pretrained(name_or_path)` with custom code refused; errors in one line."""
    from transformers import AutoConfig

    refuse_remote_code(name_or_path, kwargs.get("subfolder", ""))
    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{name_or_path}: cannot read the checkpoint's config ({one_line(err)})") from None


def from_pretrained(cls: Any, name_or_path: str, **kwargs: Any):
    """`cls.from_pretrained(name_or_path, trust_remote_code=False, ...)` with custom code refused first
    and loading errors reported in one line naming the checkpoint."""
    refuse_remote_code(name_or_path, kwargs.get("subfolder", ""))
    if is_meta():
        raise RuntimeError(f"{name_or_path}: weights must not be loaded on the meta device (build from the config)")
    try:
        return cls.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{name_or_path}: cannot load the checkpoint ({one_line(err)})") from None
