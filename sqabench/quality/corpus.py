"""A text corpus for ``sqabench quality --task text``: its documents, the held-out split, and the packing.

``--data`` is a UTF-8 text file (its documents separated by blank lines), a folder of ``.txt`` files (each
a document), or ``.jsonl`` / ``.parquet`` with a ``text`` column (each row a document); ``.txt.gz`` and
``.jsonl.gz`` are read as their contents. The held-out split
is whole documents, chosen by the hash of their text (the same on every machine, in any file order, and
two copies of one text always on the same side): the ``share`` of documents whose hashes sort first.

Packing (the honest pipeline): every document's tokens then EOD, one stream, no padding; a training
sequence is any window of ``seq + 1`` tokens of the training stream. An evaluation scores the whole held-out
set when its budget holds it, else the same share of every held-out document, the middle of its text, each
after as much of the document as a window holds (``evaluation_windows``); every scored token is predicted
exactly once. ``--pad-like-paper`` lays each document out the paper's way instead (``padded``: RxNN's tokenizer
template ``[BOS] $A [EOS]`` and its ``AutoregressiveLMDataset``): a row of ``--seq`` tokens, BOS, the text
truncated to fit, EOS, then PAD, and the pads scored.
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

FORMATS = (
    ".txt (documents split at blank lines), a folder of .txt files, .jsonl or .parquet with a 'text' column "
    "(.txt and .jsonl may be gzipped), or a .tokens file of sqabench tokenize"
)
TEXT_SUFFIXES = ("", ".txt", ".text", ".md")  # read as plain text (no suffix: a file named like `corpus`)


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
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("--data .parquet needs pyarrow: pip install 'sqabench[parquet]' (or convert it to .jsonl)")
    try:
        schema = pq.read_schema(path)
    except Exception as error:  # pyarrow raises its own kinds on a file that is not parquet
        raise ConfigError(f"--data {path} is not a readable parquet file ({type(error).__name__})") from None
    if "text" not in schema.names:
        raise ConfigError(f"--data {path} has no 'text' column (its columns: {', '.join(schema.names[:8])})")
    kind = schema.field("text").type
    if not (_is_text(kind)):
        raise ConfigError(f"--data {path}: its 'text' column holds {kind}, not text")
    try:
        frame = pd.read_parquet(path, columns=["text"])
    except Exception as error:
        raise ConfigError(f"--data {path}: its 'text' column cannot be read ({type(error).__name__})") from None
    return [t for t in frame["text"].tolist() if isinstance(t, str)]


def _is_text(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or str(kind) == "string_view"


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
    elif path.suffix in TEXT_SUFFIXES or path.suffixes[-2:] in ([".txt", ".gz"], [".text", ".gz"]):
        docs = _paragraphs(_decode(_bytes(path), str(path)))
    else:
        raise ConfigError(f"--data {path}: unsupported format {''.join(path.suffixes[-2:])!r}; give {FORMATS}")
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
    if len(set(hashes)) == 1:
        raise ConfigError(f"--data: its {len(hashes)} documents are all identical, and copies of one text stay on "
                          "one side of the split: no held-out set can be made of them")  # fmt: skip
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


def evaluation_windows(token_lists: list[list[int]], seq: int, eod: int, pad: int, byte_lengths: tuple[int, ...],
                       budget: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:  # fmt: skip
    """What every evaluation scores, the same each time: the whole held-out set when ``budget`` (bytes of text)
    holds it, else the same share of every held-out document, so that every document is represented in
    proportion to its length and two tokenizers of one corpus score the same text (to within a token at each
    end of a piece). (inputs, labels, how many documents have a scored token.)

    Whole: the packed stream (each document after an EOD, its closing EOD scored too), cut into windows that
    overlap by one token, so every token is predicted once from all that precedes it in its window.
    A share: each document's piece is the middle of its text, that share of its bytes (the tokens that lie
    wholly inside), read after as much of the document before it as a window holds, which is context, never
    scored; a piece longer than a window takes several, each after the one before."""
    sizes = [sum(byte_lengths[t] for t in doc) for doc in token_lists]
    total = sum(sizes) + len(token_lists)  # each EOD stands for one byte
    if budget is None or budget >= total:
        whole = torch.cat([torch.tensor([eod], dtype=torch.int64), stream(token_lists, eod)])  # EOD, doc, EOD, ...
        inputs, labels = windows(whole, seq, pad)
        return inputs, labels, len(token_lists)
    share = budget / total
    rows_in, rows_out, documents = [], [], 0
    for doc, size in zip(token_lists, sizes):
        start = (size - share * size) / 2  # the middle share of the document's bytes: [start, end)
        end = start + share * size
        at, first, last = 0, None, None
        for i, token in enumerate(doc):
            if at >= start and at + byte_lengths[token] <= end:
                first = i if first is None else first
                last = i
            at += byte_lengths[token]
        if first is None:
            continue  # a document too short for one whole token of its share
        documents += 1
        text = [eod, *doc]  # document token i sits at position i + 1, predicted from everything before it
        for chunk in range(first, last + 1, seq):
            targets = range(chunk + 1, min(last, chunk + seq - 1) + 2)  # positions scored in this window
            begin = max(0, targets[-1] - seq)
            window = text[begin : begin + seq + 1]
            row_in = torch.full((seq,), pad, dtype=torch.int64)
            row_out = torch.full((seq,), IGNORE, dtype=torch.int64)
            row_in[: len(window) - 1] = torch.tensor(window[:-1], dtype=torch.int64)
            for position in targets:
                row_out[position - begin - 1] = text[position]
            rows_in.append(row_in)
            rows_out.append(row_out)
    if not rows_in:
        return torch.full((1, seq), pad, dtype=torch.int64), torch.full((1, seq), IGNORE, dtype=torch.int64), 0
    return torch.stack(rows_in), torch.stack(rows_out), documents


@dataclass(frozen=True)
class Padded:
    """The paper's layout: one row of ``seq`` tokens per document (BOS, the text truncated to fit, EOS, PAD)."""

    inputs: torch.Tensor  # (docs, seq): the whole row, as RxNN feeds it
    labels: torch.Tensor  # (docs, seq): the next token where it is real (the text, EOS); IGNORE at pads and the end
    padded_labels: torch.Tensor  # (docs, seq): every next token, pads included (what the paper scores)


