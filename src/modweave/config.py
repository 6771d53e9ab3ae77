"""Dataclass configs for the model, their dict/YAML round trip and `key=value` overrides.

A model is described by a `ModelConfig` (the base: LLM, tokenizer, connector, base modality paths)
plus an ordered list of stages (`StageConfig`: which modality arrives, through which method).
Everything here is plain data so that it can be written to a checkpoint manifest and read back.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@dataclass
class LLMConfig:
    """The causal LM. `kind` is a builder name (`tiny-mixtral`, `tiny-llama`, `hf`)."""

    kind: str = "tiny-mixtral"
    name_or_path: str | None = None  # HF id or local dir for kind="hf"; a config.json for meta builds
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    num_experts: int = 4
    top_k: int = 2
    max_positions: int = 512
    router_aux_loss_coef: float = 0.01
    dtype: str = "float32"
    seed: int = 0
    freeze: bool = True


@dataclass
class TokenizerConfig:
    """`kind`: `word` (a word-level tokenizer trained on `corpus`) or `hf` (load `name_or_path`)."""

    kind: str = "word"
    name_or_path: str | None = None
    corpus: list[str] = field(default_factory=list)


@dataclass
class ConnectorConfig:
    """A connector from encoder tokens to LLM-width tokens: `qformer` or `mlp`."""

    kind: str = "qformer"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    cross_attention_frequency: int = 2
    encoder_width: int = 128  # width of the cross-attention key/value input (1408 in InstructBLIP)
    num_query_tokens: int = 8
    max_text_positions: int = 128
    instruction_input: bool = True  # feed the instruction text to the Q-Former (InstructBLIP)
    dropout: float = 0.0
    mlp_hidden: int | None = None  # hidden width of the `mlp` projector (None: LLM width)
    mlp_layers: int = 2
    name_or_path: str | None = None  # a Q-Former config.json (architecture) for paper-scale presets
    seed: int = 0


@dataclass
class EncoderConfig:
    """A frozen encoder. `kind` is a registered encoder builder; the rest are its settings."""

    kind: str = "tiny-image"
    name_or_path: str | None = None
    width: int = 128
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModalitySpec:
    """One modality path: its encoder (a config, or the name of an encoder already in the model),
    the cue text put before its tokens, and how its files load (`loader`: the data loader settings)."""

    name: str
    encoder: EncoderConfig | str = "image"
    cue: str = ""
    num_frames: int = 1
    loader: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptConfig:
    """How a sample is laid out for the LLM. `template` holds `{media}` (cue + modality tokens) and
    `{prompt}`; the answer follows it. `"{media}{prompt}"` is the InstructBLIP order; the
    feasibility run learned faster with `"{prompt}{media}"` on tiny LLMs trained from scratch."""

    template: str = "{media} {prompt}"
    answer_prefix: str = " "
    add_bos: bool = True
    add_eos: bool = True


@dataclass
class ModelConfig:
    """`base`: a ready-made base built from a real checkpoint instead of the parts below, e.g.
    `instructblip:Salesforce/instructblip-vicuna-7b` (see modweave.bases); its parts then describe it."""

    base: str | None = None
    llm: LLMConfig = field(default_factory=LLMConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    base_modalities: list[ModalitySpec] = field(default_factory=list)


@dataclass
class StageConfig:
    """One continual step: modality `modality` arrives through `method` with `settings`."""

    modality: ModalitySpec
    method: str = "ana"
    settings: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # trainer overrides for this stage


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> JSON-able dict."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from `data`, refusing unknown keys (the error names the key path)."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{where or cls.__name__}': expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{_join(where, unknown[0])}' (known: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(fields[name].type, value, _join(where, name))
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"config '{where or cls.__name__}': {err}") from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


_NESTED = {
    "LLMConfig": LLMConfig,
    "TokenizerConfig": TokenizerConfig,
    "ConnectorConfig": ConnectorConfig,
    "EncoderConfig": EncoderConfig,
    "ModalitySpec": ModalitySpec,
    "PromptConfig": PromptConfig,
}


def _convert(type_str: Any, value: Any, where: str) -> Any:
    t = str(type_str)
    if t.startswith("list[ModalitySpec]"):
        return [from_dict(ModalitySpec, v, f"{where}[{i}]") for i, v in enumerate(value or [])]
    if t.startswith("EncoderConfig | str"):
        return value if isinstance(value, str) else from_dict(EncoderConfig, value, where)
    if t in _NESTED:
        return from_dict(_NESTED[t], value, where)
    return value


def modality_spec(data: dict[str, Any] | ModalitySpec, where: str = "modality") -> ModalitySpec:
    return data if isinstance(data, ModalitySpec) else from_dict(ModalitySpec, data, where)


# ----------------------------------------------------------------------------------------------
# YAML presets and key=value overrides


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    data.setdefault("_dir", str(path.parent.resolve()))
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML scalars/lists) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[int(part)]
                continue
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"override '{key}': '{part}' is not a mapping")
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value
    return data


def dumps(obj: Any) -> str:
    return json.dumps(to_dict(obj), indent=2, sort_keys=False)


@dataclass
class RunConfig:
    """A whole run: the base model, whether the base trains first, and the continual stages.
    `train` / `data` / `eval` are the trainer's, evaluation's and data loaders' own settings."""

    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    base_train: dict[str, Any] | None = None  # e.g. {llm: true, connector: true, paths: true}; None: base is given
    stages: list[StageConfig] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


def stage_config(data: Any, where: str) -> StageConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{where}': a stage must be a mapping")
    data = dict(data)
    if "modality" not in data:
        raise ConfigError(f"config key '{where}.modality' is missing")
    unknown = sorted(set(data) - {"modality", "method", "settings", "train"})
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{unknown[0]}' (known: modality, method, settings, train)")
    return StageConfig(modality=modality_spec(data["modality"], f"{where}.modality"),
                       method=data.get("method", "ana"), settings=dict(data.get("settings") or {}),
                       train=dict(data.get("train") or {}))


def resolve_paths(node: Any, base_dir: str | None) -> Any:
    """Make `name_or_path` values starting with './' relative to the preset file's folder."""
    if base_dir is None:
        return node
    if isinstance(node, dict):
        return {k: (str(Path(base_dir) / v[2:]) if k == "name_or_path" and isinstance(v, str) and v.startswith("./")
                    else resolve_paths(v, base_dir)) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_paths(v, base_dir) for v in node]
    return node


def run_config(data: dict[str, Any]) -> RunConfig:
    """Parse a preset dict (from `load_yaml` + overrides) into a `RunConfig`."""
    data = dict(data)
    base_dir = data.pop("_dir", None)
    data = resolve_paths(data, base_dir)
    stages = data.pop("stages", []) or []
    model = data.pop("model", {}) or {}
    cfg = from_dict(RunConfig, data)
    cfg.model = from_dict(ModelConfig, model, "model")
    cfg.stages = [stage_config(s, f"stages[{i}]") for i, s in enumerate(stages)]
    names = [s.modality.name for s in cfg.stages] + [m.name for m in cfg.model.base_modalities]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"config key 'stages': modality '{sorted(dup)[0]}' appears twice")
    return cfg


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    return run_config(apply_overrides(load_yaml(path), overrides or []))
