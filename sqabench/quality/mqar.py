"""Multi-query associative recall (MQAR), as Zoology defines it (Arora, Eyuboglu et al. 2023, "Zoology:
Measuring and improving recall in efficient language models"; HazyResearch/zoology,
``zoology/data/multiquery_ar.py``): a task that needs no data, and that separates attention that can
look back far enough from attention that cannot.

An example of length N holds its ``pairs`` key-value pairs first, ``k1 v1 k2 v2 ...``: keys drawn
without replacement from the lower half of the vocabulary (1 .. V/2 - 1), values from the upper half
(V/2 .. V-1), each unique in its example. Every key is then queried once in the rest of the sequence,
at an even offset 2g after the pairs, the gaps g drawn without replacement with weights
p(g) ~ a (g+1)^(a-1) (a = 0.01: a nearly flat law, a little heavier near the pairs). At a query the
model is to predict the key's value; only those positions are scored (label -100 elsewhere). Every
other position holds a random token of the whole vocabulary.

Sampling without replacement by weight is done with the Gumbel top-k trick (the k largest of
log w + Gumbel noise), the same law as ``numpy.random.choice(replace=False, p=...)`` draws, all
examples at once. A seed gives the same examples on every machine and for every variant. No model
code here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sqabench.errors import ConfigError

IGNORE = -100  # the label of a position that is not scored
POWER_A = 0.01  # Zoology's default


@dataclass(frozen=True)
class MQARSize:
    vocab: int = 8192
    seq_len: int = 64
    pairs: int = 8
    power_a: float = POWER_A

    def __post_init__(self) -> None:
        if self.seq_len < 4 or self.seq_len % 2:
            raise ConfigError(f"--seq {self.seq_len} must be even and >= 4 for MQAR (pairs, then queries at even "
                              "offsets)")  # fmt: skip
        if self.pairs < 1:
            raise ConfigError(f"--pairs {self.pairs} must be >= 1")
        if 4 * self.pairs > self.seq_len:
            raise ConfigError(f"--pairs {self.pairs} needs --seq of at least {4 * self.pairs} (its pairs, then a "
                              f"query at an even offset for each); --seq is {self.seq_len}")  # fmt: skip
        if self.vocab <= self.seq_len or self.vocab // 2 - 1 < self.pairs:
            raise ConfigError(f"--vocab {self.vocab} must exceed --seq {self.seq_len} and hold {self.pairs} distinct "
                              "keys in its lower half")  # fmt: skip
        if not 0 < self.power_a <= 1:
            raise ConfigError(f"power_a {self.power_a} must be in (0, 1]")

    @property
    def context(self) -> int:
        return 2 * self.pairs

    @property
    def space(self) -> int:
        """How many gaps a query can take: (N - 2 pairs) // 2."""
        return (self.seq_len - self.context) // 2


def gap_weights(space: int, power_a: float) -> np.ndarray:
    """p(g) for g = 0 .. space-1: a (g+1)^(a-1), normalised (Zoology's power law)."""
    p = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
    return p / p.sum()


def _without_replacement(rng: np.random.Generator, rows: int, weights: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) indices into ``weights``, each row k distinct draws by weight (Gumbel top-k)."""
    keys = np.log(weights)[None, :] + rng.gumbel(size=(rows, len(weights)))
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def mqar(size: MQARSize, examples: int, seed: int | tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``examples`` MQAR examples as (inputs, labels), each (examples, seq_len) int64, drawn from ``seed`` (an
    int, or a tuple of them: numpy's SeedSequence keeps every tuple's stream apart).

    ``labels[i, t]`` is what the model is to predict at position t having read ``inputs[i, : t + 1]`` (already
    shifted: a query's own position holds its value); -100 where nothing is scored.
    """
    rng = np.random.default_rng(seed)
    half, pairs, context = size.vocab // 2, size.pairs, size.context
    flat = np.ones(half - 1)
    keys = 1 + _without_replacement(rng, examples, flat, pairs)  # 1 .. V/2 - 1
    values = half + _without_replacement(rng, examples, np.ones(size.vocab - half), pairs)  # V/2 .. V-1
    gaps = _without_replacement(rng, examples, gap_weights(size.space, size.power_a), pairs)
    inputs = rng.integers(0, size.vocab, size=(examples, size.seq_len), dtype=np.int64)  # the non-query tokens
    inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
    labels = np.full((examples, size.seq_len), IGNORE, dtype=np.int64)
    rows = np.arange(examples)[:, None]
    at = context + 2 * gaps  # where each key is queried
    inputs[rows, at] = keys
    labels[rows, at] = values
    return torch.from_numpy(inputs), torch.from_numpy(labels)
