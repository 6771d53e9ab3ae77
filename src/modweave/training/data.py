"""Training and evaluation data for a run: records per modality, cached datasets, a seeded batch order.

The batch order is a pure function of (seed, stage, micro-batch number), so a resumed run sees exactly
the batches an uninterrupted one would, and each process of a distributed run takes its own shard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, RunConfig
from .config import DataConfig

logger = logging.getLogger(__name__)


class CachedDataset:
    """A `MediaDataset` whose items are kept in memory after the first load (`cache=True`)."""

    def __init__(self, dataset: Any, cache: bool = True):
        self.dataset = dataset
        self.cache: dict[int, dict] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.cache is None:
            return self.dataset[i]
        if i not in self.cache:
            self.cache[i] = self.dataset[i]
        return self.cache[i]


def loader_settings(cfg: RunConfig, data: DataConfig, extra_specs: Sequence[Any] = ()) -> dict[str, dict[str, Any]]:
    """Loader settings per modality: the path spec's `loader`, then `data.loader` on top. `extra_specs`:
    paths the model has beyond the config's (those of a checkpoint the run grows)."""
    from ..modalities.base import loader_settings_for

    out: dict[str, dict[str, Any]] = {}
    extra = data.loader or {}
    for spec in [*cfg.model.base_modalities, *extra_specs, *(s.modality for s in cfg.stages)]:
        try:
            out[spec.name] = loader_settings_for(spec, extra.get(spec.name))
        except ValueError as err:
            raise ConfigError(f"config key 'data.loader.{spec.name}' (or its path spec): {err}") from None
    for name, settings in extra.items():
        if name not in out:  # a modality with data but no path spec (text, or a base given only by data)
            out[name] = dict(settings)
    return out


def resolve_spec_loaders(cfg: RunConfig) -> None:
    """Fold each path spec's `num_frames` into its `loader` settings, so the settings the model records
    (and `eval` / `generate` reuse) are the ones training loads with. Refuses a `num_frames` that
    cannot take effect or disagrees with the loader's."""
    from ..modalities.base import loader_settings_for

    specs = [(f"model.base_modalities[{i}]", s) for i, s in enumerate(cfg.model.base_modalities)]
    specs += [(f"stages[{i}].modality", st.modality) for i, st in enumerate(cfg.stages)]
    for where, spec in specs:
        try:
            spec.loader = loader_settings_for(spec)
        except ValueError as err:
            raise ConfigError(f"config key '{where}': {err}") from None


