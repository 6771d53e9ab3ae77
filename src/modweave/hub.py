"""The Hugging Face Hub: resolving a repo id to a checkpoint folder, and pushing one.

`resolve_checkpoint("org/name", revision)` downloads (or, with HF_HUB_OFFLINE=1, finds in the cache)
only the files a checkpoint needs: the manifest, the stage files, the tokenizer and the model card.
`push_checkpoint(CKPT, "org/name")` uploads a checkpoint folder with `HfApi.upload_folder`. Every
failure (no such repo, not in the cache while offline, no token) is a one-line `CheckpointError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .checkpoint_manifest import MANIFEST, CheckpointError, read_manifest

# what `from_pretrained` reads from a Hub checkpoint (the PEFT folders are for peft, not for us)
ALLOW_PATTERNS = [MANIFEST, "stage-*.safetensors", "tokenizer/*", "README.md"]
# `org/name` or `name`: the Hub's repo-id alphabet; no path separators beyond the one `/`
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


def is_repo_id(name: str) -> bool:
    """Whether `name` looks like a Hub repo id (`org/name`) rather than a local path."""
    return (bool(_REPO_ID.match(name)) and "/" in name and ".." not in name and not name.startswith(".")
            and not name.endswith(".git"))


def offline() -> bool:
    """HF_HUB_OFFLINE, read the way huggingface_hub reads it (at call time, so tests may set it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve_checkpoint(name: str | Path, revision: str | None = None) -> Path:
    """The local folder of checkpoint `name`: an existing folder as is, or a Hub repo id downloaded
    through `snapshot_download` (its cache; HF_HUB_OFFLINE=1 reads the cache only)."""
    path = Path(name)
    if path.is_dir():
        if revision is not None:
            raise CheckpointError(f"revision={revision!r} applies to a Hub repo id, and {name} is a local folder")
        return path
    text = str(name)
    if not is_repo_id(text):
        return path  # a local path that does not exist: read_manifest names it
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{text}@{revision}" if revision else text
    try:
        folder = snapshot_download(text, revision=revision, allow_patterns=ALLOW_PATTERNS,
                                   local_files_only=offline())
    except RevisionNotFoundError:
        raise CheckpointError(f"Hub checkpoint {text}: no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{text} is not a local folder, and the Hub has no model repository {text} (or it is "
                              "private: log in with `hf auth login`)") from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if offline() else "the Hub cannot be reached"
        raise CheckpointError(f"{text} is not a local folder, and Hub checkpoint {where} is not in the local cache "
                              f"({why}): download it once online, or pass a local checkpoint folder") from None
    except (HfHubHTTPError, OSError) as err:
        raise CheckpointError(f"Hub checkpoint {where}: download failed ({' '.join(str(err).split())[:200]})") from None
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise CheckpointError(f"Hub checkpoint {where}: the repository has no {MANIFEST} (not a modweave checkpoint)")
    return folder


def push_checkpoint(ckpt: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                    token: str | None = None, commit_message: str | None = None) -> str:
    """Upload checkpoint folder `ckpt` to Hub model repo `repo_id` (created if missing); returns the
    commit URL. Refuses a grown checkpoint whose stages live in a parent folder (they would not be
    uploaded): save a standalone copy with `save_pretrained(..., copy_parent=True)` first."""
    ckpt = Path(ckpt)
    if not is_repo_id(repo_id):
        raise CheckpointError(f"{repo_id!r} is not a Hub repo id (expected 'org/name')")
    data = read_manifest(ckpt)  # one-line error when it is not a checkpoint
    if data.get("parent"):
        raise CheckpointError(f"{ckpt}: its first {data['parent'].get('stages')} stages live in the parent checkpoint "
                              f"{data['parent'].get('path')}; push a standalone copy "
                              "(model.save_pretrained(DIR, copy_parent=True))")
    if offline():
        raise CheckpointError(f"cannot push {ckpt} to {repo_id}: HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = token or get_token()
    if not token:
        raise CheckpointError(f"cannot push {ckpt} to {repo_id}: no Hugging Face token (run `hf auth login` "
                              "or set HF_TOKEN)")
    from .model_card import write_model_card

    write_model_card(ckpt)  # a folder written before model cards existed gets one
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(ckpt), revision=revision,
                                 commit_message=commit_message or f"modweave checkpoint ({len(data['stages'])} stages)",
                                 ignore_patterns=[".*", "**/.*"])  # temp files of an interrupted save
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise CheckpointError(f"push of {ckpt} to {repo_id} failed: {' '.join(str(err).split())[:300]}") from None
    return str(getattr(info, "commit_url", info))
