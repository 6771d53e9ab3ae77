"""The continual loop: base training, then each stage's phases in order, evaluation after every
modality step, checkpoints, and exact resume.

    modweave train CONFIG.yaml [key=value ...] --out DIR [--resume]

DIR/checkpoint/      the model's stage files + manifest (`XModalLM.from_pretrained(DIR/checkpoint)`)
DIR/trainer/         in-stage trainer checkpoints (see training/state.py)
DIR/progress.json    accuracy-matrix rows, seconds, trainable counts and loss history so far
DIR/train.log        the log; DIR/report.{json,md}, accuracy_matrix.png, loss_curves.png at the end

The trainer knows nothing about methods beyond "these parameters train (requires_grad), end the stage,
next phase". Each stage step is seeded from (run seed, stage index, phase), so an interrupted run
resumed with `resume=True` ends, on CPU, bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, RunConfig, to_dict
from .report import method_entry
from .runs import check_run_folder, claim_run_folder, first_difference
from .stages import stage_names, walk_phases
from .report import report_from_progress as build_report  # the name the demo imports from here
from .training.config import DataConfig, EvalConfig, TrainConfig, run_sections
from .training.data import ConcatItems, RunData, batches, resolve_spec_loaders
from .training.loop import TrainingError, train_phase
from .training.distributed import across_ranks, check_accelerator, wants_fsdp
from .training.state import clear_stage
from .utils import atomic_write_bytes, count_params

logger = logging.getLogger(__name__)

__all__ = ["ContinualTrainer", "TrainingError", "run_training", "method_label", "method_entry",
           "build_report"]

CHECKPOINT = "checkpoint"
PROGRESS = "progress.json"


def method_label(cfg: RunConfig) -> str:
    """The report's name for a run: its single method, or the run name when stages mix methods."""
    methods = {s.method for s in cfg.stages}
    return methods.pop() if len(methods) == 1 else cfg.name


def _seed_everything(*parts: int) -> None:
    import random

    import numpy as np

    seed = hash_seed(parts)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def hash_seed(parts: tuple[int, ...]) -> int:
    """One seed from (run seed, stage, phase, ...): each stage's randomness is its own."""
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**31 - 1)
    return seed


