"""Run reports: `report.json` (the spec's schema), `report.md`, `accuracy_matrix.png`, `loss_curves.png`,
`xmodal.png` (when the run asked X-modal questions: each method entry then has `xmodal`, see `xmodal_entry`).

report.json = {"benchmark", "modalities": [...], "seed", "methods": {NAME: {"acc_matrix": [[...]],
"avg_acc", "plasticity", "forgetting", "bwt", "trainable_params": {stage: n}, "total_params",
"train_seconds": {stage: s}, "stages": [row names]}}}; loss histories live in loss_history.json
({NAME: {stage: [[step, loss], ...]}}). `add_method` merges one method into a report folder (the demo
runs several methods into one), `render` re-draws the markdown and figures from the JSON files.
A demo method variant's entry also holds `"variant": {"method": registered name, "settings": {...}}`.

Merged over seeds (`report_seeds.merge_seeds`, `modweave demo --seeds 0,1,2`), the same schema, plus:
- top level `"seeds": [0, 1, 2]` (the seeds in run order; `"seed"` is the first of them);
- every number of a method entry is the MEAN over seeds: `acc_matrix` cell by cell, `avg_acc`,
  `plasticity`, `forgetting`, `bwt`, `plasticity_per_modality`, `train_seconds`, `xmodal` (`matrix`,
  `final`, `mean_without_image`); `trainable_params` / `total_params` are the counts when every seed
  has the same (they do: the architecture does not depend on the seed), else their mean;
- per method `"spread": {METRIC: {"mean", "std", "n", "values"}}` for METRIC in `avg_acc`,
  `plasticity`, `forgetting`, `bwt`, `final.<modality>` (each final-row accuracy), `xmodal.<pair>`
  (each pair's final X-modal accuracy) and `xmodal.mean_without_image`: `values` per seed in `seeds`
  order (None where that seed has none), `n` the seeds with a value, `mean` their mean, `std` their
  sample standard deviation (n - 1 in the denominator; None when n < 2).
check_report holds for both; report.md and the console table show `mean ± std` where a spread exists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .utils import atomic_write_bytes

logger = logging.getLogger(__name__)

REPORT = "report.json"
LOSSES = "loss_history.json"
METHOD_KEYS = ("acc_matrix", "avg_acc", "plasticity", "forgetting", "bwt", "trainable_params", "total_params",
               "train_seconds")


def check_report(report: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first key the schema needs and `report` lacks."""
    for key in ("benchmark", "modalities", "seed", "methods"):
        if key not in report:
            raise ValueError(f"report lacks '{key}'")
    for name, entry in report["methods"].items():
        for key in METHOD_KEYS:
            if key not in entry:
                raise ValueError(f"report: method '{name}' lacks '{key}'")
        for i, row in enumerate(entry["acc_matrix"]):
            if len(row) != len(report["modalities"]):
                raise ValueError(f"report: method '{name}' acc_matrix row {i} has {len(row)} entries, "
                                 f"expected {len(report['modalities'])}")


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def largest_stage_trainable(entry: Mapping[str, Any]) -> int | None:
    """"trainable / stage" in every table (console, report.md, README): the largest continual stage's
    trainable parameters (the base's when there is no continual stage)."""
    counts = entry.get("trainable_params") or {}
    stages = [v for k, v in counts.items() if k != "base" and v is not None]
    return max(stages) if stages else counts.get("base")


def stage_train_seconds(entry: Mapping[str, Any]) -> float:
    """"train s" in every table: training seconds of the continual stages (the shared base excluded)."""
    return float(sum(v for k, v in (entry.get("train_seconds") or {}).items() if k != "base" and v is not None))


def add_method(out_dir: str | Path, name: str, entry: Mapping[str, Any], *, benchmark: str, modalities: Sequence[str],
               seed: int, losses: Mapping[str, Any] | None = None, render_files: bool = True) -> dict[str, Any]:
    """Add (or replace) method `name` in `out_dir/report.json`, creating it if needed; re-render."""
    out = Path(out_dir)
    report = _read_json(out / REPORT, {"benchmark": benchmark, "modalities": list(modalities), "seed": seed,
                                       "methods": {}})
    if list(report["modalities"]) != list(modalities):
        raise ValueError(f"{out / REPORT}: modalities {report['modalities']} differ from {list(modalities)}")
    report["methods"][name] = dict(entry)
    histories = _read_json(out / LOSSES, {})
    if losses is not None:
        histories[name] = dict(losses)
    write_report(out, report, histories, render_files=render_files)
    return report


