"""Figures of a report: one annotated accuracy-matrix heat map per method, and loss curves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .utils import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_matrices(report: Mapping[str, Any], path: Path) -> Path:
    """Heat map per method: rows = after stage s, columns = modality j, cells annotated (– = no path)."""
    import numpy as np

    plt = _pyplot()
    methods = list(report["methods"].items())
    mods = report["modalities"]
    n_rows = max((len(e["acc_matrix"]) for _, e in methods), default=1)
    cols = min(3, max(len(methods), 1))  # a grid of at most 3 per row stays readable
    grid = -(-max(len(methods), 1) // cols)
    fig, axes = plt.subplots(grid, cols, figsize=((2.2 + 0.9 * len(mods)) * cols, (1.6 + 0.6 * n_rows) * grid),
                             squeeze=False)
    for ax in axes.flat[len(methods):]:
        ax.axis("off")
    for ax, (name, e) in zip(axes.flat, methods):
        matrix = np.array([[np.nan if v is None else v for v in row] for row in e["acc_matrix"]], dtype=float)
        rows = e.get("stages") or [f"stage {i}" for i in range(len(matrix))]
        ax.set_title(name if len(report.get("seeds") or []) < 2 else f"{name} (mean of {len(report['seeds'])} seeds)")
        if matrix.size == 0:  # a run without evaluation
            ax.axis("off")
            ax.text(0.5, 0.5, "not evaluated", ha="center", va="center")
            continue
        image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="accuracy")
        ax.set_xticks(range(len(mods)), mods, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), [f"after {r}" for r in rows])
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                v = matrix[i, j]
                ax.text(j, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center",
                        color="black" if not np.isnan(v) and v > 0.6 else "white", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_losses(histories: Mapping[str, Mapping[str, list]], path: Path) -> Path:
    """Training loss per stage, one panel per method (x: steps run through the stages in order)."""
    plt = _pyplot()
    methods = [(n, h) for n, h in histories.items() if h]
    cols = min(3, max(len(methods), 1))
    grid = -(-max(len(methods), 1) // cols)
    fig, axes = plt.subplots(grid, cols, figsize=(5.6 * cols, 3.2 * grid), squeeze=False)
    for ax in axes.flat[len(methods):]:
        ax.axis("off")
    for ax, (name, stages) in zip(axes.flat, methods):
        offset = 0
        colours = plt.get_cmap("tab20").colors  # distinct per stage (MoExtend has 3 phases a modality)
        for k, (stage, points) in enumerate(stages.items()):
            if not points:
                continue
            xs = [offset + p[0] for p in points]
            ax.plot(xs, [p[1] for p in points], label=stage, linewidth=1, color=colours[k % len(colours)])
            offset = xs[-1]
        ax.set_title(name)
        ax.set_xlabel("step (stages in order)")
        ax.set_ylabel("loss")
        # outside the axes: a legend on top of the curves hides them
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_xmodal(report: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars: each X-modal pair's accuracy after the last stage, one bar per method, chance dashed
    (merged over seeds: the mean, with the std as an error bar)."""
    import numpy as np

    plt = _pyplot()
    entries = {n: e["xmodal"] for n, e in report["methods"].items() if e.get("xmodal")}
    labels = list(dict.fromkeys(k for x in entries.values() for k in x["labels"]))
    width = 0.8 / max(len(entries), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * len(labels) * max(1, len(entries) / 3), 3.6))
    colours = plt.get_cmap("tab10")
    for i, (name, x) in enumerate(entries.items()):
        vals = [np.nan if x["final"].get(k) is None else x["final"][k] for k in labels]
        spread = report["methods"][name].get("spread") or {}
        errs = [(spread.get(f"xmodal.{k}") or {}).get("std") for k in labels]
        yerr = [np.nan if e is None else e for e in errs] if any(e is not None for e in errs) else None
        ax.bar(np.arange(len(labels)) + (i - (len(entries) - 1) / 2) * width, vals, width, label=name,
               color=colours(i % 10), yerr=yerr, capsize=2 if yerr else 0)
    chance = [next((x["chance"].get(k) for x in entries.values() if x["chance"].get(k) is not None), np.nan)
              for k in labels]
    for j, c in enumerate(chance):
        ax.hlines(c, j - 0.45, j + 0.45, colors="black", linestyles="dashed", linewidth=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy after the last stage")
    seeds = report.get("seeds") or []
    bars = f"; bars: mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else ""
    ax.set_title(f"X-modal pairs (dashed: chance; only image+image was trained{bars})", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
