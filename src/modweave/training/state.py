"""In-stage trainer checkpoints: trainable parameters, optimizer, schedule, RNG states, step.

DIR/trainer/<stage>/step-000012/ holds
  params.safetensors  trainable parameters by name, plus the torch (and CUDA) RNG states (uint8)
  optimizer.pt        the optimizer's state_dict (tensors and numbers; read with weights_only=True)
  state.json          step, scheduler state, python/numpy RNG states, the stage's loss history
A step folder is written under a temp name and renamed (atomic); older step folders are removed
after it. Only complete folders carry the `step-` name, so a kill mid-write leaves the previous one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

RNG_KEY = "__rng_torch__"
CUDA_RNG_PREFIX = "__rng_cuda_"


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


def load_trainer_state(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any) -> dict[str, Any]:
    """Restore params / optimizer / scheduler / RNG from `folder`; returns state.json's data."""
    state = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "params.safetensors"))
    torch_rng = tensors.pop(RNG_KEY)
    cuda_keys = sorted((k for k in list(tensors) if k.startswith(CUDA_RNG_PREFIX)),
                       key=lambda k: int(k[len(CUDA_RNG_PREFIX):]))
    cuda_rng = [tensors.pop(k) for k in cuda_keys]
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(tensors) != trainable:
        missing = sorted(trainable - set(tensors))[:3]
        extra = sorted(set(tensors) - trainable)[:3]
        raise RuntimeError(f"{folder}: trainer checkpoint does not match the stage's trainable parameters "
                           f"(missing {missing}, unexpected {extra})")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(torch_rng, state["rng"])
    if cuda_rng and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_rng)
    return state


def clear_stage(root: Path, stage: str) -> None:
    shutil.rmtree(stage_dir(root, stage), ignore_errors=True)
