"""One stage phase of training: AdamW + warm-up/cosine over the model's trainable parameters.

Method-agnostic: it trains whatever `requires_grad` says. Supports gradient accumulation, mixed
precision and several processes through accelerate, in-stage checkpoints and exact resume.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.collate import row_media
from ..utils import count_params
from .config import TrainConfig
from .data import BatchOrder
from .optim import build_optimizer
from .sharded_state import check_state_kind, load_sharded_trainer_state, save_sharded_trainer_state
from .state import latest_trainer_state, load_trainer_state, save_trainer_state

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the stage and step."""


def _gradient_checkpointing(model: Any, on: bool) -> None:
    """Activation checkpointing on the LLM (transformers' own switch; v5 renamed it) and on every
    connector (through the connector interface)."""
    llm = model.llm
    if hasattr(llm, "activation_checkpointing_enable"):
        fn = llm.activation_checkpointing_enable if on else llm.activation_checkpointing_disable
        kwargs = {"activation_checkpointing_kwargs": {"use_reentrant": False}} if on else {}
    else:
        fn = llm.gradient_checkpointing_enable if on else llm.gradient_checkpointing_disable
        kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}} if on else {}
    try:
        fn(**kwargs)
    except ValueError as err:  # a model class without checkpointing support
        logger.warning("activation checkpointing not available for %s: %s", type(llm).__name__, err)
    for conn in model.connectors.values():
        conn.set_grad_checkpointing(on)


def train_phase(*, model: Any, accelerator: Any, stage: str, items: Any, cfg: TrainConfig, seed: int,
                out_dir: Path, resume: bool, on_step: Callable[[], None] | None = None,
                log_fn: Callable[[dict, int], None] | None = None) -> dict[str, Any]:
    """Train the model's trainable parameters for `cfg.steps` optimizer steps on `items`.

    Returns `{"losses": [[step, loss], ...], "seconds", "trainable_params", "samples"}`. `on_step` runs
    after each step (and its checkpoint): the test hook that simulates a kill."""
    trainable = count_params(model, trainable_only=True)
    if trainable == 0 or cfg.steps == 0:
        logger.info("stage %s: nothing to train (%d trainable parameters, %d steps)", stage, trainable, cfg.steps)
        return {"losses": [], "seconds": 0.0, "trainable_params": trainable, "samples": 0}
    # fsdp: the phase's modules exist now; shard them before the optimizer sees their parameters
    sharded = shard_for_phase(model, accelerator, cfg)
    optimizer, scheduler = build_optimizer(model, cfg)
    collate = model.collator(train=True)
    order = BatchOrder(len(items), cfg.batch_size, seed, accelerator.process_index, accelerator.num_processes)
    if cfg.gradient_checkpointing:
        _gradient_checkpointing(model, True)
    if cfg.compile:
        _compile(model, cfg.compile_backend)
    model.train()
    wrapped, optimizer = accelerator.prepare(model, optimizer) if sharded is None else (model, optimizer)
    start, losses = 0, []
    ckpt = latest_trainer_state(out_dir, stage) if resume else None
    if ckpt is not None:
        check_state_kind(ckpt, sharded is not None)
        load = load_trainer_state if sharded is None else load_sharded_trainer_state
        state = load(ckpt, model, optimizer, scheduler)
        start, losses = state["step"], state["losses"]
        logger.info("stage %s: resumed from %s (step %d)", stage, ckpt, start)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {stage}", unit="step", dynamic_ncols=True,
               disable=not (cfg.progress and accelerator.is_main_process))
    t0, samples = time.perf_counter(), 0
    try:
        for step in range(start, cfg.steps):
            step_loss = torch.zeros((), device=accelerator.device)
            if sharded is not None:
                sharded.start_step()
            for micro in range(cfg.grad_accum):
                batch = collate([items[i] for i in order.indices(step * cfg.grad_accum + micro)])
                sync = micro == cfg.grad_accum - 1
                ctx = accelerator.no_sync(wrapped) if not sync and accelerator.num_processes > 1 else _null()
                if sharded is not None:
                    ctx = sharded.accumulating(sync)
                with ctx, _routing(model, batch, cfg.gradient_checkpointing):
                    loss = wrapped(batch).loss / cfg.grad_accum
                    # every process sees the mean loss, so a non-finite one stops all of them together
                    seen = accelerator.reduce(loss.detach().clone(), reduction="mean")
                    if not torch.isfinite(seen):
                        raise TrainingError(
                            f"stage '{stage}' step {step + 1}: loss is {seen.item()}; training stopped. The last "
                            f"good checkpoint is kept in {out_dir} (lower train.lr or check the data)")
                    accelerator.backward(loss)
                step_loss += seen
                samples += len(batch["ids"]) * accelerator.num_processes
            grad_norm = None
            if sharded is not None:
                sharded.finish_gradients()
            if cfg.max_grad_norm is not None and sharded is not None:
                grad_norm = sharded.clip_grad_norm_(cfg.max_grad_norm)
            elif cfg.max_grad_norm is not None:
                grad_norm = accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                        cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(step_loss)
            losses.append([step + 1, value])
            elapsed = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", samples_s=f"{samples / max(elapsed, 1e-9):.1f}")
            if cfg.log_every and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
                logger.info("stage %s step %d/%d loss %.4f lr %.2e", stage, step + 1, cfg.steps, value,
                            scheduler.get_last_lr()[0])
            if log_fn is not None:
                values = {f"loss/{stage}": value, f"lr/{stage}": scheduler.get_last_lr()[0]}
                if grad_norm is not None:
                    values[f"grad_norm/{stage}"] = float(grad_norm)
                log_fn(values, step + 1)
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                if not _all_finite(model, sharded):
                    raise TrainingError(f"stage '{stage}' step {step + 1}: parameters became non-finite; "
                                        f"the last good checkpoint in {out_dir} is kept")
                if sharded is not None:  # every rank writes its shards
                    save_sharded_trainer_state(out_dir, stage, step + 1, model, optimizer, scheduler, losses)
                elif accelerator.is_main_process:
                    save_trainer_state(out_dir, stage, step + 1, model, optimizer, scheduler, losses)
                accelerator.wait_for_everyone()
            if on_step is not None:
                on_step()
        if sharded is not None:  # the stage file, end_phase and evaluation see full, plain tensors
            sharded.gather()
    except RuntimeError as err:
        from .distributed import peer_failure

        alone = accelerator.num_processes < 2 or isinstance(err, TrainingError)
        why = None if alone else peer_failure(err, cfg.distributed.timeout)
        if why is None:
            raise
        raise TrainingError(f"stage '{stage}' (process {accelerator.process_index} of {accelerator.num_processes}): "
                            f"{why}; the last good checkpoint in {out_dir} is kept (resume with --resume)") from err
    finally:
        bar.close()
        if cfg.gradient_checkpointing:
            _gradient_checkpointing(model, False)
        if cfg.compile:
            _compile(model, None)
        # undo accelerate's autocast wrapper on forward (mixed precision) and drop this phase's references
        if sharded is None:
            accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)
        accelerator.free_memory()
    seconds = time.perf_counter() - t0
    if losses and not math.isfinite(losses[-1][1]):
        raise TrainingError(f"stage '{stage}': final loss is not finite")
    return {"losses": losses, "seconds": seconds, "trainable_params": trainable, "samples": samples}


