"""What is registered and what it accepts, generated from the registries and the settings dataclasses
(the same sources the validators use): `modweave list` prints it, `docs/config.md` is rendered from it."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

KINDS = ("methods", "modalities", "encoders", "connectors", "bases")


def _type_name(tp: Any) -> str:
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", None) or str(tp)
    return str(text).replace("typing.", "").replace("NoneType", "None")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(its section's defaults)" if len(dataclasses.fields(value)) > 3 else repr(dataclasses.asdict(value))
        return repr(value)
    return "(required)"


def _range(f: dataclasses.Field) -> str:
    meta = f.metadata or {}
    parts = [f">= {meta['min']}" if "min" in meta else "", f"> {meta['gt']}" if "gt" in meta else "",
             f"<= {meta['max']}" if "max" in meta else "",
             "one of " + ", ".join(map(repr, meta["choices"])) if "choices" in meta else ""]
    return "; ".join(p for p in parts if p)


def fields_of(cls: type | None) -> list[dict[str, str]]:
    """`[{"key", "type", "default", "range"}]` of a settings dataclass (empty for None)."""
    if cls is None:
        return []
    hints = typing.get_type_hints(cls)
    return [{"key": f.name, "type": _type_name(hints.get(f.name, f.type)), "default": _default(f), "range": _range(f)}
            for f in dataclasses.fields(cls) if f.init]


def _summary(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    if not doc or doc.startswith(type(obj).__name__ + "(") or (isinstance(obj, type) and doc.startswith(obj.__name__ + "(")):
        return ""  # a dataclass's generated signature is no description
    return " ".join(doc.split("\n\n")[0].split())


def registered(kind: str) -> list[dict[str, Any]]:
    """Each registered unit of `kind`: `{"name", "summary", "settings": fields_of(...)}`."""
    if kind == "methods":
        from .methods import get_method, list_methods

        out = []
        for name in list_methods():
            impl = get_method(name)
            own = dataclasses.fields(impl.settings_cls)
            out.append({"name": name, "summary": (_summary(impl.settings_cls) if own else "") or _summary(type(impl)),
                        "phases": list(impl.phases), "settings": fields_of(impl.settings_cls)})
        return out
    if kind == "modalities":
        from .modalities import get_modality, list_modalities

        return [{"name": m, "summary": _summary(type(get_modality(m))),
                 "settings": fields_of(get_modality(m).settings_cls)} for m in list_modalities()]
    if kind == "encoders":
        from .encoders import ENCODERS, encoder_options, list_encoders

        return [{"name": k, "summary": _summary(ENCODERS.get(k)[0]), "settings": fields_of(encoder_options(k))}
                for k in list_encoders()]
    if kind == "connectors":
        from .config import ConnectorConfig
        from .connectors import CONNECTORS, list_connectors

        return [{"name": k, "summary": _summary(CONNECTORS.get(k)), "settings": fields_of(ConnectorConfig)}
                for k in list_connectors()]
    if kind == "bases":
        from .bases import BASES, list_bases

        return [{"name": k, "summary": _summary(BASES.get(k)), "settings": []} for k in list_bases()]
    raise ValueError(f"unknown kind '{kind}' (known: {', '.join(KINDS)})")


def format_units(kind: str) -> str:
    lines = []
    for unit in registered(kind):
        head = unit["name"] + (f" (phases: {', '.join(unit['phases'])})" if unit.get("phases") else "")
        lines.append(head + (f": {unit['summary']}" if unit["summary"] else ""))
        for f in unit["settings"]:
            rng = f"  [{f['range']}]" if f["range"] else ""
            lines.append(f"    {f['key']}: {f['type']} = {f['default']}{rng}")
    return "\n".join(lines)


def _section_rows(cls: type) -> list[str]:
    rows = ["| key | type | default | allowed |", "|---|---|---|---|"]
    for f in fields_of(cls):
        rows.append(f"| `{f['key']}` | `{f['type']}` | `{f['default']}` | {f['range']} |")
    return rows


def config_reference() -> str:
    """docs/config.md: every YAML key of a run, section by section, from the dataclasses themselves."""
    from .config import (BaseTrainConfig, ConnectorConfig, EncoderConfig, LLMConfig, ModalitySpec, ModelConfig,
                         PromptConfig, RunConfig, StageConfig, TokenizerConfig)
    from .training.config import DataConfig, DistributedConfig, EvalConfig, TrainConfig

    sections = [("top level", RunConfig), ("model", ModelConfig), ("model.llm", LLMConfig),
                ("model.tokenizer", TokenizerConfig), ("model.connector", ConnectorConfig),
                ("model.prompt", PromptConfig), ("a path spec (model.base_modalities[i], stages[i].modality)",
                                                 ModalitySpec),
                ("an encoder (a path spec's encoder)", EncoderConfig), ("stages[i]", StageConfig),
                ("base_train", BaseTrainConfig), ("train (and train.base, stages[i].train, stages[i].train.phases.<p>)",
                                                  TrainConfig),
                ("train.distributed", DistributedConfig), ("data", DataConfig), ("eval", EvalConfig)]
    out = ["# Configuration reference", "",
           "Generated from the config dataclasses by `modweave.discovery.config_reference()` (a test keeps this",
           "file equal to it). Method settings, loader settings and encoder options: `modweave list`.", ""]
    for title, cls in sections:
        out += [f"## {title}", ""]
        if _summary(cls):
            out += [_summary(cls), ""]
        out += _section_rows(cls) + [""]
    for kind in ("methods", "modalities", "encoders"):
        out += [f"## {kind}: settings (`stages[i].settings`, loader settings, encoder options)", ""]
        for unit in registered(kind):
            out += [f"### `{unit['name']}`", ""]
            if unit["summary"]:
                out += [unit["summary"], ""]
            if unit["settings"]:
                out += ["| key | type | default | allowed |", "|---|---|---|---|"]
                out += [f"| `{f['key']}` | `{f['type']}` | `{f['default']}` | {f['range']} |" for f in unit["settings"]]
                out += [""]
    return "\n".join(out).rstrip() + "\n"
