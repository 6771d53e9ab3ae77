"""`modweave generate CHECKPOINT_DIR --modality M --media FILE --prompt TEXT [--num-beams N] [--upto M]`.

Several media, each of its own modality: repeat the pair, and mark where each goes in the prompt,
`--modality image --media a.png --modality audio --media b.wav --prompt "Is <media:1> the digit of <media:2>?"`.
"""

from __future__ import annotations

import argparse

from ..config import GENERATE_MAX_NEW_TOKENS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="answer one question about media files (or none: --modality text)")
    p.add_argument("checkpoint", help="a checkpoint folder")
    p.add_argument("--modality", required=True, action="append",
                   help="the path to use (e.g. audio); 'text' needs no media; repeat it, once per --media, for several media")
    p.add_argument("--media", action="append",
                   help="a media file (loaded with its path's recorded loader settings); repeat for several, "
                        "referenced from the prompt as <media:1>, <media:2>, ...")
    p.add_argument("--prompt", required=True, help="the question/instruction")
    p.add_argument("--num-beams", type=int, default=1, help="also answer with beam search of this width (>1)")
    p.add_argument("--max-new-tokens", type=int, default=GENERATE_MAX_NEW_TOKENS)
    p.add_argument("--upto", help="use the model as it was after this stage/modality")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the stage files' checksums and accept changed sources of referenced modules (warned)")
    p.set_defaults(func=run)


def _as_lists(modality: str | list[str], media_path: str | list[str] | None) -> tuple[list[str], list[str]]:
    modalities = [modality] if isinstance(modality, str) else list(modality)
    paths = [] if media_path is None else [media_path] if isinstance(media_path, str) else list(media_path)
    return modalities, paths


def check_request(modality: str | list[str], media_path: str | list[str] | None, num_beams: int,
                  max_new_tokens: int) -> None:
    """Refuse a request that cannot run (one line naming the option); the CLI checks before loading."""
    for option, value in (("--num-beams", num_beams), ("--max-new-tokens", max_new_tokens)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1 (got {value})")
    modalities, paths = _as_lists(modality, media_path)
    if "text" in modalities and paths:
        raise ValueError(f"--media {paths[0]} was given with --modality text, which takes no media "
                         "(drop --media, or name the media's modality)")
    if "text" not in modalities and len(modalities) != len(paths):
        raise ValueError(f"{len(modalities)} --modality for {len(paths)} --media: give one --modality per --media")
    if "text" in modalities and len(modalities) > 1:
        raise ValueError("--modality text takes no media and no other --modality")


def answer(model, modality: str | list[str], media_path: str | list[str] | None, prompt: str,
           max_new_tokens: int = GENERATE_MAX_NEW_TOKENS, num_beams: int = 1) -> dict[str, str]:
    """{"greedy": ..., "beam": ... (num_beams > 1)} for one question about zero, one or several media."""
    from pathlib import Path

    from ..data.formats import joined_label
    from ..modalities import get_modality

    modalities, paths = _as_lists(modality, media_path)
    for m in modalities:
        if m != "text" and m not in model.paths:
            raise ValueError(f"modality '{m}' has no path in this model (have: {', '.join(model.paths) or 'none'})")
    if modalities != ["text"] and not paths:
        raise ValueError(f"--media is needed for modality '{modalities[0]}'")
    check_request(modalities, paths, num_beams, max_new_tokens)
    media = [get_modality(m).load(Path(f), dict(model.paths[m].spec.loader)) for m, f in zip(modalities, paths)]
    item = {"id": "q", "modality": joined_label(modalities), "media": media if len(media) > 1 else (media or [None])[0],
            "media_modalities": modalities if media else [], "task": "qa", "prompt": prompt, "answer": None}
    batch = model.collator(train=False)([item])
    out = {"greedy": model.generate(batch, max_new_tokens=max_new_tokens, num_beams=1)[0]}
    if num_beams > 1:
        out["beam"] = model.generate(batch, max_new_tokens=max_new_tokens, num_beams=num_beams)[0]
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..model import XModalLM

    check_request(args.modality, args.media, args.num_beams, args.max_new_tokens)
    model = XModalLM.from_pretrained(Path(args.checkpoint), upto=args.upto, verify=not args.no_verify)
    out = answer(model, args.modality, args.media, args.prompt, args.max_new_tokens, args.num_beams)
    print(f"greedy: {out['greedy']}")
    if "beam" in out:
        print(f"beam({args.num_beams}): {out['beam']}")
    return 0
