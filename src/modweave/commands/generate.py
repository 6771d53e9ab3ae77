"""`modweave generate CHECKPOINT_DIR --modality M --media FILE --prompt TEXT [--num-beams N] [--upto M]`."""

from __future__ import annotations

import argparse

from ..model import GENERATE_MAX_NEW_TOKENS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="answer one question about one media file")
    p.add_argument("checkpoint", help="a checkpoint folder")
    p.add_argument("--modality", required=True, help="the path to use (e.g. audio); 'text' needs no media")
    p.add_argument("--media", help="the media file (loaded with the path's recorded loader settings)")
    p.add_argument("--prompt", required=True, help="the question/instruction")
    p.add_argument("--num-beams", type=int, default=1, help="also answer with beam search of this width (>1)")
    p.add_argument("--max-new-tokens", type=int, default=GENERATE_MAX_NEW_TOKENS)
    p.add_argument("--upto", help="use the model as it was after this stage/modality")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the stage files' checksums and accept changed sources of referenced modules (warned)")
    p.set_defaults(func=run)


def check_request(modality: str, media_path: str | None, num_beams: int, max_new_tokens: int) -> None:
    """Refuse a request that cannot run (one line naming the option); the CLI checks before loading."""
    for option, value in (("--num-beams", num_beams), ("--max-new-tokens", max_new_tokens)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1 (got {value})")
    if modality == "text" and media_path is not None:
        raise ValueError(f"--media {media_path} was given with --modality text, which takes no media "
                         "(drop --media, or name the media's modality)")


def answer(model, modality: str, media_path: str | None, prompt: str, max_new_tokens: int = GENERATE_MAX_NEW_TOKENS,
           num_beams: int = 1) -> dict[str, str]:
    """{"greedy": ..., "beam": ... (num_beams > 1)} for one question."""
    from pathlib import Path

    from ..modalities import get_modality

    if modality != "text" and modality not in model.paths:
        raise ValueError(f"modality '{modality}' has no path in this model (have: {', '.join(model.paths) or 'none'})")
    check_request(modality, media_path, num_beams, max_new_tokens)
    media = None
    if modality != "text":
        if media_path is None:
            raise ValueError(f"--media is needed for modality '{modality}'")
        media = get_modality(modality).load(Path(media_path), dict(model.paths[modality].spec.loader))
    batch = model.collator(train=False)([{"id": "q", "modality": modality, "media": media, "task": "qa",
                                          "prompt": prompt, "answer": None}])
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
