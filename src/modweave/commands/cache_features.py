"""`modweave cache-features CONFIG [key=value ...] --out DIR`: encode a run's media once with its frozen
encoders and keep the features as safetensors shards in DIR (then train with `data.feature_cache=DIR`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache-features", help="precompute frozen-encoder features of a run's media (safetensors)")
    p.add_argument("config", help="the run's YAML preset")
    p.add_argument("overrides", nargs="*", help="key=value overrides (e.g. data.root=DIR)")
    p.add_argument("--out", required=True, help="the feature folder (created; existing shards are kept and added to)")
    p.add_argument("--splits", default="train,test", help="which splits' media to encode (train, test)")
    p.set_defaults(func=run)


def _frames(encoder, media):
    """A media tensor `[F, *frame]` or `[*frame]` as encoder inputs `[F, *frame]`."""
    dims = getattr(encoder, "frame_dims", 3)
    return media.unsqueeze(0) if media.dim() == dims else media


def cache_features(cfg, out: str, splits: tuple[str, ...] = ("train", "test")) -> dict[str, int]:
    """Encode every media of `cfg`'s data (every modality with a path in the config, the X-modal pairs
    too) with the encoder the run will use; returns {modality: frames encoded or found}."""
    import torch

    from ..config import ConfigError
    from ..encoders import build_encoder
    from ..feature_cache import FeatureCache
    from ..model import XModalLM
    from ..training.config import run_sections
    from ..training.data import RunData, resolve_spec_loaders

    if not set(splits) <= {"train", "test"}:
        raise ConfigError(f"--splits: expected train and/or test, got {','.join(splits)}")
    sections = run_sections(cfg)
    resolve_spec_loaders(cfg)
    data = RunData(cfg, sections.data)
    model = XModalLM.build(cfg.model)
    encoders = {p.spec.name: model.encoders[p.encoder_name] for p in model.paths.values()}
    for st in cfg.stages:  # a stage's own encoder is built as add_modality builds it (seeded by its config)
        spec = st.modality
        encoders[spec.name] = encoders[spec.encoder] if isinstance(spec.encoder, str) else build_encoder(spec.encoder)
    cache = FeatureCache(out)
    counts: dict[str, int] = {}
    for modality, encoder in encoders.items():
        encoder.eval()
        parts = [ds for s in splits if data.has(modality, s)
                 for ds in ((data.train(modality), data.heldout(modality)) if s == "train" else (data.test(modality),))]
        for ds in parts:
            for i in range(len(ds)):
                media = ds[i]["media"]
                if media is not None:
                    with torch.no_grad():
                        cache.encode(encoder, _frames(encoder, media))
                    counts[modality] = counts.get(modality, 0) + 1
        cache.flush()
    return counts


def run(args: argparse.Namespace) -> int:
    from ..config import load_run_config

    cfg = load_run_config(args.config, args.overrides)
    counts = cache_features(cfg, args.out, tuple(s for s in args.splits.split(",") if s))
    for modality, n in counts.items():
        print(f"{modality:<14}{n} media")
    print(f"features in {args.out}")
    return 0
