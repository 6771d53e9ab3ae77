"""In-stage trainer checkpoints of a sharded (fsdp) phase, through `torch.distributed.checkpoint` (DCP).

DIR/trainer/<stage>/step-000012/ holds
  dcp/                 the trainable parameters and AdamW state, each rank writing its own shards
                       (`.metadata` + `__<rank>_0.distcp`); frozen tensors are not saved (the stage
                       files and the phase's own start rebuild them)
  rng-rank<r>.safetensors / rng-rank<r>.json   rank r's torch (+ CUDA) / python and numpy RNG states
  state.json           step, world size, scheduler state, the stage's loss history (as training/state.py)
Every rank takes part in saving and loading (collectives). The folder is written under a temp name and
renamed by rank 0 once every rank has written its part, so a kill mid-write leaves the previous step.
DCP's `.metadata` file is a pickle: it is read with an unpickler that builds only DCP's own metadata
classes (and torch sizes, dtypes), so a foreign file is refused, never executed.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..utils import chmod_like_open
from .state import CUDA_RNG_PREFIX, RNG_KEY, TrainerStateError, _read_state_json, _refuse, rng_state, set_rng_state, stage_dir

DCP_DIR = "dcp"


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def _rank_world() -> tuple[int, int]:
    from .distributed import world

    return world()


def _options(strict: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # only what trains: the frozen tensors come from the stage files (and are most of the model)
    return StateDictOptions(ignore_frozen_params=True, strict=strict)


def save_sharded_trainer_state(root: Path, stage: str, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                               scheduler: Any, losses: list[list[float]]) -> Path:
    """Write the trainer state after `step` optimizer steps of `stage`. Every rank calls it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rank, size = _rank_world()
    folder = stage_dir(root, stage)
    tmp = folder / f".tmp-step-{step:06d}"
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    _barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
    dcp.save({"model": model_sd, "optim": optim_sd}, storage_writer=dcp.FileSystemWriter(str(tmp / DCP_DIR)))
    torch_rng, other_rng = rng_state()
    tensors = {RNG_KEY: torch_rng.clone()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{CUDA_RNG_PREFIX}{i}"] = st.clone()
    save_file(tensors, str(tmp / f"rng-rank{rank}.safetensors"))
    chmod_like_open(tmp / f"rng-rank{rank}.safetensors")
    (tmp / f"rng-rank{rank}.json").write_text(json.dumps(other_rng))
    _barrier()
    final = folder / f"step-{step:06d}"
    if rank == 0:
        state = {"stage": stage, "step": step, "world_size": size, "scheduler": scheduler.state_dict(),
                 "rng": other_rng, "losses": losses, "sharded": True}
        (tmp / "state.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in folder.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def is_sharded_state(folder: Path) -> bool:
    return (folder / DCP_DIR).is_dir()


def check_state_kind(folder: Path, sharded: bool) -> None:
    """Refuse resuming a sharded (fsdp) trainer state in a replicated phase, or the other way round."""
    if is_sharded_state(folder) == sharded:
        return
    was, now = ("sharded (fsdp)", "is not sharded") if not sharded else ("replicated (ddp / one process)", "is sharded")
    raise _refuse(folder, folder, f"a {was} trainer state, and this phase {now}: resume with the run's "
                  "train.distributed.strategy and number of processes")


def load_sharded_trainer_state(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                               scheduler: Any) -> dict[str, Any]:
    """Restore the sharded parameters, optimizer, schedule and this rank's RNG from `folder`; every rank
    calls it. Returns state.json's data."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    state = _read_state_json(folder)
    rank, size = _rank_world()
    if state.get("world_size") != size:
        raise _refuse(folder / "state.json", folder, f"written by {state.get('world_size')} processes, this run has "
                      f"{size} (the data order and RNG streams are per process: resume with the same count)")
    rng_path = folder / f"rng-rank{rank}.safetensors"
    try:
        rng = load_file(str(rng_path))
        other = json.loads((folder / f"rng-rank{rank}.json").read_text())
    except (SafetensorError, OSError, ValueError) as err:
        raise _refuse(rng_path, folder, f"unreadable RNG state ({type(err).__name__})") from None
    if RNG_KEY not in rng:
        raise _refuse(rng_path, folder, f"no {RNG_KEY} tensor: not a modweave trainer state")
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
    target = {"model": model_sd, "optim": optim_sd}
    try:
        dcp.load(target, storage_reader=SafeFileSystemReader(str(folder / DCP_DIR)))
    except TrainerStateError:
        raise
    except (RuntimeError, ValueError, KeyError, OSError, pickle.UnpicklingError, EOFError) as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise _refuse(folder / DCP_DIR, folder, f"the sharded state does not fit this stage ({first})") from None
    set_state_dict(model, optimizer, model_state_dict=target["model"], optim_state_dict=target["optim"],
                   options=_options(strict=False))  # the frozen keys are absent on purpose (dcp.load checked the rest)
    try:
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(rng[RNG_KEY], other)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
        raise _refuse(folder, folder, f"the saved schedule/RNG state does not fit this run ({err})") from None
    cuda = sorted((k for k in rng if k.startswith(CUDA_RNG_PREFIX)), key=lambda k: int(k[len(CUDA_RNG_PREFIX):]))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([rng[k] for k in cuda])
    return state


# ------------------------------------------------------------------------------------------------
# reading DCP's pickled metadata without running arbitrary code


_ALLOWED_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem",
                    "torch.distributed.checkpoint.planner")
_ALLOWED_GLOBALS = {("torch", "Size"), ("torch", "device"), ("torch._utils", "_rebuild_tensor_v2"),
                    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
                    ("builtins", "slice"), ("pathlib", "PosixPath"), ("torch.serialization", "_get_layout")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in _ALLOWED_MODULES or (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout, torch.memory_format)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


def _fs_reader_cls() -> type:
    from torch.distributed.checkpoint import FileSystemReader

    return FileSystemReader


class SafeFileSystemReader(_fs_reader_cls()):  # type: ignore[misc]
    """DCP's file-system reader whose `.metadata` is unpickled with an allow-list (`_MetadataUnpickler`)."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
        from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            data = stream.read()
        metadata = _MetadataUnpickler(io.BytesIO(data)).load()
        if not isinstance(metadata, Metadata):
            raise pickle.UnpicklingError(f"{path}: not a checkpoint's metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata
