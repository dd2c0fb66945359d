"""A text corpus for ``sqabench quality --task text``: its documents, the held-out split, and the packing.

``--data`` is a UTF-8 text file (its documents separated by blank lines), a folder of ``.txt`` files (each
a document), or ``.jsonl`` / ``.parquet`` with a ``text`` column (each row a document); ``.txt.gz`` and
``.jsonl.gz`` are read as their contents. The held-out split
is whole documents, chosen by the hash of their text (the same on every machine, in any file order, and
two copies of one text always on the same side): the ``share`` of documents whose hashes sort first.

Packing (the honest pipeline): every document's tokens then EOD, one stream, no padding; a training
sequence is any window of ``seq + 1`` tokens of the training stream; the held-out stream is cut into
consecutive windows that overlap by one token, so every held-out token is predicted exactly once, and
the last, shorter window is filled out with labels that are never scored. ``--pad-like-paper`` lays each
document out the paper's way instead (RxNN's ``AutoregressiveLMDataset``): truncated to ``seq + 1``,
padded with PAD, and the pads scored.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from sqabench.errors import ConfigError
from sqabench.quality.mqar import IGNORE

FORMATS = (".txt (documents split at blank lines), a folder of .txt files, .jsonl or .parquet with a 'text' column "
           "(.txt and .jsonl may be gzipped)")


def _decode(data: bytes, where: str) -> str:
    if b"\0" in data[:8192]:
        raise ConfigError(f"--data {where} looks binary (it holds NUL bytes); give UTF-8 text: {FORMATS}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"--data {where} is not UTF-8 (byte {error.start}: {error.reason}); give UTF-8 text: "
                          f"{FORMATS}") from None  # fmt: skip


def _paragraphs(text: str) -> list[str]:
    return [doc.strip() for doc in re.split(r"\n[ \t\r\f\v]*\n", text) if doc.strip()]


def _bytes(path: Path) -> bytes:
    """The file's bytes; a ``.gz`` one's decompressed."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as error:
        raise ConfigError(f"--data {path} is not a readable gzip file ({error})") from None


def _jsonl(path: Path) -> list[str]:
    docs = []
    for number, line in enumerate(_decode(_bytes(path), str(path)).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--data {path} line {number} is not JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ConfigError(f"--data {path} line {number} has no string 'text' field; each line must be an "
                              'object such as {"text": "..."}')  # fmt: skip
        docs.append(record["text"])
    return docs


def _parquet(path: Path) -> list[str]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path, columns=["text"])
    except ImportError:
        raise ConfigError("--data .parquet needs pyarrow: pip install 'sqabench[parquet]' (or convert it to .jsonl)")
    except (KeyError, ValueError) as error:
        raise ConfigError(f"--data {path}: no readable 'text' column ({error})") from None
    except OSError as error:
        raise ConfigError(f"--data {path} is not a readable parquet file ({error})") from None
    return [t for t in frame["text"].tolist() if isinstance(t, str)]


def read_documents(path: Path) -> list[str]:
    """Every non-empty document of ``path``, in file order; a one-line ``ConfigError`` for anything unusable."""
    if not path.exists():
        raise ConfigError(f"--data {path} does not exist; give {FORMATS}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ConfigError(f"--data {path} is a folder with no .txt files; give {FORMATS}")
        docs = [_decode(p.read_bytes(), str(p)).strip() for p in files]
    elif path.suffix == ".jsonl" or path.suffixes[-2:] == [".jsonl", ".gz"]:
        docs = _jsonl(path)
    elif path.suffix == ".parquet":
        docs = _parquet(path)
    else:
        docs = _paragraphs(_decode(_bytes(path), str(path)))
    docs = [doc for doc in docs if doc.strip()]
    if not docs:
        raise ConfigError(f"--data {path} is empty: it holds no text")
    return docs


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def held_out_hashes(hashes: list[str], share: float) -> set[str]:
    """The hashes of the held-out documents: the ``share`` of documents (at least one) whose hashes sort first;
    copies of one text go together, so one never sits on both sides."""
    if len(hashes) < 2:
        raise ConfigError(f"--data has {len(hashes)} document: too few for a held-out split of whole documents "
                          "(a .txt file's documents are separated by blank lines)")  # fmt: skip
    want, held, taken, copies = max(1, round(share * len(hashes))), set(), 0, Counter(hashes)
    for h in sorted(copies):
        if taken >= want:
            break
        held.add(h)
        taken += copies[h]
    if taken == len(hashes):
        raise ConfigError(f"--data: every document went to the held-out split (--held-out {share}); lower it")
    return held


def split(documents: list[str], share: float) -> tuple[list[str], list[str]]:
    """(training, held-out) documents, each in file order (``held_out_hashes`` chooses)."""
    hashes = [document_hash(d) for d in documents]
    held = held_out_hashes(hashes, share)
    return [d for d, h in zip(documents, hashes) if h not in held], [d for d, h in zip(documents, hashes) if h in held]


def stream(token_lists: list[list[int]], eod: int) -> torch.Tensor:
    """The packed stream: each document's tokens then EOD."""
    flat = [t for tokens in token_lists for t in (*tokens, eod)]
    return torch.tensor(flat, dtype=torch.int64)


def windows(tokens: torch.Tensor, seq: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels), each (n, seq): consecutive windows of ``tokens`` overlapping by one, so that every token
    after the first is a label exactly once; the last window's missing places hold PAD in, IGNORE out."""
    n = max(1, -(-(len(tokens) - 1) // seq))
    inputs = torch.full((n, seq), pad, dtype=torch.int64)
    labels = torch.full((n, seq), IGNORE, dtype=torch.int64)
    for i in range(n):
        piece = tokens[i * seq : i * seq + seq + 1]
        inputs[i, : len(piece) - 1] = piece[:-1]
        labels[i, : len(piece) - 1] = piece[1:]
    return inputs, labels


@dataclass(frozen=True)
class Padded:
    """The paper's layout: one row per document, truncated to ``seq + 1`` tokens and padded with PAD."""

    inputs: torch.Tensor  # (docs, seq)
    labels: torch.Tensor  # (docs, seq): real targets; IGNORE where the target is a pad
    padded_labels: torch.Tensor  # (docs, seq): every target, pads included (what the paper scores)


def padded(token_lists: list[list[int]], seq: int, eod: int, pad: int) -> Padded:
    rows = torch.full((len(token_lists), seq + 1), pad, dtype=torch.int64)
    real = torch.zeros((len(token_lists), seq + 1), dtype=torch.bool)
    for i, tokens in enumerate(token_lists):
        doc = [*tokens, eod][: seq + 1]
        rows[i, : len(doc)] = torch.tensor(doc, dtype=torch.int64)
        real[i, : len(doc)] = True
    labels = rows[:, 1:].clone()
    labels[~real[:, 1:]] = IGNORE
    return Padded(rows[:, :-1].clone(), labels, rows[:, 1:].clone())
