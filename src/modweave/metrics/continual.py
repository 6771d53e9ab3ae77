"""Continual-learning metrics over an accuracy matrix: average accuracy, plasticity, forgetting (Chaudhry), BWT.

`acc[s][j]`: score on modality j after training stage s (row 0 = the base, then one row per added
modality); `None` where the model had no path for j. `learned_at[j]`: the row in which column j was
trained (0 for the base's modalities). With T the final row:
- avg_acc     = mean_j acc[T][j] over the modalities learned so far;
- plasticity  = acc[l_j][j] per modality, its mean taken over the added modalities (l_j >= 1);
- forgetting  = mean over j with l_j < T of max_{l in [l_j, T-1]} acc[l][j] - acc[T][j] (Chaudhry);
- bwt         = mean over j with l_j < T of acc[T][j] - acc[l_j][j] (Avalanche's BWT: minus the
                forgetting measured from the first score instead of the best);
- fwt         = mean over added j of acc[l_j - 1][j] - reference[j] (only where a reference is given).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Matrix = Sequence[Sequence[float | None]]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def continual_metrics(acc: Matrix, learned_at: Sequence[int | None], columns: Sequence[str] | None = None,
                      reference: Mapping[str, float] | Sequence[float | None] | None = None) -> dict:
    """Average accuracy, plasticity (mean and per modality), forgetting, BWT and FWT (or None)."""
    if not acc:
        raise ValueError("empty accuracy matrix")
    width = len(learned_at)
    if any(len(row) != width for row in acc):
        raise ValueError(f"every row of the accuracy matrix needs {width} entries")
    cols = list(columns) if columns is not None else [str(j) for j in range(width)]
    last = len(acc) - 1
    seen = [j for j in range(width) if learned_at[j] is not None and learned_at[j] <= last]

    final = [acc[last][j] for j in seen if acc[last][j] is not None]
    plasticity = {cols[j]: acc[learned_at[j]][j] for j in seen}
    added = [v for j, v in ((j, plasticity[cols[j]]) for j in seen) if learned_at[j] >= 1 and v is not None]

    forgetting, bwt = [], []
    for j in seen:
        lj = learned_at[j]
        if lj >= last or acc[last][j] is None:
            continue
        history = [acc[s][j] for s in range(lj, last) if acc[s][j] is not None]
        if history:
            forgetting.append(max(history) - acc[last][j])
        if acc[lj][j] is not None:
            bwt.append(acc[last][j] - acc[lj][j])

    fwt = []
    if reference is not None:
        ref = reference if isinstance(reference, Mapping) else dict(zip(cols, reference))
        for j in seen:
            lj = learned_at[j]
            if lj >= 1 and ref.get(cols[j]) is not None and acc[lj - 1][j] is not None:
                fwt.append(acc[lj - 1][j] - ref[cols[j]])
    return {
        "avg_acc": _mean(final),
        "plasticity": _mean(added),
        "plasticity_per_modality": plasticity,
        "forgetting": _mean(forgetting),
        "bwt": _mean(bwt),
        "fwt": _mean(fwt),
    }
