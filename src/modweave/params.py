"""Per-stage trainable / total parameter counts, computed on the meta device (no weights, no download)."""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .model import BASE_CONNECTOR, XModalLM
from .utils import count_params


def stage_param_counts(cfg: RunConfig, device: str = "meta") -> dict[str, Any]:
    """`{"stages": {name: {"trainable", "total"}}, "reference_connector": n}` for every stage of `cfg`.

    `reference_connector` is the size of one full connector (Q-Former + projection, or projector):
    what a connector per modality would train at each step (the paper's 98.7% comparison)."""
    model = XModalLM.build(cfg.model, device=device)
    stages: dict[str, dict[str, int]] = {}
    if cfg.base_train is not None:
        model.set_base_trainable(**cfg.base_train)
    stages["base"] = {"trainable": count_params(model, True), "total": count_params(model)}
    model.end_stage()
    for st in cfg.stages:
        model.add_modality(st.modality, method=st.method, settings=st.settings)
        record = model.stages[-1]
        while record is not None:
            stages[record.name] = {"trainable": count_params(model, True), "total": count_params(model)}
            model.end_stage()
            record = model.next_phase()
    ref = count_params(model.connectors[BASE_CONNECTOR])
    return {"stages": stages, "reference_connector": ref}


def format_table(counts: dict[str, Any]) -> str:
    ref = counts["reference_connector"]
    rows = [f"{'stage':<22}{'trainable':>16}{'total':>18}{'vs. full connector':>20}"]
    for name, c in counts["stages"].items():
        frac = f"{100 * (1 - c['trainable'] / ref):.1f}% fewer" if name != "base" and ref else ""
        rows.append(f"{name:<22}{c['trainable']:>16,}{c['total']:>18,}{frac:>20}")
    rows.append(f"(full connector = Q-Former/projector + LLM projection: {ref:,} parameters)")
    return "\n".join(rows)

