"""One report from the same demo run with several seeds: every number the mean over seeds, and a
`spread` (mean, std, n, values) per headline metric. The schema: report.py's docstring."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

HEADLINE = ("avg_acc", "plasticity", "forgetting", "bwt")


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """`{"mean", "std", "n", "values"}` of the values that are not None (std: sample, n - 1; None when
    n < 2; mean None when n == 0)."""
    have = [float(v) for v in values if v is not None]
    return {"mean": statistics.fmean(have) if have else None,
            "std": statistics.stdev(have) if len(have) > 1 else None,
            "n": len(have), "values": list(values)}


def _mean(values: Sequence[Any]) -> Any:
    """The mean of the values that are not None (None when none is); equal numbers are kept as they
    are (an int count stays an int)."""
    have = [v for v in values if v is not None]
    if not have:
        return None
    if all(v == have[0] for v in have) and len(have) == len(values):
        return have[0]
    return statistics.fmean(have)


def _mean_dicts(dicts: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Key by key `_mean` over mappings with the same keys (None when every one is None)."""
    present = [d for d in dicts if d is not None]
    if not present:
        return None
    keys = list(dict.fromkeys(k for d in present for k in d))
    return {k: _mean([(d or {}).get(k) for d in dicts]) for k in keys}


def _final_row(entry: Mapping[str, Any], n: int) -> list[Any]:
    return list(entry["acc_matrix"][-1]) if entry["acc_matrix"] else [None] * n


def metric_values(entry: Mapping[str, Any], modalities: Sequence[str]) -> dict[str, Any]:
    """The metrics a spread is given for, from one seed's method entry (names as in `spread`)."""
    out = {k: entry.get(k) for k in HEADLINE}
    out.update({f"final.{m}": v for m, v in zip(modalities, _final_row(entry, len(modalities)))})
    x = entry.get("xmodal")
    if x:
        out.update({f"xmodal.{k}": v for k, v in x["final"].items()})
        out["xmodal.mean_without_image"] = x.get("mean_without_image")
    return out


def _merge_xmodal(entries: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    present = [x for x in entries if x]
    if not present:
        return None
    labels = list(dict.fromkeys(k for x in present for k in x["labels"]))
    rows = {len(x["matrix"]) for x in present}
    if len(rows) != 1:
        raise ValueError(f"seeds have X-modal matrices of {sorted(rows)} rows: merge runs of the same stages")
    n_rows = rows.pop()

    def cell(x: Mapping[str, Any] | None, i: int, k: str) -> Any:
        if not x or k not in x["labels"]:
            return None
        return x["matrix"][i][x["labels"].index(k)]

    matrix = [[_mean([cell(x, i, k) for x in entries]) for k in labels] for i in range(n_rows)]
    chance = {k: next((x["chance"].get(k) for x in present if x["chance"].get(k) is not None), None) for k in labels}
    return {"labels": labels, "matrix": matrix, "final": dict(zip(labels, matrix[-1])), "chance": chance,
            "mean_without_image": _mean([(x or {}).get("mean_without_image") for x in entries])}


def merge_entry(entries: Sequence[Mapping[str, Any]], modalities: Sequence[str]) -> dict[str, Any]:
    """One method's entries (one per seed, same stages) -> the mean entry with its `spread`."""
    shapes = {(len(e["acc_matrix"]), tuple(e.get("stages") or ())) for e in entries}
    if len(shapes) != 1:
        raise ValueError(f"seeds ran different stages ({sorted(shapes)}): merge runs of the same config")
    n_rows = len(entries[0]["acc_matrix"])
    merged: dict[str, Any] = {k: v for k, v in entries[0].items() if k not in ("xmodal",)}
    merged["acc_matrix"] = [[_mean([e["acc_matrix"][i][j] for e in entries]) for j in range(len(modalities))]
                            for i in range(n_rows)]
    for k in HEADLINE:
        merged[k] = _mean([e.get(k) for e in entries])
    merged["trainable_params"] = _mean_dicts([e["trainable_params"] for e in entries])
    merged["total_params"] = _mean([e["total_params"] for e in entries])
    merged["train_seconds"] = _mean_dicts([e["train_seconds"] for e in entries])
    if any(e.get("plasticity_per_modality") is not None for e in entries):
        merged["plasticity_per_modality"] = _mean_dicts([e.get("plasticity_per_modality") for e in entries])
    x = _merge_xmodal([e.get("xmodal") for e in entries])
    if x is not None:
        merged["xmodal"] = x
    per_seed = [metric_values(e, modalities) for e in entries]
    names = list(dict.fromkeys(k for v in per_seed for k in v))
    merged["spread"] = {k: spread([v.get(k) for v in per_seed]) for k in names}
    return merged


def merge_seeds(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Reports of the same demo under different seeds (same benchmark, modalities and methods) -> one
    report: each method's mean entry with its spread, `seeds` in the given order."""
    if not reports:
        raise ValueError("merge_seeds: no report given")
    first = reports[0]
    seeds = [r["seed"] for r in reports]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"merge_seeds: seeds {seeds} repeat")
    for r in reports[1:]:
        for key in ("benchmark", "modalities"):
            if r[key] != first[key]:
                raise ValueError(f"merge_seeds: seed {r['seed']} has {key} {r[key]}, seed {first['seed']} {first[key]}")
        if list(r["methods"]) != list(first["methods"]):
            raise ValueError(f"merge_seeds: seed {r['seed']} ran methods {list(r['methods'])}, "
                             f"seed {first['seed']} {list(first['methods'])}")
    methods = {name: merge_entry([r["methods"][name] for r in reports], first["modalities"])
               for name in first["methods"]}
    return {"benchmark": first["benchmark"], "modalities": list(first["modalities"]), "seed": seeds[0],
            "seeds": seeds, "methods": methods}