class ContinualTrainer:
    """Runs a `RunConfig` into `out_dir`. `callbacks`: objects with any of `on_step(trainer)` (after each
    optimizer step and its checkpoint) and `on_stage_end(trainer, stage_name)` (after a stage is saved),
    e.g. to stop a run at a given moment."""

    def __init__(self, cfg: RunConfig, out_dir: str | Path, resume: bool = False, accelerator: Any = None,
                 force_config: bool = False, parent: str | Path | None = None, callbacks: Sequence[Any] = ()):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.resume = resume
        self.force_config = force_config  # resume even where the config differs from the run's
        # a run grown from an existing checkpoint: its base and earlier stages come from `parent`
        self.parent = Path(parent) if parent is not None else None
        if self.parent is None and resume:  # a grown run resumes from the parent it was grown from
            self.parent = self._recorded_parent()
        self.parent_modalities: list[str] = []
        self.parent_specs: list[Any] = []  # the parent's stage paths (their loader settings)
        if self.parent is not None:
            self._adopt_parent()
        sections = run_sections(cfg)  # typed, checked once (methods, settings, phases included)
        self.train_cfg: TrainConfig = sections.train
        self.data_cfg: DataConfig = sections.data
        self.eval_cfg: EvalConfig = sections.eval
        self.stage_cfgs = sections.stages
        self.base_cfg = sections.base
        resolve_spec_loaders(cfg)
        self.data = RunData(cfg, self.data_cfg, self.parent_specs)
        self.base_modalities = self._base_modalities()
        stage_mods = [s.modality.name for s in cfg.stages]
        self._fill_word_corpus([*self.base_modalities, *stage_mods])
        self.columns = list(self.eval_cfg.modalities or [*self.base_modalities, *stage_mods])
        self.learned_at = [0 if m in self.base_modalities else (stage_mods.index(m) + 1 if m in stage_mods else None)
                           for m in self.columns]
        self.accelerator = accelerator
        self.callbacks = list(callbacks)
        self.steps_done = 0  # optimizer steps taken by this process
        self.model: Any = None
        self.progress: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------
    # checks before any training

    def _base_modalities(self) -> list[str]:
        if self.data_cfg.base_modalities is not None:
            return list(self.data_cfg.base_modalities)
        names = ["text"] if self.data.has("text", "train") else []
        return names + [m.name for m in self.cfg.model.base_modalities] + self.parent_modalities

    def _fill_word_corpus(self, modalities: list[str]) -> None:
        """A word-level tokenizer with an empty `corpus` learns its words from the run's own data (every
        prompt, answer and candidate) and the paths' cues, so no prompt word becomes `<unk>`."""
        tok = self.cfg.model.tokenizer
        if self.parent is not None or tok.kind != "word" or tok.corpus:
            return
        specs = [*self.cfg.model.base_modalities, *(st.modality for st in self.cfg.stages)]
        tok.corpus = sorted(set(self.data.texts(modalities)) | {s.cue for s in specs if s.cue})
        logger.info("word tokenizer: corpus from the run's data (%d texts)", len(tok.corpus))

    def _warn_unknown_words(self, model: Any, modalities: list[str]) -> None:
        """Prompt or answer words a word-level tokenizer does not know become `<unk>`: say how many."""
        tok = model.tokenizer
        if tok is None or self.cfg.model.tokenizer.kind != "word":
            return
        # each distinct text once (MCL-Digits' 50k prompts and answers hold a few hundred), in one batch call
        counts = Counter(self.data.texts(modalities))
        texts = list(counts)
        unk, total, examples = 0, 0, []
        for text, ids in zip(texts, tok(texts, add_special_tokens=False).input_ids if texts else []):
            n = sum(1 for i in ids if i == tok.unk_token_id)
            unk, total = unk + n * counts[text], total + len(text.split()) * counts[text]
            if n and len(examples) < 3:
                examples.append(text)
        if unk:
            logger.warning("word tokenizer: %d of %d words in the run's prompts and answers map to <unk> (not in "
                           "model.tokenizer.corpus; e.g. in %s): leave corpus empty to learn it from the data",
                           unk, total, "; ".join(repr(e) for e in examples))

    def _recorded_parent(self) -> Path | None:
        try:
            recorded = json.loads((self.out / PROGRESS).read_text()).get("from")
        except (OSError, ValueError, AttributeError):
            return None
        return Path(recorded) if recorded else None

    def _adopt_parent(self) -> None:
        """`--from CKPT`: the model (base and every stage so far) is the checkpoint's; the config lists
        only the new stages. The parent's modalities count as the run's starting point (learned at 0)."""
        from .checkpoint_manifest import model_config, read_manifest

        manifest = read_manifest(self.parent)  # one-line CheckpointError when it is not a checkpoint
        if self.cfg.base_train is not None:
            raise ConfigError(f"config key 'base_train': a run grown from {self.parent} trains no base "
                              "(the checkpoint is the base): remove it")
        from .checkpoint_manifest import stage_records
        from .config import modality_spec

        path = self.parent / "manifest.json"
        self.cfg.model = model_config(manifest, path)
        base = [m.name for m in self.cfg.model.base_modalities]
        for rec in stage_records(manifest, path):
            if rec.modality is not None and rec.modality not in base and rec.modality not in self.parent_modalities:
                self.parent_modalities.append(rec.modality)
                self.parent_specs.append(modality_spec(rec.spec, f"{path}: stage {rec.name}"))
        have = set(base) | set(self.parent_modalities)
        for i, st in enumerate(self.cfg.stages):
            if st.modality.name in have:
                raise ConfigError(f"config key 'stages[{i}].modality': '{st.modality.name}' is already in "
                                  f"{self.parent} (it has: {', '.join(sorted(have))})")

    def preflight(self) -> None:
        """Fail before training on an unknown method or setting, a modality without data, or media
        that do not fit the encoders (checked on the meta device: no weights)."""
        from .methods import get_method
        from .model import XModalLM

        # methods, their settings and phases were checked with the sections (run_sections)
        if self.cfg.base_train is not None:
            for m in self.base_modalities:
                self.data.train(m)  # raises ConfigError naming data.train when missing
        for st in self.cfg.stages:
            self.data.train(st.modality.name)
        if self.parent is not None:  # the parent's architecture with its weights (they are read anyway)
            model = XModalLM.from_pretrained(self.parent)
        else:
            model = XModalLM.build(self.cfg.model, device="meta")
            self._warn_unknown_words(model, [*self.base_modalities, *(st.modality.name for st in self.cfg.stages)])
            for m in self.base_modalities:
                self._check_shape(model, m, "model.base_modalities")
            model.end_stage()
        for i, st in enumerate(self.cfg.stages):
            try:
                model.add_modality(st.modality, method=st.method, settings=st.settings)
            except (ValueError, KeyError) as err:
                raise ConfigError(f"config key 'stages[{i}].modality': {err}") from None
            self._check_shape(model, st.modality.name, f"stages[{i}].modality")
            impl = get_method(st.method)
            for record in walk_phases(model):
                if record.phase in impl.data_phases:
                    # the phase measures the trained model: later stages' shapes are checked when they start
                    logger.debug("preflight stops at stage %d (%s): phase %s needs data", i, st.modality.name,
                                 record.phase)
                    return

    def _check_shape(self, model: Any, modality: str, where: str) -> None:
        if modality == "text" or not self.data.has(modality, "train"):
            return
        item = self.data.train(modality)[0]
        if item["media"] is None:
            return
        try:
            model.encode(modality, item["media"].unsqueeze(0))
        except NotImplementedError:  # an op without a meta kernel: the real run will tell
            return
        except (ValueError, RuntimeError) as err:
            if "meta" in str(err):  # data-dependent ops cannot run without weights: the real run checks
                return
            raise ConfigError(f"config key '{where}' ({modality}): media of shape {list(item['media'].shape)} "
                              f"from the loader do not fit the model: {err}") from None

    def _check_resumable(self) -> None:
        """`--resume`: say when there is nothing to resume, refuse a config that differs from the run's."""
        path = self.out / PROGRESS
        if not path.exists() and not (self.out / CHECKPOINT / "manifest.json").exists():
            logger.warning("%s holds no run to resume: starting a fresh run", self.out)
            return
        try:
            old = json.loads(path.read_text()).get("config") if path.exists() else None
        except ValueError:
            raise ConfigError(f"{path}: not valid JSON: the run's progress file is damaged") from None
        if old is None:  # a run seeded from another (the demo's method runs): nothing to compare yet
            return
        diff = first_difference(old, json.loads(json.dumps(to_dict(self.cfg))))
        if diff is None:
            return
        key, was, now = diff
        if not self.force_config:
            raise ConfigError(f"config key '{key}' differs from the run in {self.out} ({was!r} there, {now!r} "
                              f"now): resume with the run's config, or pass --force-config")
        logger.warning("resuming with a changed config (first difference: '%s': %r -> %r)", key, was, now)

    # ------------------------------------------------------------------------------------------
    # progress file

    def _save_progress(self) -> None:
        if self.accelerator.is_main_process:
            atomic_write_bytes(self.out / PROGRESS, json.dumps(self.progress, indent=1).encode())

    def _load_progress(self) -> None:
        path = self.out / PROGRESS
        fresh = {"name": self.cfg.name, "method": method_label(self.cfg), "seed": self.cfg.seed,
                 "config": to_dict(self.cfg), "columns": self.columns,
                 "from": str(self.parent.resolve()) if self.parent is not None else None, "learned_at": self.learned_at,
                 "rows": {}, "train_seconds": {}, "trainable_params": {}, "losses": {}, "total_params": None}
        if path.exists() and self.resume:
            self.progress = {**fresh, **json.loads(path.read_text())}
            if self.force_config:
                self.progress["config"] = fresh["config"]
        else:
            self.progress = fresh

    def _finished_stages(self) -> list[str]:
        manifest = self.out / CHECKPOINT / "manifest.json"
        if not (self.resume and manifest.exists()):
            return []
        return [s["name"] for s in json.loads(manifest.read_text())["stages"] if s.get("file")]

    # ------------------------------------------------------------------------------------------
    # the loop

    def _make_accelerator(self) -> Any:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

        cpu = self.train_cfg.cpu or not torch.cuda.is_available()
        kwargs: dict[str, Any] = {}
        if self.train_cfg.log_with:
            import importlib.util

            pkg = self.train_cfg.log_with  # each tracker's package has its name
            alt = "tensorboardX" if pkg == "tensorboard" else pkg
            if importlib.util.find_spec(pkg) is None and importlib.util.find_spec(alt) is None:
                logger.warning("train.log_with=%s but %s is not installed: not logging there", pkg, pkg)
            else:
                kwargs = {"log_with": self.train_cfg.log_with, "project_dir": str(self.out / "trackers")}
        # frozen paths of other modalities never get gradients: DDP must not wait for them
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        try:  # accelerate keeps one process-wide state: let a later run pick another precision
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(reset_partial_state=False)  # keeps the process group
        except (ImportError, AttributeError, TypeError):
            pass
        # a dead or stuck rank makes the others' next collective fail after this long, not hang
        timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=self.train_cfg.distributed.timeout))
        return Accelerator(cpu=cpu, mixed_precision="no" if cpu else self.train_cfg.mixed_precision,
                           kwargs_handlers=[ddp, timeout], **kwargs)

    def _model_device(self) -> Any:
        """Where the full model lives: the accelerator's device, or the host for fsdp with full_model_on=cpu."""
        dist = self.train_cfg.distributed
        if dist.full_model_on == "cpu" and wants_fsdp(dist.strategy, self.accelerator):
            return torch.device("cpu")
        return self.accelerator.device

    def run(self) -> dict[str, Any]:
        """Train every stage not yet finished; returns the method's report entry."""
        from .model import XModalLM

        check_run_folder(self.out, "train")
        if not self.resume and (self.out / CHECKPOINT / "manifest.json").exists():
            raise ConfigError(f"{self.out} already holds a run: pass --resume to continue it, or use another --out")
        if self.resume:
            self._check_resumable()
        self.preflight()
        if self.accelerator is None:
            self.accelerator = self._make_accelerator()
        acc = self.accelerator
        check_accelerator(acc)  # an accelerate setup whose sharding the stage files cannot follow
        deterministic = (torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled())
        if acc.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        if acc.is_main_process:
            claim_run_folder(self.out, "train")
        acc.wait_for_everyone()
        level = logging.getLogger("modweave").level
        handler = self._attach_log_file()
        try:
            if self.train_cfg.log_with and getattr(acc, "log_with", None):
                acc.init_trackers(self.cfg.name, config={k: v for k, v in vars(self.train_cfg).items()
                                                          if isinstance(v, (int, float, str, bool))})
            self._load_progress()
            finished = self._finished_stages()
            if finished:
                logger.info("resuming: finished stages %s", ", ".join(finished))
                self.model = XModalLM.from_pretrained(self.out / CHECKPOINT, device=self._model_device())
            elif self.parent is not None:
                logger.info("growing %s", self.parent)
                self.model = XModalLM.from_pretrained(self.parent, device=self._model_device())
                finished = ["base"]  # the parent is this run's base: evaluated, never trained again
            else:
                _seed_everything(self.cfg.seed, 0)
                self.model = XModalLM.build(self.cfg.model, device=self._model_device())
            if self.data_cfg.feature_cache:
                from .feature_cache import FeatureCache

                where = self.data_cfg.feature_cache
                self.model.feature_cache = FeatureCache(None if where == "memory" else where)
            self._run_base(finished)
            for i, st in enumerate(self.cfg.stages):
                self._run_stage(i, st, finished)
            self.progress["total_params"] = count_params(self.model)
            self._save_progress()
            if self.train_cfg.log_with and getattr(acc, "log_with", None):
                acc.end_training()
        finally:  # leave the process as it was (tests and notebooks run several trainers)
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
            if handler is not None:
                logging.getLogger("modweave").removeHandler(handler)
                logging.getLogger("modweave").setLevel(level)
                handler.close()
        from .report import write_report

        result = method_entry(self.progress)
        if acc.is_main_process:
            write_report(self.out, build_report(self.progress, {self.progress["method"]: result}),
                         {self.progress["method"]: self.progress["losses"]})
            from .model_card import write_model_card

            # the report exists only now, after the last manifest: the card gets the run's results
            write_model_card(self.out / CHECKPOINT, self.model, self.out / "report.json")
        acc.wait_for_everyone()
        return result

    def _attach_log_file(self) -> logging.Handler | None:
        if not self.accelerator.is_main_process:
            return None
        handler = logging.FileHandler(self.out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("modweave")
        root.addHandler(handler)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        return handler

    def _train(self, name: str, items: Any, cfg: TrainConfig, seed_parts: tuple[int, ...]) -> None:
        _seed_everything(*seed_parts, 1)
        out = train_phase(model=self.model, accelerator=self.accelerator, stage=name, items=items, cfg=cfg,
                          seed=hash_seed(seed_parts), out_dir=self.out, resume=self.resume,
                          on_step=self._on_step, log_fn=self._log_fn())
        self.progress["train_seconds"][name] = round(out["seconds"], 3)
        self.progress["trainable_params"][name] = out["trainable_params"]
        log = self._log_fn()
        if log is not None:
            log({f"trainable_params/{name}": out["trainable_params"], f"train_seconds/{name}": out["seconds"]}, 0)
        self.progress["losses"][name] = out["losses"]
        self._save_progress()

    def _log_fn(self) -> Any:
        acc = self.accelerator
        if not (self.train_cfg.log_with and getattr(acc, "log_with", None)):
            return None
        return lambda values, step: acc.log(values, step=step)

    def _on_step(self) -> None:
        self.steps_done += 1
        for cb in self.callbacks:
            if hasattr(cb, "on_step"):
                cb.on_step(self)

    def _end_stage(self, name: str, heldout: list | None) -> None:
        acc = self.accelerator
        cache = self.model.feature_cache
        if cache is not None and acc.is_main_process:
            cache.flush()  # what this phase encoded, for every later phase and run
        save = self.out / CHECKPOINT if acc.is_main_process else None
        with across_ranks():  # every rank ends the stage on the same held-out data: statistics share it
            self.model.end_stage(save_dir=save, data=heldout)
        acc.wait_for_everyone()
        if acc.is_main_process:
            clear_stage(self.out, name)
        for cb in self.callbacks:
            if hasattr(cb, "on_stage_end"):
                cb.on_stage_end(self, name)

    def _run_base(self, finished: list[str]) -> None:
        if "base" in finished:
            if self.parent is not None and not (self.out / CHECKPOINT / "manifest.json").exists():
                self._write_parent_reference()
            self._evaluate_row("base")
            return
        if self.cfg.base_train is not None:
            self.model.set_base_trainable(**self.cfg.base_train)
            parts = [self.data.train(m) for m in self.base_modalities]
            pairs = self.data.xmodal_train(self.base_modalities)  # the pair format, on the base's own media
            items = ConcatItems(parts + ([pairs] if pairs is not None else []))
            self._train("base", items, self.base_cfg, (self.cfg.seed, 0))
        else:
            self.progress["trainable_params"]["base"] = 0
            self.progress["train_seconds"]["base"] = 0.0
        self._end_stage("base", None)
        self._evaluate_row("base")

    def _write_parent_reference(self) -> None:
        """The grown run's checkpoint starts as a manifest referencing the parent's stages (no copies),
        so that `--resume` finds it and `from_pretrained(OUT/checkpoint, upto=...)` reaches them."""
        if self.accelerator.is_main_process:
            self.model.save_pretrained(self.out / CHECKPOINT)
        self.accelerator.wait_for_everyone()

    def _run_stage(self, index: int, st: Any, finished: list[str]) -> None:
        from .methods import get_method

        impl = get_method(st.method)
        m = st.modality.name
        names = stage_names(m, impl.phases)
        done = [n for n in names if n in finished]
        if len(done) == len(names):
            self._evaluate_row(m)
            return
        if not done:
            _seed_everything(self.cfg.seed, index + 1, 0)
            self.model.add_modality(st.modality, method=st.method, settings=st.settings)
        else:
            self.model.next_phase()
        heldout = list(batches(self.data.heldout(m), self.model.collator(train=True), self.train_cfg.batch_size))
        for p_index in range(len(done), len(names)):
            name = names[p_index]
            assert self.model.stages[-1].name == name, (self.model.stages[-1].name, name)
            self._train(name, self.data.train(m), self.stage_cfgs[index][impl.phases[p_index]],
                        (self.cfg.seed, index + 1, p_index))
            self._end_stage(name, heldout or None)
            if p_index + 1 < len(names):
                self.model.next_phase()
        self._evaluate_row(m)

    def _evaluate_xmodal(self) -> dict[str, float]:
        """Every X-modal label whose modalities all have paths by now: label -> score (zero-shot for
        the pairs holding a modality learnt only from its own data)."""
        from .evaluate import accuracy_row, can_run

        labels = [label for label in self.data.xmodal_labels() if can_run(self.model, label)]
        datasets = {label: self.data.xmodal_test(label) for label in labels}
        values, _ = accuracy_row(self.model, datasets, labels, batch_size=self.eval_cfg.batch_size,
                                 max_new_tokens=self.eval_cfg.max_new_tokens, num_beams=self.eval_cfg.num_beams,
                                 qa_mode=self.eval_cfg.qa_mode)
        chance = self.progress.setdefault("xmodal_chance", {})
        out: dict[str, float] = {}
        for label, value in zip(labels, values):
            if value is not None:
                out[label] = value
                if label not in chance:  # the test pairs do not change: their chance is computed once
                    ds = datasets[label]
                    chance[label] = _chance([ds[i] for i in range(len(ds))])
        return out

    def _evaluate_row(self, row: str) -> None:
        if row in self.progress["rows"] or not self.eval_cfg.enabled:
            return
        from .evaluate import accuracy_row

        acc = self.accelerator
        if acc.is_main_process:
            datasets = {m: self.data.test(m) for m in self.columns if self.data.has(m, "test")}
            t0 = time.perf_counter()
            values, details = accuracy_row(self.model, datasets, self.columns, batch_size=self.eval_cfg.batch_size,
                                           max_new_tokens=self.eval_cfg.max_new_tokens,
                                           num_beams=self.eval_cfg.num_beams, qa_mode=self.eval_cfg.qa_mode)
            logger.info("after %s: %s (%.1f s)", row, ", ".join(
                f"{m}={'-' if v is None else f'{v:.3f}'}" for m, v in zip(self.columns, values)), time.perf_counter() - t0)
            self.progress["rows"][row] = {"acc": values,
                                          "tasks": {m: d["tasks"] for m, d in details.items() if d}}
            xmodal = self._evaluate_xmodal()
            if xmodal:
                self.progress["rows"][row]["xmodal"] = xmodal
                logger.info("after %s, X-modal: %s", row, ", ".join(f"{k}={v:.3f}" for k, v in xmodal.items()))
            self._save_progress()
            log = self._log_fn()
            if log is not None:  # the accuracy matrix row by row: x = the row's index (0 = the base)
                log({f"acc/{m}": v for m, v in zip(self.columns, values) if v is not None},
                    len(self.progress["rows"]) - 1)
        acc.wait_for_everyone()



def _chance(items: Sequence[dict]) -> float | None:
    """Accuracy of guessing among each item's candidates (None without candidates)."""
    if not items or not all(it.get("candidates") for it in items):
        return None
    return sum(1 / len(it["candidates"]) for it in items) / len(items)


def run_training(cfg: RunConfig, out_dir: str | Path, resume: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Train `cfg` into `out_dir` (see `ContinualTrainer`); returns the method's report entry."""
    return ContinualTrainer(cfg, out_dir, resume=resume, **kwargs).run()
