"""In-stage trainer checkpoints: trainable parameters, optimizer, schedule, RNG states, step.

DIR/trainer/<stage>/step-000012/ holds
  params.safetensors  trainable parameters by name, plus the torch (and CUDA) RNG states (uint8)
  optimizer.pt        the optimizer's state_dict (tensors and numbers; read with weights_only=True)
  state.json          step, scheduler state, python/numpy RNG states, the stage's loss history
A step folder is written under a temp name and renamed (atomic); older step folders are removed
after it. Only complete folders carry the `step-` name, so a kill mid-write leaves the previous one.
A corrupt or foreign state (a pickle holding objects, a truncated file) is a `TrainerStateError` naming
the file and the folder to delete to restart the stage from its first step; nothing is unpickled.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..utils import chmod_like_open

RNG_KEY = "__rng_torch__"
CUDA_RNG_PREFIX = "__rng_cuda_"


class TrainerStateError(RuntimeError):
    """An in-stage trainer checkpoint that cannot be restored; the message names the file and the fix."""


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def stage_dir(root: Path, stage: str) -> Path:
    return root / "trainer" / _safe(stage)


def rng_state() -> tuple[torch.Tensor, dict[str, Any]]:
    py = random.getstate()
    np_state = np.random.get_state()
    return torch.get_rng_state(), {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *map(_plain, np_state[2:])],
    }


def _plain(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def set_rng_state(torch_state: torch.Tensor, other: dict[str, Any]) -> None:
    torch.set_rng_state(torch_state)
    py = other["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = other["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))


def save_trainer_state(root: Path, stage: str, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any, losses: list[list[float]]) -> Path:
    """Write the trainer state after `step` optimizer steps of `stage` (main process only)."""
    folder = stage_dir(root, stage)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch_rng, other_rng = rng_state()
    tensors = {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}
    tensors[RNG_KEY] = torch_rng.clone()
    if torch.cuda.is_available():  # GPU runs: dropout streams continue too (exactness is a CPU promise)
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{CUDA_RNG_PREFIX}{i}"] = st.clone()
    save_file(tensors, str(tmp / "params.safetensors"))
    chmod_like_open(tmp / "params.safetensors")  # safetensors creates its files 0600 whatever the umask
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    state = {"stage": stage, "step": step, "scheduler": scheduler.state_dict(), "rng": other_rng, "losses": losses}
    (tmp / "state.json").write_text(json.dumps(state))
    final = folder / f"step-{step:06d}"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_trainer_state(root: Path, stage: str) -> Path | None:
    steps = sorted(stage_dir(root, stage).glob("step-*"))
    return steps[-1] if steps else None


def _refuse(path: Path, folder: Path, why: str) -> TrainerStateError:
    stage = folder.parent  # DIR/trainer/<stage>: every step folder of the stage
    return TrainerStateError(f"{path}: {why}; to discard the in-stage state and restart this stage from its "
                             f"first step, delete {stage} and rerun with --resume")


def _read_state_json(folder: Path) -> dict[str, Any]:
    path = folder / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise _refuse(path, folder, f"unreadable trainer state ({type(err).__name__})") from None
    need = ("step", "scheduler", "rng", "losses")
    if not isinstance(state, dict) or any(k not in state for k in need) or not isinstance(state["step"], int):
        raise _refuse(path, folder, f"not a trainer state (needs {', '.join(need)})")
    return state


def _read_params(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / "params.safetensors"
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise _refuse(path, folder, f"unreadable parameters ({type(err).__name__})") from None
    if RNG_KEY not in tensors:
        raise _refuse(path, folder, f"no {RNG_KEY} tensor: not a modweave trainer state")
    return tensors


def _read_optimizer(folder: Path) -> dict[str, Any]:
    """The optimizer's state_dict, read as plain tensors and numbers only (weights_only=True)."""
    path = folder / "optimizer.pt"
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        # torch's own message suggests unpickling anyway; never pass that on
        raise _refuse(path, folder, "holds objects other than tensors and numbers, which modweave does not "
                      "unpickle") from None
    except (OSError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as err:
        raise _refuse(path, folder, f"unreadable optimizer state ({type(err).__name__})") from None
    if not isinstance(state, dict) or "state" not in state or "param_groups" not in state:
        raise _refuse(path, folder, "not an optimizer state_dict")
    return state


def load_trainer_state(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any) -> dict[str, Any]:
    """Restore params / optimizer / scheduler / RNG from `folder`; returns state.json's data."""
    state = _read_state_json(folder)
    tensors = _read_params(folder)
    opt_state = _read_optimizer(folder)
    torch_rng = tensors.pop(RNG_KEY)
    cuda_keys = sorted((k for k in list(tensors) if k.startswith(CUDA_RNG_PREFIX)),
                       key=lambda k: int(k[len(CUDA_RNG_PREFIX):]))
    cuda_rng = [tensors.pop(k) for k in cuda_keys]
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(tensors) != trainable:
        missing = sorted(trainable - set(tensors))[:3]
        extra = sorted(set(tensors) - trainable)[:3]
        raise _refuse(folder / "params.safetensors", folder, "trainer checkpoint does not match the stage's "
                      f"trainable parameters (missing {missing}, unexpected {extra})")
    bad = [n for n, v in tensors.items() if v.shape != params[n].shape]
    if bad:
        raise _refuse(folder / "params.safetensors", folder, f"{bad[0]} has shape {list(tensors[bad[0]].shape)}, "
                      f"the model {list(params[bad[0]].shape)}")
    try:
        optimizer.load_state_dict(opt_state)
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(torch_rng, state["rng"])
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
        raise _refuse(folder, folder, f"the saved optimizer/schedule/RNG state does not fit this run ({err})") from None
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    if cuda_rng and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_rng)
    return state


def clear_stage(root: Path, stage: str) -> None:
    shutil.rmtree(stage_dir(root, stage), ignore_errors=True)
