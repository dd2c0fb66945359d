"""What ``sqabench quality`` trains on: MQAR (``quality.mqar``) or a text corpus (``quality.corpus``, read and
tokenized by ``quality.tokens``).

A task gives every variant the same data: ``batch(seed, step, n)`` is training step ``step``'s batch under
``seed`` (drawn from the stream ``(seed, step)``, steps from 1), and ``held_out(seed)`` the set every
evaluation scores in full (MQAR: the stream ``(seed, 0)``; text: the held-out documents, whatever the seed).
Labels are already shifted (``labels[i, t]`` is the target after reading ``inputs[i, : t + 1]``) and
IGNORE (-100) wherever nothing is scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sqabench.errors import ConfigError
from sqabench.quality.corpus import evaluation_rows, evaluation_windows, padded, stream
from sqabench.quality.mqar import MQARSize, mqar
from sqabench.quality.options import MQAR_EVAL_EXAMPLES
from sqabench.quality.tokenizer import Tokenizer
from sqabench.quality.tokens import tokenize

HELD_OUT_STREAM = 0  # MQAR's held-out set under a seed is the stream (seed, 0); training step t draws (seed, t)


@dataclass(frozen=True)
class HeldOut:
    inputs: torch.Tensor
    labels: torch.Tensor  # real targets only
    padded_labels: torch.Tensor | None = None  # --pad-like-paper: the pads scored as well


def batch_seed(seed: int, step: int) -> tuple[int, int]:
    """The data stream of training step ``step`` (>= 1) under ``seed``: never the held-out set's."""
    if step == HELD_OUT_STREAM:
        raise ValueError("training steps count from 1: step 0's stream is the held-out set")
    return (seed, step)


@dataclass(frozen=True, eq=False)
class MQARTask:
    size: MQARSize
    eval_examples: int = MQAR_EVAL_EXAMPLES
    name = "mqar"
    per_example = True  # accuracy per example, then the mean (Zoology's)
    byte_lengths = None

    @property
    def vocab(self) -> int:
        return self.size.vocab

    @property
    def seq_len(self) -> int:
        return self.size.seq_len

    def batch(self, seed: int, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return mqar(self.size, n, batch_seed(seed, step))

    def held_out(self, seed: int) -> HeldOut:
        return HeldOut(*mqar(self.size, self.eval_examples, (seed, HELD_OUT_STREAM)))

    def describe(self) -> dict:
        return {"task": "mqar", "vocab": self.vocab, "seq_len": self.seq_len, "pairs": self.size.pairs,
                "data": "", "tokenizer": "", "pad_like_paper": False, "eval_tokens": "", "eval_docs": ""}  # fmt: skip

    def title(self) -> str:
        return f"MQAR (vocab {self.vocab}, length {self.seq_len}, {self.size.pairs} pairs)"


@dataclass(frozen=True, eq=False)
class TextTask:
    data: Path
    tokenizer: Tokenizer
    seq_len: int
    pad_like_paper: bool
    train_docs: int
    held_docs: int
    corpus: str  # the hash of the training documents: a checkpoint's or a cache's key
    train_tokens: torch.Tensor = field(repr=False)  # packed stream, or (docs, seq + 1) rows when padded
    held: HeldOut = field(repr=False)
    train_padded: object = field(default=None, repr=False)
    eval_tokens: int | None = None  # the budget asked for (bytes of held-out text)
    eval_docs: int = 0  # held-out documents with a scored token
    name = "text"
    per_example = False  # next-token accuracy pooled over every scored position

    @property
    def vocab(self) -> int:
        return self.tokenizer.vocab

    @property
    def byte_lengths(self) -> torch.Tensor:
        return torch.tensor(self.tokenizer.byte_lengths, dtype=torch.int64)

    def batch(self, seed: int, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(batch_seed(seed, step))
        if self.pad_like_paper:
            rows = torch.from_numpy(rng.integers(0, len(self.train_padded.inputs), size=n))
            return self.train_padded.inputs[rows], self.train_padded.padded_labels[rows]  # the pads scored
        starts = rng.integers(0, len(self.train_tokens) - self.seq_len, size=n)
        pieces = torch.stack([self.train_tokens[s : s + self.seq_len + 1] for s in starts.tolist()])
        return pieces[:, :-1].clone(), pieces[:, 1:].clone()

    def held_out(self, seed: int) -> HeldOut:
        return self.held

    def describe(self) -> dict:
        return {"task": "text", "vocab": self.vocab, "seq_len": self.seq_len, "pairs": "", "data": str(self.data),
                "tokenizer": self.tokenizer.name, "pad_like_paper": self.pad_like_paper,
                "corpus": self.corpus, "eval_tokens": self.scored, "eval_docs": self.eval_docs}  # fmt: skip

    @property
    def scored(self) -> int:
        """Held-out positions each evaluation scores (real tokens)."""
        return int((self.held.labels != -100).sum())

    def title(self) -> str:
        layout = "padded like the paper, pads scored" if self.pad_like_paper else "packed, no padding"
        return (f"text {self.data} ({self.train_docs} training and {self.held_docs} held-out documents, "
                f"{self.tokenizer.name} tokens, vocab {self.vocab}, length {self.seq_len}, {layout}; each evaluation "
                f"scores {self.scored:,} held-out tokens of {self.eval_docs} documents)")  # fmt: skip


def text_task(data: Path, tokenizer: str | None, vocab: int | None, seq: int, held_out: float | None,
              pad_like_paper: bool, eval_tokens: int | None = None) -> TextTask:  # fmt: skip
    """Read, split, tokenize and pack ``data`` (or load a ``.tokens`` file of ``sqabench tokenize``); one-line
    ``ConfigError`` for a corpus that cannot be used. ``eval_tokens``: the held-out text every evaluation scores,
    in bytes (the same share of every document: ``corpus.evaluation_windows``; with ``pad_like_paper`` rows
    spread over the documents, counted in real tokens); None: all of it."""
    tokens = tokenize(data, tokenizer, vocab, held_out)
    tok, train_ids, held_ids = tokens.tokenizer, tokens.train, tokens.held
    if pad_like_paper:
        if tok.bos is None:
            raise ConfigError(f"--data {data} was tokenized by an older sqabench, without the BOS token that "
                              "--pad-like-paper puts first in every row; tokenize it again")  # fmt: skip
        rows = padded(train_ids, seq, tok.bos, tok.eod, tok.pad)
        held_rows, documents = evaluation_rows(padded(held_ids, seq, tok.bos, tok.eod, tok.pad), eval_tokens)
        train, held = rows.inputs, HeldOut(held_rows.inputs, held_rows.labels, held_rows.padded_labels)
    else:
        rows, train = None, stream(train_ids, tok.eod)
        if len(train) < seq + 1:
            raise ConfigError(f"--data {data}: its training documents hold {len(train)} tokens, fewer than one "
                              f"training sequence (--seq {seq} + 1); give more text or a shorter --seq")  # fmt: skip
        inputs, labels, documents = evaluation_windows(held_ids, seq, tok.eod, tok.pad, tok.byte_lengths, eval_tokens)
        held = HeldOut(inputs, labels)
    return TextTask(
        data,
        tok,
        seq,
        pad_like_paper,
        len(train_ids),
        len(held_ids),
        tokens.corpus,
        train,
        held,
        rows,
        eval_tokens,
        documents,
    )
