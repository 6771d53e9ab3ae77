"""Where a save may go: a missing or empty folder, or this model's own checkpoint; never a stranger's.

A model remembers, per folder, which stage files it loaded or wrote there (`saved_in`), so the trainer
writing stage by stage, a `--resume`, or a reloaded model saved back into its folder are recognised as
the same lineage, while another model's checkpoint, a folder of other files, or an `upto=` load saved
over the stages it lacks are refused. A model loaded from checkpoint PARENT and saved elsewhere gets a
`parent` entry instead of copies of PARENT's stage files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint_manifest import MANIFEST, CheckpointError, read_manifest

if TYPE_CHECKING:
    from .model import XModalLM



def _is_library_file(name: str, folder: Path | None = None) -> bool:
    """Names this library writes into a checkpoint folder (temp files included). The model card
    README.md counts only when it carries modweave's marker (checked when `folder` is given): a README
    someone else wrote makes the folder a stranger's."""
    if name == "README.md":
        from .model_card import is_modweave_card

        return folder is None or is_modweave_card(folder / name)
    return (name in (MANIFEST, "tokenizer", ".tokenizer.tmp", "peft") or (name.startswith("stage-") and name.endswith(".safetensors"))
            or (name.startswith(".") and name.endswith(".tmp")))


def saved_in(model: "XModalLM", folder: Path) -> dict[int, tuple[str, str]]:
    """What `model` holds in checkpoint `folder`: stage index -> (file, sha256), as this model object
    loaded or wrote it there (a copy written elsewhere changes the records, not this folder's entries)."""
    return model.saved_stage_files.setdefault(str(Path(folder).resolve()), {})


def target_parent(model: "XModalLM", save_dir: Path) -> dict[str, Any] | None:
    """Check that `model` may write into `save_dir`; returns the parent entry its manifest gets.

    Allowed: a missing or empty folder, one holding only files this library writes, or this model's own
    checkpoint (its stages so far, same files and checksums: how the trainer writes stage by stage).
    Refused: a file, a folder with other files, another model's checkpoint, or this model's checkpoint
    with more stages than the model has (an `upto=` load saved back would drop them)."""
    if save_dir.exists() and not save_dir.is_dir():
        raise CheckpointError(f"cannot save into {save_dir}: it is a file, not a checkpoint folder")
    mine = saved_in(model, save_dir)
    if (save_dir / MANIFEST).exists():
        try:
            data = read_manifest(save_dir)
        except CheckpointError as err:
            raise CheckpointError(f"refusing to write into {save_dir}: {err}") from None
        theirs = data["stages"]
        if len(theirs) > len(model.stages):
            raise CheckpointError(f"refusing to write into {save_dir}: it holds {len(theirs)} stages, this model "
                                  f"{len(model.stages)} (saving would drop stage '{theirs[len(model.stages)].get('name')}'); "
                                  "save into a new folder")
        for i, rec in enumerate(theirs):
            ours = model.stages[i]
            where = mine.get(i, (ours.file, ours.sha256))
            if (rec.get("name"), rec.get("modality"), rec.get("method"), rec.get("phase"), rec.get("file"),
                    rec.get("sha256")) != (ours.name, ours.modality, ours.method, ours.phase, *where):
                raise CheckpointError(f"refusing to write into {save_dir}: it holds another model's checkpoint "
                                      f"(stage {i} '{rec.get('name')}' is not this model's); save into a new folder")
            mine[i] = where
        return data.get("parent")
    if save_dir.is_dir():
        foreign = sorted(p.name for p in save_dir.iterdir() if not _is_library_file(p.name, save_dir))
        if foreign:
            raise CheckpointError(f"refusing to write into {save_dir}: it is not empty and not a modweave checkpoint "
                                  f"(it holds {foreign[0]!r}); save into a new or empty folder")
    mine.clear()  # nothing of this model is there (a folder emptied since, or a killed first write)
    origin = model.checkpoint_origin
    if not origin or Path(origin["dir"]) == save_dir.resolve() or not (Path(origin["dir"]) / MANIFEST).is_file():
        return None
    home = saved_in(model, Path(origin["dir"]))
    mine.update({i: home[i] for i in range(origin["stages"]) if i in home})
    try:
        rel = os.path.relpath(origin["dir"], save_dir.resolve())
    except ValueError:  # another drive (Windows)
        rel = origin["dir"]
    return {"path": rel, "stages": origin["stages"], "manifest_sha256": origin["manifest_sha256"]}
