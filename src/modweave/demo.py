"""`modweave demo`: MCL-Digits end to end on a CPU.

1. write MCL-Digits to OUT/data (real PNG / MP4 / WAV / 16-bit PNG / PLY files, read back by the loaders);
2. train the shared base once (a Mixtral-shaped MoE LLM + image Q-Former, on text + image) into OUT/base;
3. for each method variant, grow that same base by video -> audio -> depth -> point cloud into
   OUT/<label>, evaluating every modality after every stage (the accuracy matrix);
4. merge everything into OUT/report.{json,md}, OUT/accuracy_matrix.png and print the comparison.

Methods are variants (`methods/variants.py`): `ana`, or `ana[in_adapters=false,gate=false]` (run in
OUT/ana-no_gate-no_in_adapters, reported under that label). A variant gets its base method's
METHOD_STAGE settings and training overrides, with its own settings on top.

Several seeds (`seeds=[0, 1, 2]`): the whole demo once per seed in OUT/seed-<s>/ (its own MCL-Digits,
its own base, its own report), then OUT/report.{json,md} hold the mean +- std over seeds
(`report_seeds.merge_seeds`). One seed keeps the single layout above.

Every method run starts from a copy of the base checkpoint and its evaluated row, so the base is trained
once. The method runs go `workers` at a time, each in a worker process of METHOD_THREADS torch threads
(its console output in OUT/<label>/console.log); with one worker they run here, one by one. The media are
decoded once (forked workers share this process's copy). Thread counts are fixed, so the numbers are the same
bits whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, apply_overrides, load_yaml, run_config
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


@dataclass(frozen=True)
class Variant:
    """One entry of `--methods`: the text as given, the registered method, its settings as given
    (before METHOD_STAGE's are added) and the run's label (its folder and report name)."""

    text: str
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def resolve_methods(methods: str | Sequence[str | Variant] | None) -> list[Variant]:
    """`"ana,ana[gate=false],lora"` (or a list of such strings) -> checked variants, in order.
    ConfigError (one line) for an unknown method, a bad setting (also once merged with METHOD_STAGE's)
    or two entries with the same label."""
    from .methods.variants import check_variant, split_variants, variant_label

    if methods is None:
        methods = list(DEMO_METHODS)
    elif isinstance(methods, str):
        methods = split_variants(methods)
    out: list[Variant] = []
    for item in methods:
        if isinstance(item, Variant):
            out.append(item)
            continue
        name, settings = check_variant(item)
        label = variant_label(name, settings)
        try:  # the settings the stages will get: METHOD_STAGE's under the variant's
            get_method(name).check_settings(_stage_settings(name, settings, {}), where=label)
        except ValueError as err:
            raise ConfigError(f"method variant '{item}': {err}") from None
        out.append(Variant(item, name, settings, label))
    seen: dict[str, str] = {}
    for v in out:
        if v.label in seen:
            raise ConfigError(f"--methods: '{seen[v.label]}' and '{v.text}' are the same run ('{v.label}')")
        seen[v.label] = v.text
    if not out:
        raise ConfigError("--methods: no method given")
    return out


def parse_seeds(text: str) -> list[int]:
    """`"0,1,2"` -> `[0, 1, 2]`; ConfigError naming the bad entry (not an integer, negative, repeated)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ConfigError(f"--seeds '{text}': '{part}' is not a non-negative integer")
        if int(part) in seeds:
            raise ConfigError(f"--seeds '{text}': seed {int(part)} is given twice")
        seeds.append(int(part))
    return seeds


def demo_config(overrides: list[str] | None = None, quick: bool = False, seed: int = 0) -> RunConfig:
    """The packaged demo preset with `--quick` reductions and user overrides applied."""
    preset = resources.files("modweave") / "presets" / "demo.yaml"
    with resources.as_file(preset) as path:
        data = load_yaml(path)
    data.pop("_dir", None)
    data["seed"] = seed
    # run_config checks every section (a bad key fails now, not after writing the data)
    return run_config(apply_overrides(data, (QUICK if quick else []) + list(overrides or [])))


def _merge(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """`high` over `low`, nested mappings merged key by key (`gate_noise.enabled` keeps `min_std`)."""
    out = dict(low)
    for key, value in high.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _stage_settings(method: str, variant: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    """A stage's settings: METHOD_STAGE's for the base method, then the preset's stage, then the variant."""
    extra = METHOD_STAGE.get(method, {"settings": {}})["settings"]
    return _merge(_merge(copy.deepcopy(extra), stage), variant)


def method_config(base: RunConfig, method: str | Variant) -> RunConfig:
    """The demo run for one method variant: every stage through its method, with METHOD_STAGE's
    settings and overrides (by the base method's name) and the variant's settings on top."""
    variant = method if isinstance(method, Variant) else resolve_methods([method])[0]
    cfg = copy.deepcopy(base)
    cfg.name = variant.label
    extra = METHOD_STAGE.get(variant.method, {"settings": {}, "train": {}})
    phases = len(get_method(variant.method).phases)
    for st in cfg.stages:
        st.method = variant.method
        st.settings = _stage_settings(variant.method, variant.settings, st.settings)
        st.train = {**extra["train"], **st.train}
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


def seed_folder(out: str | Path, seed: int) -> Path:
    """Where seed `seed` of a several-seed demo runs."""
    return Path(out) / f"seed-{seed}"


def run_demo(out: str | Path = "runs/demo", methods: str | Sequence[str | Variant] | None = None,
             quick: bool = False, seed: int = 0, overrides: list[str] | None = None,
             seeds: Sequence[int] | None = None, workers: int | None = None) -> dict[str, Any]:
    """Run the demo into `out` (`seeds`: once per seed, merged); returns the report (report.py's schema).
    `workers`: method runs at once, each a process of METHOD_THREADS threads (default: one per CPU core,
    at most one per method; 1 runs them one by one in this process). The numbers do not depend on it.
    Every input (methods, settings, overrides, folders) is checked before any work starts."""
    variants = resolve_methods(methods)
    workers = default_workers(len(variants)) if workers is None else check_workers(workers)
    seeds = list(seeds) if seeds else [seed]
    out = Path(out)
    budget = {"quick": quick, "overrides": list(overrides or [])}
    folders = {s: (out if len(seeds) == 1 else seed_folder(out, s)) for s in seeds}
    configs = {s: _checked_config(overrides, quick, s) for s in seeds}
    if len(seeds) > 1:
        _check_claim(out, {"seeds": seeds, **budget}, ignore=("seeds",))
    for s in seeds:
        _check_claim(folders[s], {"seed": s, **budget})
    if len(seeds) == 1:
        return _run_seed(folders[seeds[0]], variants, configs[seeds[0]], {"seed": seeds[0], **budget}, workers)

    from .report import write_report
    from .report_seeds import merge_seeds

    t_start = time.perf_counter()
    _claim(out, {"seeds": seeds, **budget}, ignore=("seeds",))
    reports = []
    for s in seeds:
        logger.info("demo seed %d (%d of %d) in %s", s, len(reports) + 1, len(seeds), folders[s])
        reports.append(_run_seed(folders[s], variants, configs[s], {"seed": s, **budget}, workers))
    merged = merge_seeds(reports)
    merged["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_report(out, merged, {})  # loss curves stay per seed
    return merged


def _checked_config(overrides: list[str] | None, quick: bool, seed: int) -> RunConfig:
    cfg = demo_config(overrides, quick, seed)
    digits = dict(cfg.data.get("digits") or {})
    if digits.get("seed", seed) != seed:
        raise ValueError(f"config key 'data.digits.seed': the demo writes MCL-Digits with --seed ({seed}); "
                         "pass --seed instead")
    return cfg


def _run_seed(out: Path, variants: list[Variant], cfg: RunConfig, budget: dict[str, Any],
              workers: int = 1) -> dict[str, Any]:
    """One seed's demo in `out`: data, base, every variant (`workers` at a time), report; returns the report."""
    from .data.digits import digits_texts, write_digits
    from .report import write_report
    from .train import build_report

    seed = budget["seed"]
    digits = dict(cfg.data.get("digits") or {})
    _claim(out, budget)
    earlier = _earlier_runs(out)
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

    base_cfg = copy.deepcopy(cfg)
    base_cfg.stages = []
    base_cfg.eval["modalities"] = cfg.eval["modalities"]
    base_dir = out / "base"
    try:
        data = _shared_data(cfg)
        with _frozen_heap(), torch_threads(BASE_THREADS):
            _run(base_cfg, base_dir, data)
        for variant in variants:
            _seed_from_base(base_dir, out / variant.label)
        jobs = [(method_config(cfg, v), out / v.label) for v in variants]
        entries = _run_parallel(jobs, workers) if workers > 1 and len(jobs) > 1 else [
            _run_job(mcfg, run_dir) for mcfg, run_dir in jobs]
    finally:
        _DATA.clear()  # the decoded media live as long as the seed's runs, not as long as the process

    report: dict[str, Any] | None = None
    histories: dict[str, Any] = {}
    for variant, entry in zip(variants, entries):
        if variant.settings:  # what ran under this label (plain methods keep the old entry as it was)
            entry = {**entry, "variant": {"method": variant.method, "settings": variant.settings}}
        progress = json.loads((out / variant.label / "progress.json").read_text())
        if report is None:
            report = build_report(progress, {})
            report["benchmark"] = "mcl-digits"
        report["methods"][variant.label] = entry
        histories[variant.label] = progress.get("losses", {})
    assert report is not None
    report["methods"], histories = _with_earlier_runs(out, earlier, report, histories)
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_report(out, report, histories)
    return report


def _earlier_runs(out: Path) -> tuple[dict[str, Any], dict[str, Any], list[str] | None]:
    """The method entries, loss histories and modalities of an earlier demo's report in `out` (empty when
    there is none), read before any work so that a broken one stops the demo at once. The folder's claim
    guarantees the same seed and budget, and its runs share this demo's base: `--methods` run later in a
    demo's folder (benchmarks/ablation.py does) add to its report and never drop what is there."""
    from .report import LOSSES, REPORT, _read_json

    path = out / REPORT
    try:
        earlier = _read_json(path, {"methods": {}, "modalities": None})
        return dict(earlier["methods"]), dict(_read_json(out / LOSSES, {})), earlier["modalities"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a demo report this folder's earlier runs can be kept from ({e})") from None


def _with_earlier_runs(out: Path, earlier: tuple[dict[str, Any], dict[str, Any], list[str] | None],
                       report: dict[str, Any], histories: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`report`'s method entries and `histories` on top of the `earlier` ones (`_earlier_runs`): a re-run
    method replaces its entry in place, the others are kept."""
    methods, losses, modalities = copy.deepcopy(earlier)
    if methods and modalities != report["modalities"]:
        raise ValueError(f"{out / 'report.json'}: an earlier demo here evaluated {modalities}, this one "
                         f"{report['modalities']}: use another --out")
    kept = [label for label in methods if label not in report["methods"]]
    if kept:
        logger.info("the report keeps the earlier runs in %s: %s", out, ", ".join(kept))
    methods.update(report["methods"])
    losses.update(histories)
    return methods, losses


# ------------------------------------------------------------------------------------------
# running the method runs: here one by one, or in worker processes

# Torch threads per process. Fixed, because the thread count changes a matmul's last bits: with them fixed,
# a method run gives the same bits whether it runs here or in a worker, next to any number of others.
# One thread per method run (on 2 cores, two runs of one thread each beat one run of two threads by ~1.4x),
# two for the base, which runs alone.
METHOD_THREADS = 1
BASE_THREADS = 2

_DATA: dict[str, Any] = {}  # data root -> the decoded media every run in this process shares


def default_workers(n_runs: int) -> int:
    """One worker per core, at most one per run."""
    from .cpus import available_cores

    return max(1, min(n_runs, available_cores() // METHOD_THREADS))


def check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers {workers}: must be a positive integer")
    return workers


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch threads, then go back to the process's count."""
    import torch

    was = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(was)


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Leave the objects alive now (the decoded media, the imported modules) out of garbage collection
    while the block runs: accelerate collects after every phase, and scanning them took ~0.2 s a time."""
    import gc

    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _shared_data(cfg: RunConfig) -> Any:
    """The run data of `cfg`'s MCL-Digits, its media decoded once per process (every run shares it)."""
    from .training.config import DataConfig, parse_section
    from .training.data import RunData

    root = str(cfg.data["root"])
    if root not in _DATA:
        data = RunData(cfg, parse_section(DataConfig, cfg.data, "data"))
        _preload(data, [*(m.name for m in cfg.model.base_modalities), *(s.modality.name for s in cfg.stages)])
        _DATA[root] = data
    return _DATA[root]


def _run_job(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """One method run (seeded from the base) in this process; returns its report entry."""
    data = _shared_data(cfg)
    with _frozen_heap(), torch_threads(METHOD_THREADS):
        return _run(cfg, run_dir, data)


def _worker_job(cfg: RunConfig, run_dir: Path, level: int) -> dict[str, Any]:
    """`_run_job` in a worker process. Its console output (progress bars, log lines) goes to
    RUN/console.log, so that runs side by side do not interleave on the terminal."""
    import sys

    loggers = [logging.getLogger(), logging.getLogger("modweave")]
    logging.getLogger("modweave").setLevel(level)
    with open(run_dir / "console.log", "a", buffering=1) as stream:
        old = sys.stderr
        sys.stderr = stream
        # a forked worker holds the parent's console handlers: point them at the file for this run
        consoles = [(h, h.stream) for lg in loggers for h in lg.handlers
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        for h, _ in consoles:
            h.setStream(stream)
        added = None
        if not consoles:  # a spawned worker starts without any
            added = logging.StreamHandler(stream)
            added.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            loggers[1].addHandler(added)
        try:
            return _run_job(cfg, run_dir)
        finally:
            if added is not None:
                loggers[1].removeHandler(added)
            for h, was in consoles:
                h.setStream(was)
            sys.stderr = old


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _start_method() -> str:
    import multiprocessing

    return "fork" if METHOD_THREADS == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _run_parallel(jobs: list[tuple[RunConfig, Path]], workers: int) -> list[dict[str, Any]]:
    """Every job in `workers` processes; returns the entries in the jobs' order. An error in a run is
    raised here, and the runs not yet started are cancelled.

    On Linux the workers are forked: they start at once, with this process's modules and decoded media.
    That is safe with OpenMP because a worker runs one thread (as DataLoader workers do); elsewhere, or
    with more threads per run, they are spawned and decode the media themselves."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from tqdm.auto import tqdm

    context = multiprocessing.get_context(_start_method())
    level = logging.getLogger("modweave").getEffectiveLevel()
    logger.info("running %d method runs, %d at a time (%d thread each); their output: OUT/<run>/console.log",
                len(jobs), workers, METHOD_THREADS)
    # first thing in a worker: its thread count (a forked OpenMP pool of more threads would hang)
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_set_threads,
                               initargs=(METHOD_THREADS,))
    try:
        futures = {pool.submit(_worker_job, cfg, run_dir, level): run_dir.name for cfg, run_dir in jobs}
        with tqdm(total=len(futures), desc="method runs", unit="run") as bar:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    try:
                        f.result()  # raises the run's error
                    except BrokenProcessPool:  # killed (out of memory?): say which runs did not finish
                        unfinished = ", ".join(futures[g] for g in futures if not g.done() or g.exception())
                        raise RuntimeError(f"a method-run worker process died while running {unfinished}: "
                                           "rerun the same command to continue (finished runs are kept)") from None
                    bar.set_postfix(done=futures[f])
                    bar.update(1)
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _preload(data: Any, modalities: list[str]) -> None:
    """Decode every stage's media once, up front, so no method's training time includes file loading."""
    from tqdm.auto import tqdm

    parts = [(m, part) for m in modalities for part in ("train", "heldout", "test") if data.has(m, "train")]
    for m, part in tqdm(parts, desc="loading media", unit="split"):
        ds = getattr(data, part)(m)
        for i in range(len(ds)):
            ds[i]


def _check_claim(out: Path, budget: dict[str, Any], ignore: Sequence[str] = ()) -> None:
    """Refuse `out` unless a demo with the same budget (keys in `ignore` aside) may run there; writes nothing.
    A quick base must never be reused by a full demo (and vice versa), nor one seed's by another."""
    from .runs import check_run_folder

    check_run_folder(out, "demo")  # a training run's folder, a file or a stranger's folder: refused
    path = out / "demo.json"
    if path.exists():
        old = json.loads(path.read_text())
        if {k: v for k, v in old.items() if k not in ignore} != {k: v for k, v in budget.items() if k not in ignore}:
            raise ValueError(f"{out} holds a demo run with {old}, not {budget}: use another --out")


def _claim(out: Path, budget: dict[str, Any], ignore: Sequence[str] = ()) -> None:
    """Runs in `out` resume only with the same seed and budget (`_check_claim`); claims `out` and
    records the budget (keys in `ignore`, e.g. the seed list of a merged folder, are updated)."""
    from .runs import claim_run_folder

    _check_claim(out, budget, ignore)
    claim_run_folder(out, "demo")
    path = out / "demo.json"
    if not path.exists() or json.loads(path.read_text()) != budget:
        atomic_write_bytes(path, json.dumps(budget).encode())


def _run(cfg: RunConfig, run_dir: Path, shared: Any) -> dict[str, Any]:
    from .train import ContinualTrainer

    started = (run_dir / "progress.json").exists()  # seeded from the base, or interrupted earlier
    trainer = ContinualTrainer(cfg, run_dir, resume=started)
    trainer.data = shared  # one in-memory copy of the media for every run
    return trainer.run()


def summary_table(report: dict[str, Any]) -> str:
    """The final comparison as aligned text (what the demo prints; the same columns as report.md).
    A report merged over seeds shows mean±std per cell (std over its `seeds`)."""
    from .report import largest_stage_trainable, stage_train_seconds

    mods = report["modalities"]
    spread = any(e.get("spread") for e in report["methods"].values())
    w = max([10, *(len(n) + 2 for n in report["methods"])])
    c = 13 if spread else 8  # "0.650±0.012" needs 11 characters and a gap
    head = (f"{'method':<{w}}{'avg acc':>{c + 1}}{'plast.':>{c}}{'forget.':>{c + 1}}{'BWT':>{c}}"
            f"  {'trainable/stage':>16}{'train s':>9}")
    lines = [head, "-" * len(head)]
    for name, e in report["methods"].items():
        per, secs = largest_stage_trainable(e) or 0, stage_train_seconds(e)
        cells = [_cell(e, k) for k in ("avg_acc", "plasticity", "forgetting", "bwt")]
        lines.append(f"{name:<{w}}{cells[0]:>{c + 1}}{cells[1]:>{c}}{cells[2]:>{c + 1}}{cells[3]:>{c}}"
                     f"  {round(per):>16,}{secs:>9.1f}")
    lines.append("")
    what = f"mean±std over seeds {', '.join(map(str, report['seeds']))}, " if spread else ""
    lines.append(f"final accuracy per modality ({what}" + ", ".join(mods) + "):")
    for name, e in report["methods"].items():
        last = e["acc_matrix"][-1] if e["acc_matrix"] else [None] * len(mods)
        cells = [_cell(e, f"final.{m}", v) for m, v in zip(mods, last)]
        lines.append(f"  {name:<{w}}" + " ".join(f"{x:>{c - 1 if spread else 6}}" for x in cells))
    return "\n".join(lines)


def _cell(entry: dict[str, Any], metric: str, value: Any = None) -> str:
    """`entry`'s `metric` as text: mean±std when the entry holds a spread over seeds."""
    s = (entry.get("spread") or {}).get(metric)
    if s is not None:
        return _f(s["mean"]) if s["std"] is None else f"{_f(s['mean'])}±{_f(s['std'])}"
    return _f(entry.get(metric) if value is None else value)


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"
