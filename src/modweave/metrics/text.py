"""Task metrics on strings: VQA-style exact match, BLEU-4, CIDEr-D and ROUGE-L.

Own implementations (no Java, no NLTK): the formulas follow the COCO caption evaluation toolkit
(BLEU: corpus-level, clipped n-gram precision, brevity penalty against the closest reference length,
no smoothing; CIDEr-D: tf-idf n-gram vectors with document frequencies over the references, length
penalty sigma 6, x10; ROUGE-L: LCS precision/recall F-measure with beta 1.2).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
_PERIOD_NOT_DECIMAL = re.compile(r"(?<!\d)\.|\.(?!\d)")
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$~|:']")


def normalize_answer(text: str) -> str:
    """VQA-style normalisation: lower case, punctuation removed (a '.' inside a number is kept),
    number words -> digits, articles dropped, whitespace collapsed. "The Seven." -> "7"."""
    text = text.lower().replace("\n", " ").replace("\t", " ").strip()
    text = _PERIOD_NOT_DECIMAL.sub("", text)
    text = _PUNCT.sub(" ", text)
    words = [NUMBER_WORDS.get(w, w) for w in text.split() if w not in ARTICLES]
    return " ".join(words)


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised reference, else 0.0."""
    refs = [references] if isinstance(references, str) else list(references)
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in refs))


def tokenize(text: str) -> list[str]:
    """Caption tokens: lower-cased words, punctuation dropped (as the COCO tokenizer does)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _as_refs(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    return [[r] if isinstance(r, str) else list(r) for r in references]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU-`max_n` of hypotheses against their reference lists (0 when a precision is 0)."""
    refs_all = _as_refs(references)
    if len(hypotheses) != len(refs_all):
        raise ValueError(f"{len(hypotheses)} hypotheses vs {len(refs_all)} reference lists")
    matched = [0] * max_n
    total = [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, refs_all):
        h = tokenize(hyp)
        r_toks = [tokenize(r) for r in refs]
        hyp_len += len(h)
        # closest reference length (ties: the shorter), as in the COCO toolkit
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in r_toks)[1]
        for n in range(1, max_n + 1):
            counts = _ngrams(h, n)
            max_ref: Counter = Counter()
            for r in r_toks:
                max_ref |= _ngrams(r, n)
            matched[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    if hyp_len == 0 or any(m == 0 for m in matched):
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matched, total)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_p)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis: str, references: str | Sequence[str], beta: float = 1.2) -> float:
    """ROUGE-L of one hypothesis: best LCS precision and recall over the references, F_beta."""
    refs = [references] if isinstance(references, str) else list(references)
    h = tokenize(hypothesis)
    if not h:
        return 0.0
    precs, recs = [], []
    for r in refs:
        rt = tokenize(r)
        lcs = _lcs(h, rt)
        precs.append(lcs / len(h))
        recs.append(lcs / len(rt) if rt else 0.0)
    p, r = max(precs), max(recs)
    if p == 0 or r == 0:
        return 0.0
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def corpus_rouge_l(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    refs_all = _as_refs(references)
    return sum(rouge_l(h, r) for h, r in zip(hypotheses, refs_all)) / max(len(hypotheses), 1)


def cider_d(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], max_n: int = 4,
            sigma: float = 6.0) -> float:
    """Corpus CIDEr-D (mean over samples). Document frequencies come from the references of all
    samples, so a single-sample corpus scores 0 (every n-gram has idf log(1/1) = 0)."""
    refs_all = [[tokenize(r) for r in refs] for refs in _as_refs(references)]
    hyps = [tokenize(h) for h in hypotheses]
    if len(hyps) != len(refs_all):
        raise ValueError(f"{len(hyps)} hypotheses vs {len(refs_all)} reference lists")
    if not hyps:
        return 0.0
    df: Counter = Counter()
    for refs in refs_all:
        df.update({g for r in refs for n in range(1, max_n + 1) for g in _ngrams(r, n)})
    log_docs = math.log(float(len(hyps)))

    def vectors(tokens: list[str]) -> tuple[list[dict], list[float]]:
        vecs, norms = [], []
        for n in range(1, max_n + 1):
            v = {g: c * (log_docs - math.log(max(1.0, df[g]))) for g, c in _ngrams(tokens, n).items()}
            vecs.append(v)
            norms.append(math.sqrt(sum(x * x for x in v.values())))
        return vecs, norms

    scores = []
    for hyp, refs in zip(hyps, refs_all):
        hv, hn = vectors(hyp)
        per_ref = []
        for r in refs:
            rv, rn = vectors(r)
            delta = len(hyp) - len(r)
            sims = []
            for n in range(max_n):
                # CIDEr-D clips the hypothesis counts at the reference's (min) to stop repetition gaming
                val = sum(min(x, rv[n][g]) * rv[n][g] for g, x in hv[n].items() if g in rv[n])
                if hn[n] != 0 and rn[n] != 0:
                    val /= hn[n] * rn[n]
                sims.append(val * math.exp(-(delta**2) / (2 * sigma**2)))
            per_ref.append(sum(sims) / max_n)
        scores.append(10.0 * sum(per_ref) / len(per_ref))
    return sum(scores) / len(scores)
