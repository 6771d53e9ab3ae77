"""The checkpoint folder's `README.md`: a Hub model card written with huggingface_hub's `ModelCard`.

Metadata: `library_name: modweave`, `base_model` (the LLM's Hub id, or the parent checkpoint's base)
with `base_model_relation: adapter` where the LLM is referenced rather than copied, and tags with the
modalities and methods. Body: the stages with their parameter counts, how to load, the PEFT folders
(lora), and the accuracy matrix / continual metrics when a run report exists (the trainer's
DIR/report.json next to DIR/checkpoint). Rewritten at every manifest write; a README.md someone else
wrote (no modweave marker) is left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint_manifest import CheckpointError, parent_dir, read_manifest, stage_folders
from .utils import atomic_write_bytes

if TYPE_CHECKING:
    from .model import XModalLM

logger = logging.getLogger(__name__)

CARD = "README.md"
MARKER = "<!-- modweave model card: written by modweave at every save; edit at your own risk -->"


def is_modweave_card(path: Path) -> bool:
    """Whether `path` is a model card this library wrote (it carries the marker)."""
    try:
        return MARKER in path.read_text(errors="replace")[:20000]
    except OSError:
        return False


def _hub_id(name: Any) -> str | None:
    from .hub import is_repo_id

    return name if isinstance(name, str) and is_repo_id(name) and not Path(name).exists() else None


def _base_model(data: dict[str, Any], ckpt_dir: Path) -> tuple[str | None, str | None]:
    """(base_model, base_model_relation): the LLM's Hub id (relation `adapter` when the manifest
    references it instead of storing it), else the base the parent checkpoint's card names."""
    llm = (data.get("config") or {}).get("llm") or {}
    external = data.get("external") or {}
    ref = external.get("llm") if isinstance(external.get("llm"), dict) else None
    hub = _hub_id((ref or {}).get("name_or_path")) or (_hub_id(llm.get("name_or_path")) if llm.get("kind") == "hf" else None)
    if hub:
        return hub, "adapter" if ref else None
    parent = data.get("parent")
    if isinstance(parent, dict):
        try:
            from huggingface_hub import ModelCard

            card = parent_dir(ckpt_dir, parent) / CARD
            base = ModelCard.load(card).data.base_model if card.is_file() else None
            return (base, "adapter") if isinstance(base, str) else (None, None)
        except (CheckpointError, OSError, ValueError):
            return None, None
    return None, None


def _numel_in_file(path: Path) -> int | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            total = 0
            for k in f.keys():
                n = 1
                for d in f.get_slice(k).get_shape():
                    n *= d
                total += n
            return total
    except (OSError, ValueError, RuntimeError):
        return None


def stage_counts(ckpt_dir: Path, data: dict[str, Any], model: "XModalLM | None" = None
                 ) -> list[tuple[int | None, int | None]]:
    """Per manifest stage: (parameters trained in it, tensor elements it owns). From `model` (the
    tensors `checkpoint.owned_keys` gives, the parameters its method trains) when it matches the
    manifest, else the owned count is read from the stage file's header and the trained one is None."""
    stages = data["stages"]
    if model is not None and len(model.stages) >= len(stages) and all(
            model.stages[i].name == s.get("name") for i, s in enumerate(stages)):
        from .checkpoint import _state_name, _trained, owned_keys

        state = model.state_dict()
        out = []
        for i in range(len(stages)):
            owned = [_state_name(k, state) for k in owned_keys(model, i)]
            now = [_state_name(k, state) for k in _trained(model, i)]  # names as the stage had them
            trained = sum(state[k].numel() for k in now if k is not None) if i else None
            out.append((trained, sum(state[k].numel() for k in owned if k is not None)))
        return out
    try:
        folders = stage_folders(ckpt_dir, data)
    except CheckpointError:
        folders = [ckpt_dir] * len(stages)
    return [(None, _numel_in_file(f / s["file"]) if isinstance(s.get("file"), str) else None)
            for f, s in zip(folders, stages)]


def _report(ckpt_dir: Path, report: dict[str, Any] | str | Path | None) -> dict[str, Any] | None:
    """The run report: as given, from a path, or the trainer's DIR/report.json next to DIR/checkpoint."""
    import json

    if isinstance(report, dict):
        return report
    path = Path(report) if report is not None else ckpt_dir.parent / "report.json"
    if report is None and ckpt_dir.name != "checkpoint":
        return None  # only the trainer's layout says which report belongs to this checkpoint
    if not path.is_file():
        if report is not None:
            raise FileNotFoundError(f"{path}: no such report")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a run report ({err})") from None
    return data if isinstance(data, dict) and isinstance(data.get("methods"), dict) else None


