"""The trainer's, data loaders' and evaluation's own settings: `RunConfig.train` / `.data` / `.eval`.

YAML keys (all optional):

train:   steps (optimizer steps per stage phase, 100), batch_size (per process, 16), grad_accum (1),
         lr (1e-3), weight_decay (0.01), betas ([0.9, 0.999]), warmup_steps (0), min_lr_ratio (0.0: the
         cosine decays to 0), max_grad_norm (1.0; null: no clipping), mixed_precision ("no" | "bf16" |
         "fp16", GPU only), gradient_checkpointing (false), checkpoint_every (0: only at stage ends),
         log_every (10), log_with (null | "tensorboard" | "wandb"), num_workers (0), cpu (false: use a
         GPU when there is one), progress (true), base ({...}: overrides for the base stage, e.g. steps).
         A stage's own `train:` mapping overrides these for that stage (every phase of it); its
         `phases: {<phase>: {...}}` overrides one phase of a multi-phase method (e.g. MoExtend's
         align / extender / finetune learning rates).
data:    root (the benchmark folder), train ("{modality}_train.jsonl"), test ("{modality}_test.jsonl"),
         base_modalities (modalities trained in the base stage; default: "text" if it has a file, then
         the model's base modalities), max_train / max_test (first N records per modality; null: all),
         heldout (16: samples held back from the end of each training file, at most a quarter of it, passed
         to `end_stage`),
         loader ({modality: {...}}: loader settings over the path spec's `loader`), cache (true: keep
         loaded media in memory), digits (null | {...}: write MCL-Digits into root first when it has no
         meta.json; keys of `write_digits`, e.g. n_train, n_test, modalities).
eval:    enabled (true), batch_size (32), max_new_tokens (4), num_beams (1), qa_mode ("generate": exact
         match of the generated answer | "rank": rank the record's candidates by summed answer
         log-likelihood), modalities (columns of the accuracy matrix; default: base then stage modalities).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError


@dataclass
class TrainConfig:
    steps: int = 100
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 0
    log_every: int = 10
    log_with: str | None = None
    num_workers: int = 0
    cpu: bool = False
    progress: bool = True
    base: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    root: str | None = None
    train: str = "{modality}_train.jsonl"
    test: str = "{modality}_test.jsonl"
    base_modalities: list[str] | None = None
    max_train: int | None = None
    max_test: int | None = None
    heldout: int = 16
    loader: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: bool = True
    digits: dict[str, Any] | None = None


@dataclass
class EvalConfig:
    enabled: bool = True
    batch_size: int = 32
    max_new_tokens: int = 4
    num_beams: int = 1
    qa_mode: str = "generate"
    modalities: list[str] | None = None


def parse_section(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    """Build dataclass `cls` from a config mapping; unknown keys and bad values name the key."""
    data = dict(data or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{unknown[0]}' (known: {', '.join(known)})")
    obj = cls(**data)
    _check(obj, where)
    return obj


def _check(obj: Any, where: str) -> None:
    if isinstance(obj, TrainConfig):
        for key in ("steps", "batch_size", "grad_accum"):
            value = getattr(obj, key)
            if not isinstance(value, int) or value < (0 if key == "steps" else 1):
                raise ConfigError(f"config key '{where}.{key}': expected a positive integer, got {value!r}")
        if obj.mixed_precision in (False, None):  # YAML reads a bare `no` as false
            obj.mixed_precision = "no"
        if obj.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"config key '{where}.mixed_precision': 'no', 'bf16' or 'fp16', got {obj.mixed_precision!r}")
        if obj.log_with not in (None, "tensorboard", "wandb"):
            raise ConfigError(f"config key '{where}.log_with': null, 'tensorboard' or 'wandb', got {obj.log_with!r}")
        obj.betas = tuple(obj.betas)  # YAML lists
    if isinstance(obj, EvalConfig) and obj.qa_mode not in ("generate", "rank"):
        raise ConfigError(f"config key '{where}.qa_mode': 'generate' or 'rank', got {obj.qa_mode!r}")


def phase_train_configs(base: TrainConfig, overrides: dict[str, Any], phases: tuple[str, ...],
                        where: str) -> dict[str, TrainConfig]:
    """Each phase's config: `base`, the stage's `train:` overrides, then its `phases.<phase>` ones."""
    overrides = dict(overrides)
    per_phase = dict(overrides.pop("phases", None) or {})
    unknown = sorted(set(per_phase) - set(phases))
    if unknown:
        raise ConfigError(f"unknown config key '{where}.phases.{unknown[0]}' (phases: {', '.join(phases)})")
    stage = stage_train_config(base, overrides, where)
    return {p: stage_train_config(stage, per_phase.get(p) or {}, f"{where}.phases.{p}") for p in phases}


def stage_train_config(base: TrainConfig, overrides: dict[str, Any], where: str) -> TrainConfig:
    """`base` with a stage's `train:` overrides applied (the nested `base` key is not inherited)."""
    data = {k: v for k, v in dataclasses.asdict(base).items() if k != "base"}
    unknown = sorted(set(overrides) - set(data))
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{unknown[0]}' (known: {', '.join(data)})")
    return parse_section(TrainConfig, {**data, **overrides}, where)
