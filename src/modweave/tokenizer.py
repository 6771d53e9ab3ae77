"""Tokenizers: a word-level tokenizer trained with `tokenizers` (the embedded default), or any HF one.

The word-level tokenizer lower-cases, splits on whitespace and punctuation, and is wrapped as a
`PreTrainedTokenizerFast` so that it saves and loads like any Hugging Face tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .config import TokenizerConfig

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_word_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """Train a word-level tokenizer whose vocabulary is every word/punctuation mark in `corpus`.

    Deterministic: the same corpus gives the same ids (the trainer orders by frequency then text).
    """
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, tidies punctuation
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False)
    tok.train_from_iterator(sorted(set(corpus)), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="right",
    )


def build_tokenizer(cfg: TokenizerConfig) -> PreTrainedTokenizerBase:
    if cfg.kind == "word":
        if not cfg.corpus:
            raise ValueError("tokenizer.corpus is empty: a word-level tokenizer needs the texts it must cover")
        return build_word_tokenizer(cfg.corpus)
    if cfg.kind == "hf":
        if not cfg.name_or_path:
            raise ValueError("tokenizer.name_or_path is required for tokenizer.kind=hf")
        from .bases.gguf import resolve_name_or_path  # `gguf:pkg/file.gguf` -> a converted local dir

        path = resolve_name_or_path(cfg.name_or_path)
        try:  # never run a checkpoint's own code: without False transformers asks on stdin, `echo y |` ran it
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        except ValueError as err:
            if "custom code" not in str(err):
                raise
            raise ValueError(f"tokenizer.name_or_path {path}: the tokenizer needs its own code (auto_map); "
                             "modweave never runs code from a checkpoint (trust_remote_code=False)") from None
        if tok.pad_token is None:
            tok.pad_token = tok.unk_token or tok.eos_token
        return tok
    raise ValueError(f"unknown tokenizer.kind '{cfg.kind}' (known: word, hf)")
