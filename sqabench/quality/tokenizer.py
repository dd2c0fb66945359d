"""Tokenizers for ``sqabench quality --task text``: ``bytes`` (no dependency) or ``bpe`` (byte-level BPE trained
with Hugging Face's ``tokenizers``, the optional extra ``sqabench[bpe]``).

Both end every document with an end-of-document token (EOD), and have a padding token (PAD) and a
beginning-of-sequence token (BOS) that only ``--pad-like-paper`` uses (the paper's rows: BOS, the text, EOS).
Each token also knows how many bytes of text it stands for (``byte_lengths``: a byte 1, a BPE token its
bytes, EOD 1 as the separator it replaces, PAD and BOS 0), so that bits per byte count the same text
whichever tokenizer read it.

A BPE is trained on the training documents only, to the asked vocabulary, and cached on disk under
sqabench's cache folder (``sqabench.files.cache_dir``: ``$SQABENCH_CACHE_DIR``, else ``~/.cache/sqabench``), by
the hash of those documents and the vocabulary.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from sqabench.errors import ConfigError
from sqabench.files import cache_dir, replacing
from sqabench.quality.options import DEFAULT_BPE_VOCAB, TOKENIZERS

SPECIALS = ("<eod>", "<pad>", "<bos>")  # ids 256, 257, 258 for bytes; 0, 1, 2 for a BPE (trained with them first)
BYTE_VOCAB = 256 + len(SPECIALS)
MIN_BPE_VOCAB = 256 + len(SPECIALS)  # byte-level BPE starts from every byte

LOG = logging.getLogger("sqabench")


@dataclass(frozen=True, eq=False)
class Tokenizer:
    name: str  # "bytes" or "bpe"
    vocab: int
    eod: int
    pad: int
    byte_lengths: tuple[int, ...]  # per token id
    bos: int | None = None  # None: a .tokens file of an older sqabench (no BOS)
    _bpe: object = field(default=None, repr=False, kw_only=True)

    def encode(self, documents: list[str]) -> list[list[int]]:
        """Each document's token ids, without its EOD."""
        if self._bpe is None:
            return [list(doc.encode("utf-8")) for doc in documents]
        return [e.ids for e in self._bpe.encode_batch(documents)]


def byte_tokenizer() -> Tokenizer:
    return Tokenizer("bytes", BYTE_VOCAB, 256, 257, (1,) * 256 + (1, 0, 0), bos=258)


def corpus_hash(documents: list[str]) -> str:
    digest = hashlib.sha256()
    for doc in documents:
        data = doc.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()[:16]


def _bpe_library():
    try:
        import tokenizers
    except ImportError:
        raise ConfigError("--tokenizer bpe needs Hugging Face's tokenizers: pip install 'sqabench[bpe]' (or use "
                          "--tokenizer bytes, which needs nothing)") from None  # fmt: skip
    return tokenizers


def bpe_tokenizer(documents: list[str], vocab: int) -> Tokenizer:
    """A byte-level BPE of ``vocab`` tokens trained on ``documents`` (cached by their hash and ``vocab``)."""
    check_tokenizer("bpe", vocab)
    lib = _bpe_library()
    path = cache_dir() / "tokenizers" / f"bpe2-{corpus_hash(documents)}-{vocab}.json"  # 2: with <bos>
    if path.is_file():
        tok = lib.Tokenizer.from_file(str(path))
    else:
        LOG.info(f"training a BPE of {vocab} tokens on the training documents (cached in {path.parent}) ...")
        tok = lib.Tokenizer(lib.models.BPE())
        tok.pre_tokenizer = lib.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = lib.decoders.ByteLevel()
        trainer = lib.trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(SPECIALS), show_progress=False,
                                          initial_alphabet=lib.pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
        tok.train_from_iterator(documents, trainer=trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as scratch:
            tok.save(str(scratch))
    eod, pad, bos = (tok.token_to_id(s) for s in SPECIALS)
    size = tok.get_vocab_size()
    # Byte-level BPE spells every byte as one character of its alphabet: a token's length is its bytes.
    lengths = [len(tok.id_to_token(i) or "") for i in range(size)]
    lengths[eod], lengths[pad], lengths[bos] = 1, 0, 0
    return Tokenizer("bpe", size, eod, pad, tuple(lengths), bos, _bpe=tok)


def check_tokenizer(name: str, vocab: int | None) -> None:
    """Refuse, before any text is read, a tokenizer or vocabulary that cannot be: one line, naming the choices."""
    if name not in TOKENIZERS:
        raise ConfigError(f"unknown tokenizer {name!r}; choose one of: {', '.join(TOKENIZERS)}")
    if name == "bytes" and vocab not in (None, BYTE_VOCAB):
        raise ConfigError(f"--vocab {vocab}: the bytes tokenizer has {BYTE_VOCAB} tokens (256 bytes, EOD, PAD, BOS); "
                          "leave --vocab out or use --tokenizer bpe")  # fmt: skip
    if name == "bpe":
        if vocab is not None and vocab < MIN_BPE_VOCAB:
            raise ConfigError(f"--vocab {vocab} is smaller than a byte-level BPE's bytes and specials "
                              f"({MIN_BPE_VOCAB}); choose --vocab >= {MIN_BPE_VOCAB}")  # fmt: skip
        _bpe_library()


def get_tokenizer(name: str, documents: list[str], vocab: int | None) -> Tokenizer:
    check_tokenizer(name, vocab)
    if name == "bytes":
        return byte_tokenizer()
    return bpe_tokenizer(documents, vocab if vocab is not None else DEFAULT_BPE_VOCAB)
