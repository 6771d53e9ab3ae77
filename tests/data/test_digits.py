"""MCL-Digits: determinism, split, record rules from the spec, atomic writing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modweave.data import digits as D
from modweave.data.formats import read_jsonl


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(digits_root, tmp_path):
    again = tmp_path / "again"
    D.write_digits(again, seed=0, n_train=6, n_test=4, workers=1, progress=False, pairs=12)  # as conftest writes it
    assert _all_bytes(again) == _all_bytes(digits_root)


def test_pool_gives_same_bytes_as_inline(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "POOL_MIN_SAMPLES", 0)  # use the pool even for a tiny run
    kw = dict(seed=3, n_train=4, n_test=2, modalities=("text", "audio", "point_cloud"), progress=False)
    D.write_digits(tmp_path / "a", workers=1, **kw)
    D.write_digits(tmp_path / "b", workers=2, **kw)
    assert _all_bytes(tmp_path / "a") == _all_bytes(tmp_path / "b")


def test_other_seed_differs(digits_root, tmp_path):
    D.write_digits(tmp_path / "s1", seed=1, n_train=6, n_test=4, modalities=("image",), workers=1, progress=False)
    assert (tmp_path / "s1/image/0000.png").read_bytes() != (digits_root / "image/0000.png").read_bytes()


def _index(rec_id: str) -> int:
    return int(rec_id.split("-")[-2])


def test_split_is_disjoint_and_shared(digits_root):
    train, test = D.split_indices(1797)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 1797
    per_mod = {}
    for m in D.DIGIT_MODALITIES:
        tr = {_index(r.id) for r in read_jsonl(digits_root / f"{m}_train.jsonl")}
        te = {_index(r.id) for r in read_jsonl(digits_root / f"{m}_test.jsonl")}
        assert not tr & te and te <= set(test.tolist())
        per_mod[m] = (tr, te)
    assert len({(frozenset(a), frozenset(b)) for a, b in per_mod.values()}) == 1  # same indices everywhere


def test_records_follow_the_spec(digits_root):
    cfg = D.DigitsConfig()
    image_answers = set()
    for m in D.DIGIT_MODALITIES:
        for split in ("train", "test"):
            recs = read_jsonl(digits_root / f"{m}_{split}.jsonl")
            assert len(recs) == 2 * (6 if split == "train" else 4)  # two questions per sample
            for r in recs:
                assert re.fullmatch(r"[a-z]+", r.answer) and r.answer in r.candidates  # one short word
                assert r.prompt.startswith("Question: ") and r.prompt.endswith(" Answer:")
                assert (r.media is None) == (m == "text")
                if m != "text":
                    assert (digits_root / r.media).is_file()
            kinds = {r.id.split("-")[-1] for r in recs}
            assert ("digit" in kinds) == (m != "text")
            if m == "image":
                image_answers |= {r.answer for r in recs}
    # lesson 1: every attribute word a later modality uses is producible after the image stage
    later = {w for m in ("video", "audio", "depth", "point_cloud") for w in D.attribute_words(m, cfg)}
    assert later <= set(D.attribute_words("image", cfg))
    assert image_answers  # (the tiny benchmark cannot cover every word; the candidate sets do)


def test_meta_and_texts(digits_root):
    meta = json.loads((digits_root / "meta.json").read_text())
    assert meta["modalities"] == list(D.DIGIT_MODALITIES) and meta["seed"] == 0
    assert meta["counts"]["video"] == {"train": 12, "test": 8} and meta["splits"] == {"train": 6, "test": 4}
    texts = D.digits_texts()
    vocab = set(D.vocabulary(texts))
    assert set(meta["vocabulary"]) <= vocab and {"seven", "counterclockwise", "far", "?", ":"} <= vocab
    for m in D.DIGIT_MODALITIES:
        for r in read_jsonl(digits_root / f"{m}_train.jsonl"):
            assert {r.prompt, r.answer, *r.candidates} <= set(texts)


def test_knobs_change_the_benchmark(tmp_path):
    cfg = D.DigitsConfig(video_directions=2, video_format="frames", video_frames=3, pc_rotations=3, depth_with_rgb=True)
    D.write_digits(tmp_path / "k", n_train=8, n_test=2, modalities=("video", "depth", "point_cloud"), config=cfg, workers=1, progress=False)
    video = read_jsonl(tmp_path / "k/video_train.jsonl")
    assert {r.answer for r in video if r.id.endswith("direction")} <= {"left", "right"}
    assert len(list((tmp_path / "k" / video[0].media).glob("*.png"))) == 3
    depth = read_jsonl(tmp_path / "k/depth_train.jsonl")
    assert set(depth[0].media) == {"depth", "rgb"}
    pc = read_jsonl(tmp_path / "k/point_cloud_train.jsonl")
    assert pc[1].candidates == ["clockwise", "counterclockwise", "upright"]


def test_refuses_existing_unknown_and_out_of_range(digits_root, tmp_path):
    with pytest.raises(FileExistsError, match="overwrite"):
        D.write_digits(digits_root, n_train=1, n_test=1)
    with pytest.raises(ValueError, match="unknown modality 'smell'"):
        D.write_digits(tmp_path / "x", modalities=("image", "smell"))
    with pytest.raises(ValueError, match="n_test=9999"):
        D.write_digits(tmp_path / "x", n_test=9999)
    assert not (tmp_path / "x").exists()


def test_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    D.write_digits(out, n_train=2, n_test=1, modalities=("text",), workers=1, progress=False)
    before = _all_bytes(out)

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(D.RENDERERS, "audio", boom)
    with pytest.raises(RuntimeError):
        D.write_digits(out, n_train=2, n_test=1, workers=1, overwrite=True, progress=False)
    assert _all_bytes(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["bench"]
    D.write_digits(out, n_train=2, n_test=1, modalities=("image",), workers=1, overwrite=True, progress=False)
    assert (out / "image_train.jsonl").exists() and not (out / "text_train.jsonl").exists()