def _compile(model: Any, backend: str | None) -> None:
    """`torch.compile` the LLM's and the connectors' calls in place (`nn.Module.compile`: parameters and
    state-dict keys stay as they are), or, with `backend=None`, go back to eager calls. Routing state
    the modules read (`model.context`) is guarded by dynamo: a new modality or phase recompiles."""
    for module in (model.llm, *model.connectors.values()):
        if backend is None:
            module._compiled_call_impl = None
        else:
            module.compile(backend=backend)


def shard_for_phase(model: Any, accelerator: Any, cfg: TrainConfig) -> Any:
    """`ShardedModel` (training/distributed.py) when this phase runs fsdp on several processes, else None."""
    from .distributed import shard_phase, wants_fsdp

    if not wants_fsdp(cfg.distributed.strategy, accelerator):
        if cfg.distributed.strategy == "fsdp":
            logger.info("train.distributed.strategy=fsdp with one process: nothing to shard, training as is")
        return None

    return shard_phase(model, accelerator.device.type, str(accelerator.mixed_precision),
                       cfg.distributed.reshard_after_forward)


def _all_finite(model: Any, sharded: Any) -> bool:
    """Whether every trainable parameter is finite (on every rank's shards when sharded)."""
    if sharded is None:
        return all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad)
    return sharded.all_finite()


def _routing(model: Any, batch: dict[str, Any], checkpointing: bool) -> contextlib.AbstractContextManager:
    """Keep the model's routing context set through backward when activation checkpointing is on.

    Checkpointed layers run their forward again during backward, after `model.forward` has left its
    `context.path(m)` / `context.samples(...)` blocks; modules routed by the context (adapters, per-
    modality experts) would then recompute with no modality and fail. Training batches of a stage hold
    one modality, so the context can stay set for the whole step."""
    stack = contextlib.ExitStack()
    if checkpointing:
        rows = model.row_modalities(batch)
        stack.enter_context(model.context.samples(rows))
        media = {m for i in range(len(rows)) for m, _ in row_media(batch, i)}
        if len(media) == 1:
            stack.enter_context(model.context.path(media.pop()))
    return stack


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
