"""`modweave push CKPT REPO_ID [--private] [--revision BRANCH]`: upload a checkpoint folder to the Hub."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload a checkpoint folder (manifest, stages, tokenizer, model card, PEFT "
                                    "folders) to a Hugging Face Hub model repo")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/demo/ana/checkpoint)")
    p.add_argument("repo_id", help="the Hub model repo, 'org/name' (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", default=None, metavar="BRANCH", help="push to this branch (created if missing)")
    p.add_argument("--message", default=None, help="the commit message")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import push_checkpoint

    url = push_checkpoint(args.checkpoint, args.repo_id, private=args.private, revision=args.revision,
                          commit_message=args.message)
    print(f"pushed {args.checkpoint} to {args.repo_id}: {url}")
    return 0