class RunData:
    """The run's datasets: `train(m)` (training records minus the held-out tail), `heldout(m)`, `test(m)`."""

    def __init__(self, cfg: RunConfig, data: DataConfig, extra_specs: Sequence[Any] = ()):
        if data.root is None:
            raise ConfigError("config key 'data.root' is missing: the folder holding <modality>_train.jsonl files")
        self.cfg, self.data = cfg, data
        self.root = Path(data.root)
        if data.digits is not None and not (self.root / "meta.json").exists():
            from ..data.digits import write_digits

            if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
                # never write over what the library did not create: MCL-Digits goes into a new folder only
                raise ConfigError(f"config key 'data.root': {self.root} is not empty and holds no MCL-Digits "
                                  f"(no meta.json): data.digits writes only into a missing or empty folder")
            if "overwrite" in data.digits:
                raise ConfigError("config key 'data.digits.overwrite': not allowed (the data folder is never "
                                  "overwritten)")
            logger.info("writing MCL-Digits into %s", self.root)
            write_digits(self.root, **{"progress": False, **data.digits})
        self.settings = loader_settings(cfg, data, extra_specs)
        self._cache: dict[tuple[str, str], CachedDataset] = {}
        self._read: dict[tuple[str, str], list] = {}  # parsed records by (modality, split)
        self._media: dict | None = {} if data.cache else None  # one tensor per media file, shared by records

    def file(self, modality: str, split: str) -> Path:
        pattern = self.data.train if split == "train" else self.data.test
        return self.root / pattern.format(modality=modality)

    def has(self, modality: str, split: str) -> bool:
        return self.file(modality, split).is_file()

    def _records(self, modality: str, split: str) -> list:
        from ..data.dataset import read_records

        path = self.file(modality, split)
        if not path.is_file():
            raise ConfigError(f"config key 'data.{split}': no {split} data for modality '{modality}' ({path} not found)")
        if (modality, split) not in self._read:  # each annotation file is parsed once per run
            self._read[(modality, split)] = [r for r in read_records(path) if r.modality == modality]
        records = self._read[(modality, split)]
        limit = self.data.max_train if split == "train" else self.data.max_test
        return records[:limit] if limit is not None else records

    def _dataset(self, modality: str, part: str) -> CachedDataset:
        key = (modality, part)
        if key not in self._cache:
            if part == "test":
                records = self._records(modality, "test")
            else:
                records = self._records(modality, "train")
                n_held = min(self.data.heldout, len(records) // 4)  # never most of a small file
                records = records[: len(records) - n_held] if part == "train" else records[len(records) - n_held:]
            self._cache[key] = self._media_dataset(records, [modality])
        return self._cache[key]

    def _media_dataset(self, records: list, modalities: Sequence[str]) -> CachedDataset:
        """`records` read by `modalities`' loaders with the run's settings; a setting a loader does not
        take is refused naming its config key."""
        from ..data.dataset import MediaDataset

        try:
            ds = MediaDataset(records, self.root, {m: self.settings.get(m, {}) for m in modalities},
                              media_cache=self._media, follow_symlinks=self.data.follow_symlinks)
        except TypeError as err:
            keys = " or ".join(f"'data.loader.{m}'" for m in modalities)
            raise ConfigError(f"config key {keys} (or the path spec's loader): {err}") from None
        return CachedDataset(ds, self.data.cache)

    def texts(self, modalities: Sequence[str]) -> list[str]:
        """Every prompt, answer and candidate of `modalities`' train and test files, and of the X-modal
        files (what a word-level tokenizer must know; `<media:K>` markers are split out)."""
        from ..data.formats import MEDIA_MARKER

        out: list[str] = []
        for m in modalities:
            for split in ("train", "test"):
                if self.has(m, split):
                    for r in self._records(m, split):
                        out += [r.prompt, r.answer, *(r.candidates or [])]
        for split in ("train", "test"):
            for r in self._xmodal_records(split):
                out += [MEDIA_MARKER.sub(" ", r.prompt), r.answer, *(r.candidates or [])]
        return out

    # ---- X-modal pairs: samples holding several media (data/digit_pairs.py writes MCL-Digits')

    def xmodal_file(self, split: str) -> Path:
        return self.root / self.data.xmodal.format(split=split)

    def _xmodal_records(self, split: str) -> list:
        from ..data.dataset import read_records

        if not self.data.xmodal or not self.xmodal_file(split).is_file():
            return []
        key = ("<xmodal>", split)
        if key not in self._read:
            self._read[key] = [r for r in read_records(self.xmodal_file(split)) if r.multi]
        return self._read[key]

    def _xmodal_dataset(self, key: tuple[str, str], records: list) -> CachedDataset:
        if key not in self._cache:
            used = sorted({m for r in records for m in r.media_modalities})
            self._cache[key] = self._media_dataset(records, used)
        return self._cache[key]

    def xmodal_train(self, modalities: Sequence[str]) -> CachedDataset | None:
        """Training pairs whose media all have one of `modalities` (the base's), None when there are none."""
        allowed = set(modalities)
        records = [r for r in self._xmodal_records("train") if set(r.media_modalities) <= allowed]
        if self.data.max_train is not None:
            records = records[: self.data.max_train]
        return self._xmodal_dataset(("<xmodal>", "train:" + ",".join(sorted(allowed))), records) if records else None

    def xmodal_labels(self) -> list[str]:
        """The labels (`image+audio`, ...) of the X-modal test pairs, in file order."""
        return list(dict.fromkeys(r.modality for r in self._xmodal_records("test")))

    def xmodal_test(self, label: str) -> CachedDataset:
        """Test pairs of one label (at most `data.max_test`)."""
        records = [r for r in self._xmodal_records("test") if r.modality == label]
        if self.data.max_test is not None:
            records = records[: self.data.max_test]
        return self._xmodal_dataset(("<xmodal>", "test:" + label), records)

    def train(self, modality: str) -> CachedDataset:
        return self._dataset(modality, "train")

    def heldout(self, modality: str) -> CachedDataset:
        return self._dataset(modality, "heldout")

    def test(self, modality: str) -> CachedDataset:
        return self._dataset(modality, "test")


class ConcatItems:
    """Several datasets seen as one list of items (the base stage mixes its modalities)."""

    def __init__(self, parts: Sequence[Any]):
        self.parts = list(parts)
        self.offsets = []
        total = 0
        for p in self.parts:
            self.offsets.append(total)
            total += len(p)
        self.total = total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i: int) -> dict[str, Any]:
        for part, off in zip(reversed(self.parts), reversed(self.offsets)):
            if i >= off:
                return part[i - off]
        raise IndexError(i)


class BatchOrder:
    """Micro-batch `k` of a stage: a slice of a per-epoch permutation seeded by (seed, epoch).

    Items are grouped by modality inside a batch only through the data itself; a mixed base batch is
    fine because the model encodes each modality group separately. Each of `world` processes takes
    its own `batch_size` slice of a `world * batch_size` global batch."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if n == 0:
            raise ValueError("no training samples")
        self.n, self.bs, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self._perm: tuple[int, torch.Tensor] | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1]

    def indices(self, k: int) -> list[int]:
        global_bs = self.bs * self.world
        start = (k * global_bs + self.rank * self.bs)
        out = []
        for pos in range(start, start + self.bs):
            epoch, i = divmod(pos, self.n)
            out.append(int(self._permutation(epoch)[i]))
        return out


def batches(items: Any, collate: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    """Consecutive batches of a dataset in order (evaluation, held-out data)."""
    for start in range(0, len(items), batch_size):
        yield collate([items[i] for i in range(start, min(start + batch_size, len(items)))])
