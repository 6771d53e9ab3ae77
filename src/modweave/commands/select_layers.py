"""`modweave select-layers CHECKPOINT_DIR --out FILE.json [--modality M] [--plot FILE.png]`: MoExtend's layer
selection as recorded by a checkpoint's extender stage: chosen layers, donors and per-layer scores."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

WRITTEN_BY = "modweave select-layers"  # marks the files this command wrote: only those are ever replaced


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select-layers", help="MoExtend: the layers chosen for new experts, with scores and donors")
    p.add_argument("checkpoint", help="a checkpoint directory (manifest.json) holding a moextend extender stage")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--modality", help="which step (default: the last moextend step)")
    p.add_argument("--plot", help="PNG bar chart of the scores, selected layers highlighted")
    p.set_defaults(func=run)


def extender_selection(manifest: dict[str, Any], modality: str | None = None) -> dict[str, Any]:
    """The recorded selection of `modality`'s (or the last) moextend extender stage."""
    stages = [s for s in manifest.get("stages", []) if s.get("method") == "moextend" and s.get("phase") == "extender"
              and (modality is None or s.get("modality") == modality)]
    if not stages:
        which = f"for modality '{modality}' " if modality else ""
        raise ValueError(f"no moextend extender stage {which}in the checkpoint")
    rec = stages[-1]
    state = rec.get("state") or {}
    if "layers" not in state:
        raise ValueError(f"stage '{rec['name']}' recorded no layer selection (was it ended?)")
    scores = state.get("scores")
    layer_ids = state.get("moe_layers") or (list(range(len(scores))) if scores else [])
    return {"modality": rec["modality"], "stage": rec["name"], "layers": state["layers"], "donors": state["donors"],
            "scores": dict(zip(map(str, layer_ids), scores)) if scores else None,
            "usage_orig": state.get("usage_orig"), "usage_tuned": state.get("usage_tuned"),
            "settings": rec.get("settings", {})}


def plot_scores(selection: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = selection["scores"]
    if not scores:
        raise ValueError("no scores recorded (layers were given explicitly without held-out data): nothing to plot")
    layers = [int(k) for k in scores]
    chosen = set(selection["layers"])
    colors = ["tab:orange" if layer in chosen else "tab:gray" for layer in layers]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.3 * len(layers)), 3.0))
    ax.bar(layers, list(scores.values()), color=colors)
    ax.set_xlabel("MoE layer")
    ax.set_xticks(layers)  # integer layer indices, one tick each
    ax.set_ylabel("std of usage shift")
    ax.set_title(f"MoExtend: layers to extend for {selection['modality']}\n(orange: extended; score: how much "
                 "the routing shifts)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": WRITTEN_BY})
    plt.close(fig)


def _written_here(path: Path) -> bool:
    """Whether existing file `path` is an output of this command (JSON key or PNG text chunk)."""
    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as img:
                return img.info.get("Software") == WRITTEN_BY
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("written_by") == WRITTEN_BY


def check_output(path: Path, option: str) -> None:
    """Refuse an output path that is a folder, or a file this command did not write (it would be lost)."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder: give the path of the file to write")
    if path.exists() and not _written_here(path):
        raise ValueError(f"{option} {path} exists and was not written by select-layers: refusing to overwrite it "
                         "(choose another path)")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import read_manifest
    from ..utils import atomic_write_bytes

    out = Path(args.out)
    check_output(out, "--out")
    if args.plot:
        check_output(Path(args.plot), "--plot")
    selection = extender_selection(read_manifest(Path(args.checkpoint)), args.modality)
    atomic_write_bytes(out, json.dumps({**selection, "written_by": WRITTEN_BY}, indent=2).encode())
    if args.plot:
        plot_scores(selection, Path(args.plot))
    print(f"{selection['stage']}: layers {selection['layers']} -> {out}")
    return 0
