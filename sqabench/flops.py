"""The analytic cost model and the floor: the only place that derives FLOPs, exponentials, bytes,
parameters, or the least time a step can take on given rates. No torch here.

Pure functions of (variant, preset, batch, seq_len, mask). Conventions:
- every matmul costs 2*m*n*k FLOPs; attention costs 4*B*Hq*d_head*P per layer, where P is the
  exact number of visible (query, key) pairs (QK^T and PV, paper section 3.2, eq. 9);
- norms, softmax, RoPE and activations are not counted;
- a train step (forward + backward) is 3x the forward matmuls and 3.5x the attention
  (the FlashAttention convention: backward = 2.5x forward, since it recomputes the scores);
- a decode step (one new token in each of B sequences) reads every weight once and the K/V of
  every key its query sees; its query sees min(N + t + 1, w + 1) keys at step t after a context of
  N, and the cost of a step is the mean over the T steps of a pass.

The floor: a step cannot run faster than its FLOPs at the best matmul rate, its exponentials at
the best exponential rate, or its minimum bytes at the best bandwidth (and, split across ranks,
the bytes it receives at the link's rate); ``floor`` takes the largest and names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sqabench.dtypes import get_dtype
from sqabench.presets import Preset
from sqabench.variants import VariantSpec

MODES = ("fwd", "train", "decode")
STEP_MODES = ("fwd", "train")  # whole-sequence steps; decode has its own cost, per generated token
SCOPES = ("model", "block", "attention")
TRAIN_MATMUL_FACTOR = 3.0
TRAIN_ATTENTION_FACTOR = 3.5


def visible_pairs(seq_len: int, window: int | None = None, causal: bool = False) -> int:
    """Exact number of (query i, key j) pairs the mask lets through, edges included.

    Encoder: j visible iff |i-j| <= window (all j without a window). Causal: iff 0 <= i-j <= window.
    """
    n = seq_len
    w = n - 1 if window is None else min(window, n - 1)
    if causal:
        # Row i sees min(i, w) + 1 keys.
        return n * (w + 1) - w * (w + 1) // 2
    # Row i sees 2w + 1 keys, less the ones cut off at either edge.
    return n * (2 * w + 1) - w * (w + 1)


def ffn_matmuls(preset: Preset, experts: int | None = None) -> list[tuple[int, int]]:
    """(n, k) of the feed-forward's matmuls: one SwiGLU (gate, up, down); with a mixture, the router and
    ``experts`` SwiGLUs (default ``top_k``: what one token goes through; ``n_experts``: every weight)."""
    d, f = preset.d_model, preset.d_ff
    swiglu = [(f, d), (f, d), (d, f)]
    if not preset.n_experts:
        return swiglu
    return [(preset.n_experts, d)] + swiglu * (preset.top_k if experts is None else experts)


def experts_touched(preset: Preset, tokens: int) -> int:
    """At least how many experts ``tokens`` tokens read: all of them once tokens x top_k slots can fill them."""
    return min(preset.n_experts, tokens * preset.top_k)


def encoder_params(spec: VariantSpec, preset: Preset) -> int:
    """Parameters of the whole model: embedding, blocks, final norm and the output head (one matrix
    with the embedding when tied); every expert of a mixture."""
    d, dh = preset.d_model, preset.head_dim
    attention = d * spec.n_q_heads * dh * 2 + d * spec.n_kv_heads * dh * 2  # W_Q, W_O; W_K, W_V
    ffn = sum(n * k for n, k in ffn_matmuls(preset, preset.n_experts))
    norms = 2 * d + (2 * dh if preset.qk_norm else 0)
    embeddings = (1 if preset.tie_embeddings else 2) * preset.vocab_size * d
    return preset.n_layers * (attention + ffn + norms) + d + embeddings


def kv_cache_bytes_per_token(spec: VariantSpec, preset: Preset, dtype: str = "bf16") -> int:
    """K and V of one token across every layer of the stack."""
    return 2 * spec.n_kv_heads * preset.head_dim * preset.n_layers * get_dtype(dtype).bytes


@dataclass(frozen=True)
class Cost:
    """Work of one step. ``matmul_flops`` excludes attention; ``exps`` counts softmax exponentials."""

    matmul_flops: int
    attention_flops: int
    exps: int
    min_bytes: int

    @property
    def flops(self) -> int:
        return self.matmul_flops + self.attention_flops


def step_cost(
    spec: VariantSpec,
    preset: Preset,
    batch: int,
    seq_len: int,
    causal: bool = False,
    mode: str = "fwd",
    dtype: str = "bf16",
    scope: str = "model",
) -> Cost:
    """FLOPs, exponentials and minimum bytes of one step of the model, one block, or the attention op.

    ``scope``: ``model`` (every layer, the output head), ``block`` (one layer) or ``attention``
    (the attention op alone on q, k, v: 4 * B * Hq * d_head * visible pairs, FlashAttention's and
    cuDNN's convention). ``min_bytes`` is a floor on memory traffic: every counted op reads its
    inputs and weights and writes its output exactly once (attention fused, reading q, k, v and
    writing o once; the embedding reads its tokens' rows); the backward of a train step is charged
    twice the forward's traffic.
    """
    if mode not in STEP_MODES:
        raise ValueError(f"mode={mode!r}; expected one of {STEP_MODES} (decode: decode_cost)")
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r}; expected one of {SCOPES}")
    d, dh = preset.d_model, preset.head_dim
    L = preset.n_layers if scope == "model" else 1
    tokens = batch * seq_len
    q_dim, kv_dim = spec.n_q_heads * dh, spec.n_kv_heads * dh
    # (m, n, k) of every matmul of one layer, with tokens as m.
    attention_matmuls = [(q_dim, d), (kv_dim, d), (kv_dim, d), (d, q_dim)]  # W_Q, W_K, W_V, W_O
    layer_matmuls = attention_matmuls + ffn_matmuls(preset)  # a mixture: the router and the active experts
    layer_weights = attention_matmuls + ffn_matmuls(preset, experts_touched(preset, tokens))
    if scope == "attention":
        layer_matmuls = layer_weights = []
    per_layer = sum(2 * tokens * n * k for n, k in layer_matmuls)
    head = 2 * tokens * d * preset.vocab_size if scope == "model" else 0
    matmul = L * per_layer + head

    pairs = visible_pairs(seq_len, spec.window, causal)
    attention = L * 4 * batch * spec.n_q_heads * dh * pairs
    exps = L * batch * spec.n_q_heads * pairs

    elem = get_dtype(dtype).bytes
    vocab = preset.vocab_size if scope == "model" else 0
    weights = sum(n * k for n, k in layer_weights) * L + d * vocab
    activations = L * sum(tokens * (n + k) for n, k in layer_matmuls) + (tokens * (2 * d + vocab) if vocab else 0)
    attention_io = L * tokens * (2 * q_dim + 2 * kv_dim)  # read q, k, v; write o
    min_bytes = elem * (weights + activations + attention_io)

    if mode == "train":
        matmul = int(matmul * TRAIN_MATMUL_FACTOR)
        attention = int(attention * TRAIN_ATTENTION_FACTOR)
        exps *= 2  # the backward recomputes the probabilities
        min_bytes *= 3
    return Cost(matmul_flops=matmul, attention_flops=attention, exps=exps, min_bytes=min_bytes)


def keys_seen(context: int, new_tokens: int, window: int | None) -> Fraction:
    """The mean number of keys a decode step's query attends to over T steps after a context of N.

    Step t (0-based) sees positions 0..N+t, itself included, or the last w + 1 of them.
    """
    cap = None if window is None else window + 1
    total = sum(context + t + 1 if cap is None else min(context + t + 1, cap) for t in range(new_tokens))
    return Fraction(total, new_tokens)


def decode_cost(
    spec: VariantSpec, preset: Preset, batch: int, context: int, new_tokens: int, dtype: str = "bf16"
) -> Cost:
    """FLOPs, exponentials and minimum bytes of one decode step: one new token in each of ``batch`` sequences.

    ``min_bytes``: every weight read once (the embedding: only the batch's rows), the K/V of every
    key seen read once, the new token's K/V written once into the cache, the attention's q read and
    o written once (as in ``step_cost``), activations of the batch's tokens.
    """
    d, dh, L = preset.d_model, preset.head_dim, preset.n_layers
    q_dim, kv_dim = spec.n_q_heads * dh, spec.n_kv_heads * dh
    attention_matmuls = [(q_dim, d), (kv_dim, d), (kv_dim, d), (d, q_dim)]
    layer_matmuls = attention_matmuls + ffn_matmuls(preset)
    active = L * sum(n * k for n, k in layer_matmuls) + d * preset.vocab_size
    touched = ffn_matmuls(preset, experts_touched(preset, batch))
    weights = L * sum(n * k for n, k in attention_matmuls + touched) + d * preset.vocab_size
    matmul = 2 * batch * active
    seen = keys_seen(context, new_tokens, spec.window)
    attention = L * 4 * batch * spec.n_q_heads * dh * seen
    exps = L * batch * spec.n_q_heads * seen
    elem = get_dtype(dtype).bytes
    kv_read = 2 * L * batch * spec.n_kv_heads * dh * seen
    kv_write = 2 * L * batch * kv_dim
    attention_io = 2 * L * batch * q_dim  # read q, write o
    activations = batch * (L * sum(n + k for n, k in layer_matmuls) + d + preset.vocab_size)
    min_bytes = elem * (weights + batch * d + kv_read + kv_write + attention_io + activations)
    return Cost(matmul_flops=matmul, attention_flops=round(attention), exps=round(exps), min_bytes=round(min_bytes))


def cache_slots(context: int, new_tokens: int, window: int | None) -> int:
    """Slots each layer's KV cache holds: every position, or the w + 1 a windowed query sees."""
    total = context + new_tokens
    return total if window is None else min(total, window + 1)


def kv_cache_bytes(spec: VariantSpec, preset: Preset, batch: int, slots: int, dtype: str = "bf16") -> int:
    """The cache of ``batch`` sequences holding ``slots`` tokens each, across the layer stack."""
    return kv_cache_bytes_per_token(spec, preset, dtype) * batch * slots


def _sum_min(m: int, w: int) -> int:
    """sum of min(i, w) for i in 0..m-1."""
    if m <= 0:
        return 0
    if m <= w + 1:
        return m * (m - 1) // 2
    return w * (w + 1) // 2 + (m - w - 1) * w


def visible_pairs_rows(seq_len: int, start: int, stop: int, window: int | None = None, causal: bool = False) -> int:
    """Visible (query, key) pairs of the query rows start..stop-1 alone (one rank's share of the sequence)."""
    n = seq_len
    w = n - 1 if window is None else min(window, n - 1)
    behind = _sum_min(stop, w) - _sum_min(start, w)  # keys at or before each row, itself excluded
    if causal:
        return behind + (stop - start)
    ahead = _sum_min(n - start, w) - _sum_min(n - stop, w)
    return behind + ahead + (stop - start)


def split_cost(
    spec: VariantSpec, preset: Preset, batch: int, seq_len: int, causal: bool, dtype: str, world: int
) -> tuple[Cost, int]:
    """Forward work of the busiest rank when the sequence is split in ``world`` contiguous shares, and the
    bytes each rank receives per step in the all-gathers of K and V (every layer: the other shares)."""
    share = seq_len // world
    local = step_cost(spec, preset, batch, share, False, "fwd", dtype)  # matmuls and traffic of the share
    d_head, layers = preset.head_dim, preset.n_layers
    pairs = max(visible_pairs_rows(seq_len, r * share, (r + 1) * share, spec.window, causal) for r in range(world))
    attention = layers * 4 * batch * spec.n_q_heads * d_head * pairs
    exps = layers * batch * spec.n_q_heads * pairs
    elem = get_dtype(dtype).bytes
    gathered = layers * 2 * batch * spec.n_kv_heads * d_head * (seq_len - share) * elem  # K and V of the others
    cost = Cost(local.matmul_flops, attention, exps, local.min_bytes + gathered)
    return cost, gathered


# --- the floor ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """Per second: FLOPs of dense matmul, exponentials, bytes moved. None: unknown."""

    matmul_flops: float | None = None
    exp_per_s: float | None = None
    bytes_per_s: float | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.matmul_flops, self.exp_per_s, self.bytes_per_s)


@dataclass(frozen=True)
class Floor:
    """The least time a step can take, the limit that sets it, and each limit's time."""

    floor_ms: float
    bound: str  # matmul, exp, memory or comm
    terms_ms: dict[str, float]


def amdahl(base_ms: float, base_attention_ms: float, attention_ms: float) -> float:
    """The whole-step speed-up that the attention alone explains (Amdahl): the baseline's step with its
    attention time replaced by the variant's."""
    rest = base_ms - base_attention_ms
    return base_ms / (rest + attention_ms) if rest + attention_ms > 0 else float("inf")


def memory_ms(min_bytes: float, bytes_per_s: float) -> float:
    """Milliseconds to move ``min_bytes`` at ``bytes_per_s``: the memory term of the floor (and a decode
    step's memory-bound prediction)."""
    return min_bytes / bytes_per_s * 1e3


def floor(
    flops: int, exps: int, min_bytes: int, rates: Rates, comm_bytes: int = 0, link: float | None = None
) -> Floor | None:
    """max(flops / matmul rate, exps / exp rate, min_bytes / bandwidth[, comm_bytes / link rate]); None
    without all three rates. The fourth term, ``comm``, is a context-parallel rank's all-gathers."""
    if not rates.complete:
        return None
    terms = {
        "matmul": flops / rates.matmul_flops * 1e3,
        "exp": exps / rates.exp_per_s * 1e3,
        "memory": memory_ms(min_bytes, rates.bytes_per_s),
    }
    if comm_bytes and link:
        terms["comm"] = memory_ms(comm_bytes, link)
    bound = max(terms, key=terms.__getitem__)
    return Floor(terms[bound], bound, terms)