def padded(token_lists: list[list[int]], seq: int, bos: int, eos: int, pad: int) -> Padded:
    """RxNN's rows: its tokenizer's template ``[BOS] $A [EOS]`` with ``max_length=seq``, ``truncation=True``
    (the text cut to ``seq - 2`` tokens, BOS and EOS kept) and ``padding='max_length'``; its trainer scores
    ``logits[:, :-1]`` against ``targets[:, 1:]``, the targets the input ids themselves, pads included. So the
    first token is predicted from BOS and a forced EOS is scored in every truncated row."""
    rows = torch.full((len(token_lists), seq), pad, dtype=torch.int64)
    real = torch.zeros((len(token_lists), seq), dtype=torch.bool)
    for i, tokens in enumerate(token_lists):
        doc = [bos, *tokens[: seq - 2], eos]
        rows[i, : len(doc)] = torch.tensor(doc, dtype=torch.int64)
        real[i, : len(doc)] = True
    every = torch.full_like(rows, IGNORE)
    every[:, :-1] = rows[:, 1:]  # position t predicts token t + 1; the last position predicts nothing
    labels = every.clone()
    labels[:, :-1][~real[:, 1:]] = IGNORE
    return Padded(rows, labels, every)


def evaluation_rows(rows: Padded, budget: int | None) -> tuple[Padded, int]:
    """``--pad-like-paper``'s evaluation: rows spread evenly over the held-out documents until their real
    labels (never the pads) reach ``budget``; every row when they hold fewer. (the rows, how many)."""
    real = (rows.labels != IGNORE).sum(1)
    total = int(real.sum())
    if budget is None or budget >= total:
        return rows, len(real)
    keep = min(len(real), max(1, -(-len(real) * budget // total)))
    picked = torch.tensor([i * len(real) // keep for i in range(keep)])
    return Padded(rows.inputs[picked], rows.labels[picked], rows.padded_labels[picked]), keep