def merge_reports(paths: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Merge several report folders (same benchmark and modalities) into `out_dir`. `out_dir`'s own
    report, if it has one, is merged first: its methods are kept (a later folder's method of the same
    name replaces it)."""
    merged: dict[str, Any] | None = None
    histories: dict[str, Any] = {}
    own = Path(out_dir)
    folders = [Path(p).parent if Path(p).name == REPORT else Path(p) for p in paths]
    if (own / REPORT).is_file() and own.resolve() not in {f.resolve() for f in folders}:
        paths = [own, *folders]
    for p in paths:
        p = Path(p)
        folder = p.parent if p.name == REPORT else p
        report = _read_json(folder / REPORT, None)
        if report is None:
            raise FileNotFoundError(f"{folder / REPORT} not found")
        if merged is None:
            merged = {**report, "methods": {}}
        elif report["modalities"] != merged["modalities"]:
            raise ValueError(f"{folder}: modalities {report['modalities']} differ from {merged['modalities']}")
        merged["methods"].update(report["methods"])
        histories.update(_read_json(folder / LOSSES, {}))
    if merged is None:
        raise ValueError("nothing to merge")
    write_report(Path(out_dir), merged, histories)
    return merged


def write_report(out_dir: Path, report: dict[str, Any], histories: Mapping[str, Any] | None = None,
                 render_files: bool = True) -> None:
    check_report(report)
    out_dir = Path(out_dir)
    _write_json(out_dir / REPORT, report)
    if histories is not None:
        _write_json(out_dir / LOSSES, dict(histories))
    if render_files:
        render(out_dir)


def render(out_dir: str | Path) -> list[Path]:
    """Re-draw report.md, accuracy_matrix.png and loss_curves.png from report.json (+ loss_history.json)."""
    out = Path(out_dir)
    report = _read_json(out / REPORT, None)
    if report is None:
        raise FileNotFoundError(f"{out / REPORT} not found (train first: modweave train CONFIG --out {out})")
    check_report(report)
    atomic_write_bytes(out / "report.md", markdown(report).encode())
    written = [out / "report.md"]
    from .report_plots import plot_accuracy_matrices, plot_losses, plot_xmodal

    written.append(plot_accuracy_matrices(report, out / "accuracy_matrix.png"))
    if any(e.get("xmodal") for e in report["methods"].values()):
        written.append(plot_xmodal(report, out / "xmodal.png"))
    histories = _read_json(out / LOSSES, {})
    if any(histories.values()):
        written.append(plot_losses(histories, out / "loss_curves.png"))
    return written


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _count(v: int | float | None) -> str:
    """A parameter count; merged over seeds it is a mean (seeds may extend different layers): rounded."""
    return "–" if v is None else f"{round(v):,}"


def _cell(entry: Mapping[str, Any], metric: str, value: Any) -> str:
    """`value` as text, or `mean ± std` from the entry's spread over seeds when it has one."""
    s = (entry.get("spread") or {}).get(metric)
    if s is None:
        return _fmt(value)
    return _fmt(s["mean"]) if s["std"] is None else f"{_fmt(s['mean'])} ± {_fmt(s['std'])}"


def _title(report: Mapping[str, Any]) -> str:
    seeds = report.get("seeds")
    if seeds and len(seeds) > 1:
        return (f"# {report['benchmark']} (seeds {', '.join(map(str, seeds))}: mean ± std over "
                f"n = {len(seeds)} seeds, sample std)")
    return f"# {report['benchmark']} (seed {report['seed']})"


def markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: a summary table, then each method's accuracy matrix and budget
    (a report merged over seeds: mean ± std cells, mean matrices, a final-accuracy table)."""
    mods = report["modalities"]
    lines = [_title(report), "",
             "| method | avg acc | plasticity | forgetting | BWT | trainable / stage (largest) | total params | train s (stages) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in report["methods"].items():
        largest, seconds = largest_stage_trainable(e), stage_train_seconds(e)
        cells = " | ".join(_cell(e, k, e[k]) for k in ("avg_acc", "plasticity", "forgetting", "bwt"))
        lines.append(f"| {name} | {cells} | {_count(largest)} | {_count(e['total_params'])} | {seconds:.1f} |")
    if any(e.get("spread") for e in report["methods"].values()):
        lines += ["", "final accuracy per modality (after the last stage), mean ± std over seeds:", "",
                  "| method | " + " | ".join(mods) + " |", "|---" * (len(mods) + 1) + "|"]
        for name, e in report["methods"].items():
            last = e["acc_matrix"][-1] if e["acc_matrix"] else [None] * len(mods)
            lines.append(f"| {name} | " + " | ".join(_cell(e, f"final.{m}", v) for m, v in zip(mods, last)) + " |")
    lines += xmodal_markdown(report)
    mean = " (mean over seeds)" if report.get("seeds") and len(report["seeds"]) > 1 else ""
    for name, e in report["methods"].items():
        rows = e.get("stages") or [f"stage {i}" for i in range(len(e["acc_matrix"]))]
        lines += ["", f"## {name}", "", f"accuracy after each stage (rows) on each modality (columns){mean}:", "",
                  "| after \\ on | " + " | ".join(mods) + " |", "|---" * (len(mods) + 1) + "|"]
        for r, row in zip(rows, e["acc_matrix"]):
            lines.append(f"| {r} | " + " | ".join(_fmt(v) for v in row) + " |")
        lines += ["", "| stage | trainable params | train s |", "|---|---|---|"]
        for stage, n in e["trainable_params"].items():
            lines.append(f"| {stage} | {_count(n)} | {_fmt(e['train_seconds'].get(stage), 1)} |")
    return "\n".join(lines) + "\n"


def xmodal_markdown(report: Mapping[str, Any]) -> list[str]:
    """The X-modal table: each pair's accuracy after the last stage, per method (chance marked), and
    the mean over the pairs without image (never trained together: zero-shot). [] when none.
    Merged over seeds: mean ± std cells."""
    entries = {n: e for n, e in report["methods"].items() if e.get("xmodal")}
    if not entries:
        return []
    labels = list(dict.fromkeys(k for e in entries.values() for k in e["xmodal"]["labels"]))
    chance = {k: next((e["xmodal"]["chance"].get(k) for e in entries.values()
                       if e["xmodal"]["chance"].get(k) is not None), None) for k in labels}
    lines = ["", "## X-modal reasoning", "",
             "accuracy on questions about two media at once, after the last stage (only image + image pairs "
             "were ever trained: every other pair is zero-shot); chance in the header:", "",
             "| method | " + " | ".join(f"{k} ({_fmt(chance[k], 2)})" for k in labels) + " | mean w/o image |",
             "|---" * (len(labels) + 2) + "|"]
    for name, e in entries.items():
        x = e["xmodal"]
        lines.append(f"| {name} | " + " | ".join(_cell(e, f"xmodal.{k}", x["final"].get(k)) for k in labels)
                     + f" | {_cell(e, 'xmodal.mean_without_image', x['mean_without_image'])} |")
    return lines


# ----------------------------------------------------------------------------------------------
# from a training run's progress.json (train.py)


def method_entry(progress: dict[str, Any]) -> dict[str, Any]:
    """A method's report entry (spec schema) from a run's progress data."""
    from .metrics import continual_metrics

    rows = [r for r in ["base", *_stage_rows(progress)] if r in progress["rows"]]
    matrix = [progress["rows"][r]["acc"] for r in rows]
    learned = [None if (lj is None or lj >= len(matrix)) else lj for lj in progress["learned_at"]]
    metrics = continual_metrics(matrix, learned, progress["columns"]) if matrix else {}
    return {
        "acc_matrix": matrix,
        "avg_acc": metrics.get("avg_acc"),
        "plasticity": metrics.get("plasticity"),
        "forgetting": metrics.get("forgetting"),
        "bwt": metrics.get("bwt"),
        "trainable_params": dict(progress["trainable_params"]),
        "total_params": progress["total_params"],
        "train_seconds": dict(progress["train_seconds"]),
        "stages": rows,
        "plasticity_per_modality": metrics.get("plasticity_per_modality"),
        **({"xmodal": x} if (x := xmodal_entry(progress, rows)) else {}),
    }


def xmodal_entry(progress: Mapping[str, Any], rows: Sequence[str]) -> dict[str, Any] | None:
    """X-modal results of a run: `labels` (pairs such as `image+audio`), `matrix` (score after each row
    on each label, None before both modalities had paths), `final` (label -> score after the last
    row), `chance` (label -> guessing accuracy) and `mean_without_image` (the final mean over labels
    holding no image: pairs the model never saw together, all zero-shot)."""
    labels = list(dict.fromkeys(k for r in rows for k in (progress["rows"][r].get("xmodal") or {})))
    if not labels:
        return None
    matrix = [[(progress["rows"][r].get("xmodal") or {}).get(k) for k in labels] for r in rows]
    final = dict(zip(labels, matrix[-1]))
    cross = [v for k, v in final.items() if v is not None and "image" not in k.split("+")]
    return {"labels": labels, "matrix": matrix, "final": final,
            "chance": {k: (progress.get("xmodal_chance") or {}).get(k) for k in labels},
            "mean_without_image": sum(cross) / len(cross) if cross else None}


def _stage_rows(progress: dict[str, Any]) -> list[str]:
    stages = progress.get("config", {}).get("stages", [])
    return [s["modality"]["name"] for s in stages]


def report_from_progress(progress: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
    """A report holding `methods`, with benchmark / modalities / seed taken from a run's progress."""
    data = progress.get("config", {}).get("data", {}) or {}
    benchmark = "mcl-digits" if data.get("digits") is not None else progress.get("name", "run")
    meta = Path(data["root"]) / "meta.json" if data.get("root") else None
    if meta is not None and meta.exists():
        benchmark = json.loads(meta.read_text()).get("benchmark", benchmark)
    return {"benchmark": benchmark, "modalities": progress["columns"], "seed": progress["seed"], "methods": methods}
