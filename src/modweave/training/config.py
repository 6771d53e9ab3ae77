"""The trainer's, data loaders' and evaluation's own settings: `RunConfig.train` / `.data` / `.eval`.

YAML keys (all optional):

train:   steps (optimizer steps per stage phase, 100), batch_size (per process, 16), grad_accum (1),
         lr (1e-3), weight_decay (0.01), betas ([0.9, 0.999]), warmup_steps (0), min_lr_ratio (0.0: the
         cosine decays to 0), max_grad_norm (1.0; null: no clipping), mixed_precision ("no" | "bf16" |
         "fp16", GPU only), gradient_checkpointing (false), compile (false: torch.compile the LLM and
         connectors while a phase trains), compile_backend ("inductor"), checkpoint_every (0: only at stage ends),
         log_every (10), log_with (null | "tensorboard" | "wandb" | "trackio" | "mlflow" | ...: accelerate's trackers), num_workers (0), cpu (false: use a
         GPU when there is one), progress (true), base ({...}: overrides for the base stage, e.g. steps),
         distributed ({strategy: ddp | fsdp, timeout, reshard_after_forward}: how several processes
         share a phase; docs/distributed.md).
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
         meta.json; keys of `write_digits`, e.g. n_train, n_test, modalities, pairs), xmodal
         ("xmodal_{split}.jsonl": samples with several media; the base trains on those of its own
         modalities, every evaluation row scores each label whose modalities all have paths; "": off),
         feature_cache (null | "memory" | DIR: frozen-encoder features computed once per frame, see
         `modweave cache-features`).
eval:    enabled (true), batch_size (32), max_new_tokens (4), num_beams (1), qa_mode ("generate": exact
         match of the generated answer | "rank": rank the record's candidates by summed answer
         log-likelihood), modalities (columns of the accuracy matrix; default: base then stage modalities).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, from_dict, setting


# accelerate's experiment trackers (`Accelerator(log_with=...)`), each from its own package
TRACKERS = ("tensorboard", "wandb", "trackio", "mlflow", "aim", "comet_ml", "clearml", "dvclive")


STRATEGIES = ("ddp", "fsdp")


@dataclass
class DistributedConfig:
    """How several processes (`accelerate launch` / `torchrun`) share a phase: `ddp` replicates the model
    (every rank holds every tensor), `fsdp` shards the LLM's decoder layers and the rest of the model
    across ranks with PyTorch FSDP2 (`fully_shard`), parameters, gradients and optimizer state alike.
    `timeout`: seconds a collective waits for the other ranks before the run fails (a dead or stuck rank).
    `full_model_on` (fsdp): where each rank keeps the full model between phases (stage end, stage file,
    evaluation): `device` (its GPU), or `cpu` (host memory, for a model one GPU cannot hold: only the
    training phase's shards go to the GPU; the stage end and evaluation then run on the CPU)."""

    strategy: str = setting("ddp", choices=STRATEGIES)
    timeout: float = setting(1800.0, gt=0)
    reshard_after_forward: bool = True  # fsdp: free gathered layers after forward (gather again in backward)
    full_model_on: str = setting("device", choices=("device", "cpu"))


@dataclass
class TrainConfig:
    steps: int = setting(100, min=0)
    batch_size: int = setting(16, min=1)
    grad_accum: int = setting(1, min=1)
    lr: float = setting(1e-3, min=0)
    weight_decay: float = setting(0.01, min=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = setting(0, min=0)
    min_lr_ratio: float = setting(0.0, min=0, max=1)
    max_grad_norm: float | None = setting(1.0, gt=0)
    mixed_precision: str = setting("no", choices=("no", "bf16", "fp16"))
    gradient_checkpointing: bool = False
    # torch.compile the LLM and the connectors while a phase trains (state-dict keys unchanged);
    # the backend: "inductor" (generated C++/Triton kernels), "aot_eager" (graphs, no codegen), ...
    compile: bool = False
    compile_backend: str = "inductor"
    checkpoint_every: int = setting(0, min=0)
    log_every: int = setting(10, min=0)
    log_with: str | None = setting(None, choices=TRACKERS)
    num_workers: int = setting(0, min=0)
    cpu: bool = False
    progress: bool = True
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    base: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    root: str | None = None
    train: str = "{modality}_train.jsonl"
    test: str = "{modality}_test.jsonl"
    base_modalities: list[str] | None = None
    max_train: int | None = setting(None, min=1)
    max_test: int | None = setting(None, min=1)
    heldout: int = setting(16, min=0)
    loader: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: bool = True
    digits: dict[str, Any] | None = None
    follow_symlinks: bool = False  # media reached through a symlink out of `root` are refused unless true
    # samples holding several media (X-modal pairs): `root / xmodal.format(split=...)` where present; the
    # base trains on the pairs of its own modalities, every stage's evaluation asks every pair it can; "" = off
    xmodal: str = "xmodal_{split}.jsonl"
    # frozen-encoder features computed once per frame and reused (modweave.feature_cache): null (off),
    # "memory", or a folder of safetensors shards (`modweave cache-features` fills it; the run adds to it)
    feature_cache: str | None = None


@dataclass
class EvalConfig:
    enabled: bool = True
    batch_size: int = setting(32, min=1)
    max_new_tokens: int = setting(4, min=1)
    num_beams: int = setting(1, min=1)
    qa_mode: str = setting("generate", choices=("generate", "rank"))
    modalities: list[str] | None = None


def parse_section(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    """Build dataclass `cls` from a config mapping; unknown keys and bad values name the key."""
    if isinstance(data, dict) and "mixed_precision" in data and data["mixed_precision"] in (False, None):
        data = {**data, "mixed_precision": "no"}  # YAML reads a bare `no` as false
    obj = from_dict(cls, data or {}, where)
    _check(obj, where)
    return obj


def _check(obj: Any, where: str) -> None:
    if isinstance(obj, TrainConfig):
        if not all(0 <= b < 1 for b in obj.betas):
            raise ConfigError(f"config key '{where}.betas': each must be in [0, 1), got {list(obj.betas)}")
        if obj.distributed.strategy == "fsdp" and obj.mixed_precision == "fp16":
            raise ConfigError(f"config key '{where}.mixed_precision': 'fp16' needs a gradient scaler, which the "
                              "fsdp strategy does not run: use 'bf16' or 'no'")
        if obj.base:
            stage_train_config(obj, obj.base, f"{where}.base")  # the base stage's overrides, checked now
    if isinstance(obj, DataConfig) and obj.digits is not None:
        _check_digits(obj.digits, f"{where}.digits")


def _check_digits(digits: dict[str, Any], where: str) -> None:
    """`data.digits` holds keyword arguments of `write_digits`: refuse the ones it does not take."""
    from ..data.digits import write_digits

    if "overwrite" in digits:
        raise ConfigError(f"config key '{where}.overwrite': not allowed (the data folder is never overwritten)")
    # the folder comes from data.root; `config` takes a Python DigitsConfig, not YAML
    known = [n for n in inspect.signature(write_digits).parameters if n not in ("out_dir", "overwrite", "config")]
    unknown = sorted((k for k in digits if k not in known), key=str)
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{unknown[0]}' (known: {', '.join(known)})")


@dataclass
class RunSections:
    """A run's trainer, data and evaluation settings, typed: what `RunConfig.train/data/eval` and each
    stage's `train:` overrides mean, parsed once (`base`: the base stage's, with `train.base` applied;
    `stages[i][phase]`: stage i's phase, with its stage and phase overrides applied)."""

    train: TrainConfig
    data: DataConfig
    eval: EvalConfig
    base: TrainConfig
    stages: list[dict[str, TrainConfig]]


def run_sections(cfg: Any) -> RunSections:
    """Parse and check a `RunConfig`'s sections and each stage's method, settings and `train:`
    overrides (per phase of its method); every error names the key."""
    from ..methods import get_method

    train = parse_section(TrainConfig, cfg.train, "train")
    stages = []
    for i, st in enumerate(cfg.stages):
        try:
            impl = get_method(st.method)
        except ValueError as err:
            raise ConfigError(f"config key 'stages[{i}].method': {err}") from None
        try:
            impl.check_settings(dict(st.settings), where=f"stages[{i}].settings")
        except ConfigError:
            raise
        except ValueError as err:  # a method's own check that does not name the key
            raise ConfigError(f"config key 'stages[{i}].settings': {err}") from None
        stages.append(phase_train_configs(train, st.train, impl.phases, f"stages[{i}].train"))
    return RunSections(train=train, data=parse_section(DataConfig, cfg.data, "data"),
                       eval=parse_section(EvalConfig, cfg.eval, "eval"),
                       base=stage_train_config(train, train.base, "train.base"), stages=stages)


def _split_phases(overrides: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stage's `train:` mapping -> (its own overrides, its `phases:` mapping)."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"config key '{where}': expected a mapping, got {type(overrides).__name__}")
    overrides = dict(overrides)
    per_phase = overrides.pop("phases", None) or {}
    if not isinstance(per_phase, dict):
        raise ConfigError(f"config key '{where}.phases': expected a mapping of phase names")
    return overrides, {p: v or {} for p, v in per_phase.items()}


def phase_train_configs(base: TrainConfig, overrides: dict[str, Any], phases: tuple[str, ...],
                        where: str) -> dict[str, TrainConfig]:
    """Each phase's config: `base`, the stage's `train:` overrides, then its `phases.<phase>` ones."""
    overrides, per_phase = _split_phases(overrides, where)
    unknown = sorted((p for p in per_phase if p not in phases), key=str)
    if unknown:
        raise ConfigError(f"unknown config key '{where}.phases.{unknown[0]}' (phases: {', '.join(phases)})")
    stage = stage_train_config(base, overrides, where)
    return {p: stage_train_config(stage, per_phase.get(p) or {}, f"{where}.phases.{p}") for p in phases}


def stage_train_config(base: TrainConfig, overrides: dict[str, Any], where: str) -> TrainConfig:
    """`base` with a stage's `train:` overrides applied (the nested `base` key is not inherited)."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"config key '{where}': expected a mapping, got {type(overrides).__name__}")
    data = {k: v for k, v in dataclasses.asdict(base).items() if k != "base"}
    unknown = sorted((k for k in overrides if k not in data), key=str)
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{unknown[0]}' (known: {', '.join(data)})")
    if isinstance(overrides.get("distributed"), dict):  # a nested mapping: only the keys given change
        overrides = {**overrides, "distributed": {**data["distributed"], **overrides["distributed"]}}
    return parse_section(TrainConfig, {**data, **overrides}, where)
