"""`modweave demo`: MCL-Digits end to end on a CPU.

1. write MCL-Digits to OUT/data (real PNG / MP4 / WAV / 16-bit PNG / PLY files, read back by the loaders);
2. train the shared base once (a Mixtral-shaped MoE LLM + image Q-Former, on text + image) into OUT/base;
3. for each method, grow that same base by video -> audio -> depth -> point cloud into OUT/<method>,
   evaluating every modality after every stage (the accuracy matrix);
4. merge everything into OUT/report.{json,md}, OUT/accuracy_matrix.png and print the comparison.

Every method run starts from a copy of the base checkpoint and its evaluated row, and all runs share
one in-memory copy of the loaded media, so the base is trained and the files are decoded only once.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

from .config import RunConfig, apply_overrides, load_yaml, run_config
from .methods import get_method
from .utils import atomic_write_bytes

logger = logging.getLogger(__name__)

DEMO_METHODS = ("ana", "moextend", "finetune", "lora", "separate", "frozen")
COLUMNS = ["text", "image", "video", "audio", "depth", "point_cloud"]

# per-method settings and training overrides for the continual stages (same data, same step budget)
METHOD_STAGE = {
    "ana": {"settings": {}, "train": {"lr": 5.0e-3}},
    "moextend": {"settings": {"routing": "modality", "connector": "qformer"},
                 "train": {"lr": 1.0e-3}},
    "finetune": {"settings": {}, "train": {"lr": 1.0e-3}},
    "lora": {"settings": {}, "train": {"lr": 5.0e-3}},
    "separate": {"settings": {}, "train": {"lr": 1.0e-3}},
    "frozen": {"settings": {}, "train": {"lr": 5.0e-3}},
}
# --quick: the same pipeline on a reduced budget and a smaller MCL-Digits (under two minutes)
QUICK = ["train.base.steps=100", "train.steps=20", "data.max_test=60", "data.heldout=16",
         "data.digits.n_train=300", "data.digits.n_test=30"]


def demo_config(overrides: list[str] | None = None, quick: bool = False, seed: int = 0) -> RunConfig:
    """The packaged demo preset with `--quick` reductions and user overrides applied."""
    preset = resources.files("modweave") / "presets" / "demo.yaml"
    with resources.as_file(preset) as path:
        data = load_yaml(path)
    data.pop("_dir", None)
    data["seed"] = seed
    # run_config checks every section (a bad key fails now, not after writing the data)
    return run_config(apply_overrides(data, (QUICK if quick else []) + list(overrides or [])))


def method_config(base: RunConfig, method: str) -> RunConfig:
    """The demo run for one method: every stage through `method`, with its settings and overrides."""
    cfg = copy.deepcopy(base)
    cfg.name = method
    extra = METHOD_STAGE.get(method, {"settings": {}, "train": {}})
    for st in cfg.stages:
        st.method = method
        st.settings = {**extra["settings"], **st.settings}
        st.train = {**extra["train"], **st.train}
        phases = len(get_method(method).phases)
        if phases > 1:  # a multi-phase method's phases share the stage's step budget
            st.train.setdefault("steps", max(1, _steps(cfg) // phases))
    return cfg


def _steps(cfg: RunConfig) -> int:
    return int(cfg.train.get("steps", 100))


def _seed_from_base(base_dir: Path, run_dir: Path) -> None:
    """Start a method's run from the trained base: its checkpoint and its evaluated row."""
    if (run_dir / "checkpoint" / "manifest.json").exists():
        return  # already seeded (or further along): the trainer resumes
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(base_dir / "checkpoint", run_dir / "checkpoint")
    progress = json.loads((base_dir / "progress.json").read_text())
    keep = {k: {"base": progress[k]["base"]} for k in ("rows", "train_seconds", "trainable_params", "losses")
            if "base" in progress.get(k, {})}
    atomic_write_bytes(run_dir / "progress.json", json.dumps(keep).encode())