def _fmt(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "–"


def _results(report: dict[str, Any]) -> list[str]:
    cols = [str(m) for m in report.get("modalities") or []]
    lines = ["## Results", "", f"Benchmark: {report.get('benchmark', '?')}, seed {report.get('seed', '?')}. "
             "Row *i*: accuracy on each modality after stage *i* (– : not yet learned).", ""]
    for name, entry in report["methods"].items():
        if not isinstance(entry, dict):
            continue
        lines += [f"### {name}", "", "| after stage | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        rows = entry.get("stages") or [f"{i}" for i in range(len(entry.get("acc_matrix") or []))]
        for row_name, row in zip(rows, entry.get("acc_matrix") or []):
            lines.append(f"| {row_name} | " + " | ".join(_num(v) for v in row) + " |")
        lines += ["", "| avg acc | plasticity | forgetting | BWT |", "|---|---|---|---|",
                  "| " + " | ".join(_num(entry.get(k)) for k in ("avg_acc", "plasticity", "forgetting", "bwt")) + " |", ""]
    return lines


def build_model_card(ckpt_dir: str | Path, model: "XModalLM | None" = None,
                     report: dict[str, Any] | str | Path | None = None) -> Any:
    """The `huggingface_hub.ModelCard` of checkpoint folder `ckpt_dir` (its manifest must exist)."""
    from huggingface_hub import ModelCard, ModelCardData

    ckpt_dir = Path(ckpt_dir)
    data = read_manifest(ckpt_dir)
    stages = data["stages"]
    config = data.get("config") or {}
    base_mods = [m.get("name") for m in config.get("base_modalities") or [] if isinstance(m, dict)]
    modalities = list(dict.fromkeys([*base_mods, *(s.get("modality") for s in stages if s.get("modality"))]))
    methods = sorted({s.get("method") for s in stages[1:] if s.get("method")})
    base, relation = _base_model(data, ckpt_dir)
    tags = list(dict.fromkeys(["modweave", "multimodal", "continual-learning",
                               *(f"modality:{m}" for m in modalities if m), *(f"method:{m}" for m in methods)]))
    card_data = ModelCardData(library_name="modweave", base_model=base, tags=tags,
                              **({"base_model_relation": relation} if relation else {}))
    llm = config.get("llm") or {}
    name = ckpt_dir.resolve().parent.name if ckpt_dir.name == "checkpoint" else ckpt_dir.resolve().name
    counts = stage_counts(ckpt_dir, data, model)
    body = [MARKER, "", f"# {name}", "",
            f"A modweave checkpoint: the LLM "
            f"`{base or llm.get('name_or_path') or llm.get('kind', '?')}` grown into "
            f"{', '.join(f'`{m}`' for m in modalities) or 'no modality'} one stage at a time "
            f"({', '.join(methods) or 'base only'}).", "",
            "## Stages", "",
            "| # | stage | modality | method | phase | trained parameters | stored parameters | file |",
            "|---|---|---|---|---|---|---|---|"]
    trained_report = {}
    rep = _report(ckpt_dir, report)
    if rep:
        for entry in rep["methods"].values():
            if isinstance(entry, dict) and isinstance(entry.get("trainable_params"), dict):
                trained_report.update(entry["trainable_params"])
    for i, (s, (trained, stored)) in enumerate(zip(stages, counts)):
        if trained is None and isinstance(trained_report.get(s.get("name")), int):
            trained = trained_report[s.get("name")]
        body.append(f"| {i} | {s.get('name')} | {s.get('modality') or '(base)'} | {s.get('method')} | "
                    f"{s.get('phase')} | {_fmt(trained)} | {_fmt(stored)} | {s.get('file') or '–'} |")
    if data.get("parent"):
        body += ["", f"Stages 0–{data['parent'].get('stages', 1) - 1} live in the parent checkpoint "
                 f"`{data['parent'].get('path')}`."]
    last = next((s.get("modality") for s in reversed(stages) if s.get("modality")), None)
    body += ["", "## Use", "", "```python", "from modweave.model import XModalLM", "",
             f'model = XModalLM.from_pretrained("{name if "/" in name else "PATH_OR_ORG/NAME"}"'
             + (f', upto="{last}"' if last else "") + ")  # upto: the model as it was after that stage", "```"]
    peft_dir = ckpt_dir / "peft"
    adapters = sorted(p.name for p in peft_dir.iterdir() if (p / "adapter_config.json").is_file()) if peft_dir.is_dir() else []
    if adapters:
        body += ["", "## PEFT adapters", "",
                 "The `lora` stages' adapters on the base connector, as standard PEFT folders "
                 "(`peft.PeftModel.from_pretrained(base_connector, folder)`): "
                 + ", ".join(f"`peft/{a}/`" for a in adapters) + "."]
    if rep:
        body += ["", *_results(rep)]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body).rstrip() + "\n"
    return ModelCard(content)


def write_model_card(ckpt_dir: str | Path, model: "XModalLM | None" = None,
                     report: dict[str, Any] | str | Path | None = None) -> Path | None:
    """Write (atomically) `ckpt_dir/README.md`, the folder's Hub model card; returns its path, or None
    when a README.md the library did not write is there (left as it is)."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / CARD
    if path.exists() and not is_modweave_card(path):
        logger.warning("%s: not written by modweave; left as it is (no model card written)", path)
        return None
    card = build_model_card(ckpt_dir, model, report)
    atomic_write_bytes(path, str(card).encode())
    return path
