"""Dataclass configs for the model, their dict/YAML round trip and `key=value` overrides.

A model is described by a `ModelConfig` (the base: LLM, tokenizer, connector, base modality paths)
plus an ordered list of stages (`StageConfig`: which modality arrives, through which method).
Everything here is plain data so that it can be written to a checkpoint manifest and read back.

Every section is checked by `fields.check_fields` (type, range, unknown keys; one sentence naming the key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .fields import ConfigError, check_fields, from_dict, setting, to_dict  # noqa: F401  (the config API)


# free-form answers (`generate`); evaluation's one-word answers use EvalConfig.max_new_tokens. Here, not in
# model.py, so that the CLI builds its parsers without importing torch models
GENERATE_MAX_NEW_TOKENS = 16


@dataclass
class LLMConfig:
    """The causal LM. `kind` is a builder name (`tiny-mixtral`, `tiny-llama`, `hf`)."""

    kind: str = "tiny-mixtral"
    name_or_path: str | None = None  # HF id or local dir for kind="hf"; a config.json for meta builds
    hidden_size: int = setting(128, min=1)
    intermediate_size: int = setting(256, min=1)
    num_layers: int = setting(2, min=1)
    num_heads: int = setting(4, min=1)
    num_kv_heads: int = setting(2, min=1)
    num_experts: int = setting(4, min=1)
    top_k: int = setting(2, min=1)
    max_positions: int = setting(512, min=1)
    router_aux_loss_coef: float = setting(0.01, min=0)
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
    hidden_size: int = setting(128, min=1)
    num_layers: int = setting(2, min=1)
    num_heads: int = setting(4, min=1)
    intermediate_size: int = setting(256, min=1)
    cross_attention_frequency: int = setting(2, min=1)
    encoder_width: int = setting(128, min=1)  # width of the cross-attention key/value input (1408 in InstructBLIP)
    num_query_tokens: int = setting(8, min=1)
    max_text_positions: int = setting(128, min=1)
    instruction_input: bool = True  # feed the instruction text to the Q-Former (InstructBLIP)
    dropout: float = setting(0.0, min=0, max=1)
    mlp_hidden: int | None = setting(None, min=1)  # hidden width of the `mlp` projector (None: LLM width)
    mlp_layers: int = setting(2, min=1)
    name_or_path: str | None = None  # a Q-Former config.json (architecture) for paper-scale presets
    seed: int = 0


@dataclass
class EncoderConfig:
    """A frozen encoder. `kind` is a registered encoder builder; the rest are its settings."""

    kind: str = "tiny-image"
    name_or_path: str | None = None
    width: int = setting(128, min=1)
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModalitySpec:
    """One modality path: its encoder (a config, or the name of an encoder already in the model),
    the cue text put before its tokens, and how its files load (`loader`: the data loader settings)."""

    name: str
    encoder: EncoderConfig | str = "image"
    cue: str = ""
    # frames (video) per sample: sets the loader's frame count; None: the loader's own default
    num_frames: int | None = setting(None, min=1)
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


def modality_spec(data: dict[str, Any] | ModalitySpec, where: str = "modality") -> ModalitySpec:
    return data if isinstance(data, ModalitySpec) else from_dict(ModalitySpec, data, where)


# ----------------------------------------------------------------------------------------------
# YAML presets and key=value overrides


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {_yaml_problem(err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:  # unreadable (permissions, a vanished file)
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    data.setdefault("_dir", str(path.parent.resolve()))
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line from a PyYAML error: where (line, column) and what."""
    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark, context = getattr(err, "problem_mark", None), getattr(err, "context_mark", None)
    text = "YAML syntax error" + (f" at {at(mark)}" if mark is not None else "")
    text += f": {getattr(err, 'problem', None) or err}"
    if getattr(err, "context", None) and context is not None:
        text += f" ({err.context} at {at(context)})"
    return " ".join(text.split())


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML scalars/lists) to a nested dict; a number
    indexes a list (`stages.0.method=lora`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{item}': {_yaml_problem(err)}") from None
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"override '{item}': the key has an empty part")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                i = _list_index(node, part, key, ".".join(parts[:depth]))
            elif isinstance(node, dict):
                i = part
            else:
                raise ConfigError(f"override '{key}': '{'.'.join(parts[:depth])}' is not a mapping")
            if last:
                node[i] = value
            else:
                if isinstance(node, dict) and node.get(i) is None:  # a missing or empty (null) section
                    node[i] = {}
                node = node[i]
    return data


def _list_index(node: list, part: str, key: str, list_key: str) -> int:
    try:
        i = int(part)
    except ValueError:
        raise ConfigError(f"override '{key}': '{list_key}' is a list; '{part}' is not an index") from None
    if not -len(node) <= i < len(node):
        raise ConfigError(f"override '{key}': index {i} is out of range ('{list_key}' has {len(node)} entries)")
    return i


def dumps(obj: Any) -> str:
    return json.dumps(to_dict(obj), indent=2, sort_keys=False)


@dataclass
class BaseTrainConfig:
    """What the base stage trains: the flags of `XModalLM.set_base_trainable` (each true when left out).
    Only the keys are checked here; `RunConfig.base_train` stays the mapping as written."""

    llm: bool
    connector: bool
    paths: bool


@dataclass
class RunConfig:
    """A whole run: the base model, whether the base trains first, and the continual stages.
    `train` / `data` / `eval` are the trainer's, evaluation's and data loaders' own settings (checked
    by `modweave.training.config` when the run config is parsed)."""

    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    # e.g. {llm: true, connector: true, paths: true}; None: the base is given
    base_train: dict[str, Any] | None = setting(None, schema=BaseTrainConfig)
    stages: list[StageConfig] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


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
    """Parse a preset dict (from `load_yaml` + overrides) into a `RunConfig`: every section is checked
    now, before anything is built or written (the trainer's sections too)."""
    data = dict(data)
    base_dir = data.pop("_dir", None)
    cfg = from_dict(RunConfig, resolve_paths(data, base_dir))
    names = [s.modality.name for s in cfg.stages] + [m.name for m in cfg.model.base_modalities]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"config key 'stages': modality '{sorted(dup)[0]}' appears twice")
    from .training.config import run_sections

    run_sections(cfg)  # the trainer's sections, stage methods and settings: checked before anything is built
    check_encoder_options(cfg)
    return cfg


def check_encoder_options(cfg: RunConfig) -> None:
    """Refuse unknown or mistyped encoder `options`, for encoder kinds that declare them.

    Hook: `modweave.encoders.encoder_options(kind)` returns the dataclass of a kind's options (None: not
    declared, nothing is checked); while that hook is absent, nothing is checked here."""
    from . import encoders

    lookup = getattr(encoders, "encoder_options", None)
    if lookup is None:
        return
    specs = [(f"model.base_modalities[{i}]", m) for i, m in enumerate(cfg.model.base_modalities)]
    specs += [(f"stages[{i}].modality", s.modality) for i, s in enumerate(cfg.stages)]
    for where, spec in specs:
        if isinstance(spec.encoder, EncoderConfig):
            try:
                schema = lookup(spec.encoder.kind)
            except (ValueError, KeyError) as err:
                raise ConfigError(f"config key '{where}.encoder.kind': {err}") from None
            if schema is not None:
                check_fields(schema, spec.encoder.options, f"{where}.encoder.options")


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    return run_config(apply_overrides(load_yaml(path), overrides or []))