def run_demo(out: str | Path = "runs/demo", methods: list[str] | None = None, quick: bool = False,
             seed: int = 0, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the demo into `out`; returns the merged report (spec schema)."""
    from .data.digits import digits_texts, write_digits
    from .methods import list_methods
    from .report import write_report
    from .train import ContinualTrainer, build_report
    from .training.config import DataConfig, parse_section
    from .training.data import RunData

    methods = list(methods or DEMO_METHODS)
    unknown = [m for m in methods if m not in list_methods()]
    if unknown:
        raise ValueError(f"unknown method '{unknown[0]}' (known: {', '.join(list_methods())})")
    out = Path(out)
    cfg = demo_config(overrides, quick, seed)
    digits = dict(cfg.data.get("digits") or {})
    if digits.get("seed", seed) != seed:
        raise ValueError(f"config key 'data.digits.seed': the demo writes MCL-Digits with --seed ({seed}); "
                         "pass --seed instead")
    _claim(out, {"seed": seed, "quick": quick, "overrides": list(overrides or [])})
    t_start = time.perf_counter()

    data_root = out / "data"
    if not (data_root / "meta.json").exists():
        logger.info("writing MCL-Digits to %s", data_root)
        write_digits(data_root, **{**digits, "seed": seed, "progress": True})
    meta = json.loads((data_root / "meta.json").read_text())
    if meta.get("seed") != seed:
        raise ValueError(f"{data_root} holds MCL-Digits of seed {meta.get('seed')}, not {seed}: use another --out")
    cfg.data["root"] = str(data_root)
    cfg.eval["modalities"] = [m for m in COLUMNS if (data_root / f"{m}_test.jsonl").exists()]
    if cfg.model.tokenizer.kind == "word" and not cfg.model.tokenizer.corpus:
        cfg.model.tokenizer.corpus = sorted(set(digits_texts()) | set(meta.get("vocabulary", [])))
    shared = RunData(cfg, parse_section(DataConfig, cfg.data, "data"))
    _preload(shared, [s.modality.name for s in cfg.stages])

    base_cfg = copy.deepcopy(cfg)
    base_cfg.stages = []
    base_cfg.eval["modalities"] = cfg.eval["modalities"]
    base_dir = out / "base"
    _run(ContinualTrainer, base_cfg, base_dir, shared)

    report: dict[str, Any] | None = None
    histories: dict[str, Any] = {}
    for method in methods:
        mcfg = method_config(cfg, method)
        run_dir = out / method
        _seed_from_base(base_dir, run_dir)
        entry = _run(ContinualTrainer, mcfg, run_dir, shared)
        progress = json.loads((run_dir / "progress.json").read_text())
        if report is None:
            report = build_report(progress, {})
            report["benchmark"] = "mcl-digits"
        report["methods"][method] = entry
        histories[method] = progress.get("losses", {})
    assert report is not None
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_report(out, report, histories)
    return report


def _preload(data: Any, modalities: list[str]) -> None:
    """Decode every stage's media once, up front, so no method's training time includes file loading."""
    from tqdm.auto import tqdm

    parts = [(m, part) for m in modalities for part in ("train", "heldout", "test") if data.has(m, "train")]
    for m, part in tqdm(parts, desc="loading media", unit="split"):
        ds = getattr(data, part)(m)
        for i in range(len(ds)):
            ds[i]


def _claim(out: Path, budget: dict[str, Any]) -> None:
    """Runs in `out` resume only with the same seed and budget: a quick base must never be reused by a
    full demo (and vice versa), so a different budget in the same folder is refused."""
    from .runs import check_run_folder, claim_run_folder

    check_run_folder(out, "demo")  # a training run's folder, a file or a stranger's folder: refused
    path = out / "demo.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != budget:
            raise ValueError(f"{out} holds a demo run with {old}, not {budget}: use another --out")
    claim_run_folder(out, "demo")
    if not path.exists():
        atomic_write_bytes(path, json.dumps(budget).encode())


def _run(trainer_cls: Any, cfg: RunConfig, run_dir: Path, shared: Any) -> dict[str, Any]:
    started = (run_dir / "progress.json").exists()  # seeded from the base, or interrupted earlier
    trainer = trainer_cls(cfg, run_dir, resume=started)
    trainer.data = shared  # one in-memory copy of the media for every run
    return trainer.run()


def summary_table(report: dict[str, Any]) -> str:
    """The final comparison as aligned text (what the demo prints; the same columns as report.md)."""
    from .report import largest_stage_trainable, stage_train_seconds

    mods = report["modalities"]
    head = f"{'method':<10}{'avg acc':>9}{'plast.':>8}{'forget.':>9}{'BWT':>8}  {'trainable/stage':>16}{'train s':>9}"
    lines = [head, "-" * len(head)]
    for name, e in report["methods"].items():
        per, secs = largest_stage_trainable(e) or 0, stage_train_seconds(e)
        lines.append(f"{name:<10}{_f(e['avg_acc']):>9}{_f(e['plasticity']):>8}{_f(e['forgetting']):>9}"
                     f"{_f(e['bwt']):>8}  {per:>16,}{secs:>9.1f}")
    lines.append("")
    lines.append("final accuracy per modality (" + ", ".join(mods) + "):")
    for name, e in report["methods"].items():
        last = e["acc_matrix"][-1] if e["acc_matrix"] else []
        lines.append(f"  {name:<10}" + " ".join(f"{_f(v):>6}" for v in last))
    return "\n".join(lines)


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"
