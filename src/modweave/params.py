"""Per-stage trainable / total parameter counts, computed on the meta device (no weights, no download)."""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .model import BASE_CONNECTOR, XModalLM
from .stages import walk_phases
from .utils import count_params


def stage_param_counts(cfg: RunConfig, device: str = "meta") -> dict[str, Any]:
    """`{"stages": {name: {"trainable", "total"}}, "reference_connector": n}` for every stage of `cfg`.

    `reference_connector` is the size of one full connector (Q-Former + projection, or projector):
    what a connector per modality would train at each step (the paper's 98.7% comparison)."""
    model = XModalLM.build(cfg.model, device=device)
    ref = count_params(model.connectors[BASE_CONNECTOR])  # before any method adds modules inside it
    stages: dict[str, dict[str, int]] = {}
    if cfg.base_train is not None:
        model.set_base_trainable(**cfg.base_train)
    stages["base"] = {"trainable": count_params(model, True), "total": count_params(model)}
    model.end_stage()
    for st in cfg.stages:
        model.add_modality(st.modality, method=st.method, settings=st.settings)
        for record in walk_phases(model):
            stages[record.name] = {"trainable": count_params(model, True), "total": count_params(model)}
    return {"stages": stages, "reference_connector": ref}


def format_table(counts: dict[str, Any]) -> str:
    """A table; the last column compares each step with training a full connector for the modality."""
    ref = counts["reference_connector"]
    rows = [f"{'stage':<22}{'trainable':>16}{'total':>18}{'vs. a full connector':>23}{'of the model':>14}"]
    for name, c in counts["stages"].items():
        cmp = share = ""
        if name != "base" and ref:
            frac = c["trainable"] / ref
            # a step that trains more than a connector (MoExtend's experts) is not compared with one
            cmp = f"{100 * (1 - frac):.1f}% fewer" if frac < 1 else "(more: not compared)"
        if c["total"]:
            share = f"{100 * c['trainable'] / c['total']:.3f}%"
        rows.append(f"{name:<22}{c['trainable']:>16,}{c['total']:>18,}{cmp:>23}{share:>14}")
    rows.append(f"(a full connector = the base's Q-Former/projector + LLM projection: {ref:,} parameters)")
    return "\n".join(rows)

