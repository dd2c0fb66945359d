"""A corpus split and tokenized once: what ``sqabench tokenize`` saves (a ``.tokens`` file) and what
``sqabench quality --data`` reads, so that a machine without the tokenizer (a GPU machine) trains on exactly
the tokens another one made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from sqabench.errors import ConfigError
from sqabench.files import replacing, writable_file
from sqabench.options import check_value
from sqabench.quality.corpus import read_documents, split
from sqabench.quality.options import DEFAULT_HELD_OUT, DEFAULT_TOKENIZER, QualityOptions
from sqabench.quality.tokenizer import Tokenizer, check_tokenizer, corpus_hash, get_tokenizer

LARGE = 20 << 20  # bytes of text past which reading it is announced
TOKENS_FORMAT = "sqabench-tokens/2"  # 2: the tokenizer's BOS (a /1 file reads, without it)
FORMATS = (TOKENS_FORMAT, "sqabench-tokens/1")
TOKENS_SUFFIX = ".tokens"


@dataclass(frozen=True)
class Tokenized:
    """A corpus split and tokenized: what ``sqabench tokenize`` saves, so that a machine without the
    tokenizer (a GPU machine) trains on exactly the tokens this one made."""

    source: str
    tokenizer: Tokenizer
    held_out: float
    corpus: str  # the training documents' hash
    train: list[list[int]]
    held: list[list[int]]


def tokenize(data: Path, tokenizer: str | None, vocab: int | None, held_out: float | None) -> Tokenized:  # fmt: skip
    """Read ``data``, split it into whole training and held-out documents (``held_out`` of them; None: 5%), and
    tokenize both (``tokenizer`` None: bytes; a BPE is trained on the training documents only); a ``.tokens``
    file of ``sqabench tokenize`` is loaded instead. One-line ``ConfigError`` for a corpus that cannot be used."""
    if data.suffix == TOKENS_SUFFIX:
        return load_tokens(data, tokenizer, vocab, held_out)
    tokenizer = tokenizer or DEFAULT_TOKENIZER
    held_out = DEFAULT_HELD_OUT if held_out is None else held_out
    check_tokenizer(tokenizer, vocab)
    if data.is_dir() or data.is_file() and data.stat().st_size > LARGE:
        logging.getLogger("sqabench").info(f"reading {data} ...")
    train_docs, held_docs = split(read_documents(data), held_out)
    tok = get_tokenizer(tokenizer, train_docs, vocab)
    return Tokenized(str(data), tok, held_out, corpus_hash(train_docs), tok.encode(train_docs), tok.encode(held_docs))


def _flat(docs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([t for d in docs for t in d], dtype=torch.int32),
            torch.tensor([len(d) for d in docs], dtype=torch.int64))  # fmt: skip


def save_tokens(tokens: Tokenized, path: Path) -> None:
    """``tokens`` as one file (tensors and plain values only: ``torch.load(weights_only=True)`` reads it)."""
    train, train_lengths = _flat(tokens.train)
    held, held_lengths = _flat(tokens.held)
    tok = tokens.tokenizer
    state = {"format": TOKENS_FORMAT, "source": tokens.source, "tokenizer": tok.name, "vocab": tok.vocab,
             "eod": tok.eod, "pad": tok.pad, "bos": tok.bos, "byte_lengths": list(tok.byte_lengths),
             "held_out": tokens.held_out, "corpus": tokens.corpus, "train": train, "train_lengths": train_lengths,
             "held": held, "held_lengths": held_lengths}  # fmt: skip
    with replacing(path) as scratch:
        torch.save(state, scratch)


def load_tokens(path: Path, tokenizer: str | None, vocab: int | None, held_out: float | None) -> Tokenized:
    """A ``.tokens`` file of ``sqabench tokenize``; a one-line ``ConfigError`` for anything else (a torn file,
    a checkpoint, a file of another format), or for options that contradict how it was made."""
    if not path.is_file():
        raise ConfigError(f"--data {path} does not exist; make it with sqabench tokenize")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many kinds on a file that is not its own
        raise ConfigError(f"--data {path} is not a tokens file of sqabench tokenize ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") not in FORMATS:
        raise ConfigError(f"--data {path} is not a {TOKENS_FORMAT} file; make it with sqabench tokenize")
    try:
        tok = Tokenizer(str(state["tokenizer"]), int(state["vocab"]), int(state["eod"]), int(state["pad"]),
                        tuple(int(n) for n in state["byte_lengths"]),
                        None if state.get("bos") is None else int(state["bos"]))  # fmt: skip
        train = _docs(state["train"], state["train_lengths"], tok.vocab)
        held = _docs(state["held"], state["held_lengths"], tok.vocab)
        made = (str(state["source"]), float(state["held_out"]), str(state["corpus"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"--data {path} is a damaged tokens file ({type(error).__name__}: {error}); make it again "
                          "with sqabench tokenize") from None  # fmt: skip
    for option, asked, stored in (("--tokenizer", tokenizer, tok.name), ("--vocab", vocab, tok.vocab),
                                  ("--held-out", held_out, made[1])):  # fmt: skip
        if asked is not None and asked != stored:
            raise ConfigError(f"{option} {asked}: {path} was tokenized with {option} {stored}; leave it out or "
                              "tokenize again")  # fmt: skip
    return Tokenized(made[0], tok, made[1], made[2], train, held)


def _docs(flat: torch.Tensor, lengths: torch.Tensor, vocab: int) -> list[list[int]]:
    """The documents of a flat tensor and their lengths, every id checked to be within the vocabulary."""
    if not isinstance(flat, torch.Tensor) or not isinstance(lengths, torch.Tensor):
        raise TypeError("documents are not tensors")
    if int(lengths.sum()) != flat.numel() or (lengths < 0).any():
        raise ValueError("document lengths do not add up to the tokens")
    if flat.numel() and not (0 <= int(flat.min()) and int(flat.max()) < vocab):
        raise ValueError(f"token ids outside the vocabulary of {vocab}")
    return [piece.tolist() for piece in torch.split(flat, lengths.tolist())]


def tokens_file(data: Path, tokenizer: str, vocab: int | None, held_out: float, out: Path | None) -> tuple[Path, Tokenized]:  # fmt: skip
    """``sqabench tokenize``: split and tokenize ``data`` into a ``.tokens`` file (``out``, or beside ``data``
    named by its tokenizer). Every option is checked before any text is read; the file is written in one step."""
    check_value(QualityOptions, "held_out", held_out)
    tokenizer = tokenizer.lower()
    path = out or data.with_name(f"{data.stem if data.is_file() else data.name}-{tokenizer}{vocab or ''}"
                                 f"{TOKENS_SUFFIX}")  # fmt: skip
    if path.suffix != TOKENS_SUFFIX:
        raise ConfigError(f"--out {path} must end in {TOKENS_SUFFIX} (sqabench quality --data knows it by that)")
    if path.exists():
        raise ConfigError(f"{path} exists; remove it first, or give another --out (a .tokens file is never "
                          "overwritten: a run may be training on it)")  # fmt: skip
    writable_file(path, "--out")
    if data.suffix == TOKENS_SUFFIX:
        raise ConfigError(f"{data} is a tokens file already; give the corpus it was made from")
    tokens = tokenize(data, tokenizer, vocab, held_out)
    save_tokens(tokens, path)
    return path, tokens
