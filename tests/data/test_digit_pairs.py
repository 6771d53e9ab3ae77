"""MCL-Digits X-modal pairs: right answers, balanced, one split each, every pair of modalities."""

from __future__ import annotations

import json
from collections import Counter

from modweave.data.digit_pairs import TRAIN_PAIRS, pair_modalities
from modweave.data.digits import DIGIT_WORDS
from modweave.data.formats import read_jsonl


def _digits_by_media(root, split: str) -> dict[str, int]:
    out = {}
    for path in root.glob(f"*_{split}.jsonl"):
        if path.name.startswith("xmodal"):
            continue
        for r in read_jsonl(path):
            if r.id.endswith("-digit"):
                out[json.dumps(r.media, sort_keys=True)] = DIGIT_WORDS.index(r.answer)
    return out


def test_pairs_cover_every_pair_of_modalities_with_right_balanced_answers(digits_root):
    meta = json.loads((digits_root / "meta.json").read_text())
    test = read_jsonl(digits_root / "xmodal_test.jsonl")
    want = {f"{a}+{b}" for a, b in pair_modalities(meta["modalities"])}
    assert {r.modality for r in test} == want == set(meta["xmodal"]["pairs"])
    assert "image+image" in want and "video+audio" in want and "audio+video" not in want
    digit = _digits_by_media(digits_root, "test")
    for r in test:
        (ma, pa), (mb, pb) = r.media_parts()
        assert r.modality == f"{ma}+{mb}" and "<media:" not in r.prompt  # both media at the template slot, in order
        da, db = digit[json.dumps(pa, sort_keys=True)], digit[json.dumps(pb, sort_keys=True)]  # test media only
        if r.id.endswith("-same"):
            assert r.answer == ("yes" if da == db else "no") and r.candidates == ["yes", "no"]
        elif r.id.endswith("-larger"):
            assert da != db and r.answer == ("first" if da > db else "second") and r.candidates == ["first", "second"]
        else:  # which digit is the first / the second: only the named media answers it
            asked = da if r.id.endswith("-which-first") else db
            assert da != db and r.answer == DIGIT_WORDS[asked] and r.candidates == list(DIGIT_WORDS)
            assert r.prompt.endswith(("the first? Answer:", "the second? Answer:"))
    answers = Counter(r.answer for r in test)
    kinds = Counter(r.id.rsplit("-", 1)[-1] for r in test)
    assert abs(answers["yes"] - answers["no"]) <= len(want) and abs(answers["first"] - answers["second"]) <= len(want)
    assert abs(kinds["first"] - kinds["second"]) <= len(want) and kinds["same"] and kinds["larger"]


def test_training_pairs_are_the_bases_own_modality_from_the_training_split(digits_root):
    train = read_jsonl(digits_root / "xmodal_train.jsonl")
    digit = _digits_by_media(digits_root, "train")
    assert train and {tuple(r.media_modalities) for r in train} == set(TRAIN_PAIRS)
    assert all(json.dumps(p, sort_keys=True) in digit for r in train for _, p in r.media_parts())


def test_pairs_are_deterministic_per_seed(tmp_path):
    from modweave.data.digits import write_digits

    kw = dict(n_train=8, n_test=6, modalities=["text", "image", "audio"], workers=1, progress=False)
    write_digits(tmp_path / "a", seed=3, **kw)
    write_digits(tmp_path / "b", seed=3, **kw)
    write_digits(tmp_path / "c", seed=3, pairs=0, **kw)
    assert (tmp_path / "a" / "xmodal_test.jsonl").read_bytes() == (tmp_path / "b" / "xmodal_test.jsonl").read_bytes()
    assert not (tmp_path / "c" / "xmodal_test.jsonl").exists()  # pairs=0: no X-modal files
