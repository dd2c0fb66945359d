import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import TINY
from sqabench.attention import KVCache, rope_tables
from sqabench.decode import Decoder
from sqabench.encoder import build_block, build_encoder
from sqabench.flops import Rates, decode_cost, floor, split_cost, step_cost, visible_pairs
from sqabench.kernels import Kernel, dense_mask
from sqabench.variants import FAMILY, VariantSpec, get_variant


def brute_force_pairs(n: int, window, causal: bool) -> int:
    count = 0
    for i in range(n):
        for j in range(n):
            d = i - j
            ok = (0 <= d) if causal else True
            if window is not None:
                ok = ok and (d <= window if causal else abs(d) <= window)
            count += ok
    return count


@pytest.mark.parametrize("n", [1, 2, 7, 64, 200])
@pytest.mark.parametrize("window", [None, 1, 5, 48, 300])
@pytest.mark.parametrize("causal", [False, True])
def test_visible_pairs_equal_brute_force(n, window, causal):
    assert visible_pairs(n, window, causal) == brute_force_pairs(n, window, causal)


@pytest.mark.parametrize("window", [None, 5, 48])
@pytest.mark.parametrize("causal", [False, True])
def test_visible_pairs_equal_the_kernels_mask(window, causal):
    mask = dense_mask(200, window, causal, torch.device("cpu"))
    expected = 200 * 200 if mask is None else int(mask.sum())
    assert visible_pairs(200, window, causal) == expected


@pytest.mark.parametrize("name", [n for n in FAMILY if get_variant(n).window is None] + ["6/2"])
def test_forward_flops_equal_flop_counter(name):
    spec = get_variant(name) if "/" not in name else VariantSpec(name, 16, 6, 2)
    model = build_encoder(spec, TINY, kernel="sdpa-math")
    tokens = torch.randint(0, TINY.vocab_size, (3, 40))
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), counter:
        model(tokens)
    assert step_cost(spec, TINY, batch=3, seq_len=40).flops == counter.get_total_flops()


def test_flop_counter_check_can_fail():
    """The check above is not vacuous: the counter on a model with other heads disagrees with the cost model."""
    model = build_encoder(get_variant("mha"), TINY, kernel="sdpa-math")  # 16 query heads
    tokens = torch.randint(0, TINY.vocab_size, (3, 40))
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), counter:
        model(tokens)
    assert step_cost(get_variant("sqa"), TINY, batch=3, seq_len=40).flops != counter.get_total_flops()
    assert step_cost(get_variant("mha"), TINY, batch=3, seq_len=40).flops == counter.get_total_flops()


def test_attention_flops_scale_with_query_heads():
    mha = step_cost(get_variant("mha"), TINY, 1, 1000)
    for name in ("sqa", "xsqa", "lsqa", "gqa", "mqa"):
        spec = get_variant(name)
        cost = step_cost(spec, TINY, 1, 1000)
        assert cost.attention_flops * spec.theoretical_speedup == mha.attention_flops
        assert cost.exps * spec.theoretical_speedup == mha.exps


def test_attention_term_is_exact():
    spec = VariantSpec("sqa@48", 16, 8, 4, window=48)
    cost = step_cost(spec, TINY, batch=2, seq_len=200, causal=True)
    pairs = brute_force_pairs(200, 48, True)
    assert cost.attention_flops == TINY.n_layers * 4 * 2 * 8 * 16 * pairs
    assert cost.exps == TINY.n_layers * 2 * 8 * pairs


def test_train_step_flops_against_the_flop_counter():
    """Forward and backward of a loss, counted: the matmuls' 3x (forward, and two products in the backward)
    is what FlopCounterMode counts; the attention's 3.5x is the math backend's count (3x: two products
    forward, four backward) plus the FlashAttention backward's recomputation of QK^T (0.5x)."""
    import torch.nn.functional as F

    spec = get_variant("gqa")
    model = build_encoder(spec, TINY, kernel="sdpa-math")
    tokens, targets = torch.randint(0, TINY.vocab_size, (2, 40)), torch.randint(0, TINY.vocab_size, (80,))
    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        F.cross_entropy(model(tokens).flatten(0, 1), targets).backward()
    counted = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    train = step_cost(spec, TINY, 2, 40, mode="train", dtype="fp32")
    assert train.matmul_flops == counted["aten.mm"]  # projections, SwiGLU, head: forward and backward
    qk_recompute = TINY.n_layers * 2 * 2 * spec.n_q_heads * 40 * 40 * TINY.head_dim  # 2mnk of QK^T per layer
    assert train.attention_flops == counted["aten.bmm"] + qk_recompute
    assert train.exps == 2 * step_cost(spec, TINY, 2, 40).exps  # the backward recomputes the probabilities


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode='bwd'"):
        step_cost(get_variant("mha"), TINY, 1, 10, mode="bwd")


def test_the_floor_when_communication_binds():
    """A context-parallel rank's all-gathers: comm bytes at the link's rate, in milliseconds, by hand."""
    rates = Rates(matmul_flops=1e12, exp_per_s=1e9, bytes_per_s=1e11)
    f = floor(flops=1e12, exps=1e9, min_bytes=1e11, rates=rates, comm_bytes=3e9, link=1e9)  # 1 s each; comm 3 s
    assert (f.bound, f.floor_ms) == ("comm", pytest.approx(3000.0))
    assert f.terms_ms == pytest.approx({"matmul": 1000.0, "exp": 1000.0, "memory": 1000.0, "comm": 3000.0})
    assert floor(1e12, 1e9, 1e11, rates, comm_bytes=0.5e9, link=1e9).bound in ("matmul", "exp", "memory")
    assert "comm" not in floor(1e12, 1e9, 1e11, rates).terms_ms  # one process: no fourth limit


def test_a_decode_step_with_a_window_reads_the_window_only():
    """The keys a windowed decode step reads are capped at w + 1: counted key by key, against the same
    heads without a window."""
    p, window, context, new = TINY, 48, 200, 8
    windowed, full = VariantSpec("w", 16, 8, 4, window), VariantSpec("f", 16, 8, 4)
    keys = {w: sum(sum(1 for j in range(context + t + 1) if w is None or context + t - j <= w) for t in range(new))
            for w in (None, window)}  # fmt: skip
    assert keys[window] == new * (window + 1)
    a, b = decode_cost(windowed, p, 3, context, new, "fp32"), decode_cost(full, p, 3, context, new, "fp32")
    per_key = 2 * p.n_layers * 3 * 4 * p.head_dim * 4  # K and V, every layer, 3 sequences, 4 heads, fp32 bytes
    assert (b.min_bytes - a.min_bytes) * new == per_key * (keys[None] - keys[window])
    assert (b.attention_flops - a.attention_flops) * new == 4 * p.n_layers * 3 * 8 * p.head_dim * (
        keys[None] - keys[window]
    )


def test_a_ranks_matmuls_are_its_share_of_the_sequence():
    """Split across 4 ranks, the busiest rank multiplies its own quarter of the tokens, not the whole
    sequence's: per layer 2 x tokens x (W_Q, W_K, W_V, W_O and the SwiGLU's weights), then the head."""
    spec, p, batch, n, world = get_variant("sqa"), TINY, 2, 1024, 4
    rank, _ = split_cost(spec, p, batch, n, True, "bf16", world)
    tokens = batch * n // world
    q, kv = spec.n_q_heads * p.head_dim, spec.n_kv_heads * p.head_dim
    weights = p.d_model * q + 2 * p.d_model * kv + q * p.d_model + 3 * p.d_model * p.d_ff
    assert rank.matmul_flops == p.n_layers * 2 * tokens * weights + 2 * tokens * p.d_model * p.vocab_size


class Traffic:
    """The bytes a real step hands its matmuls and attention calls, read off the tensors by hooks: each
    nn.Linear reads its input and weight and writes its output; each attention call reads q and the K/V
    it may see and writes o; an embedding reads its rows; a decode step writes the new K/V into the cache."""

    def __init__(self, *modules: torch.nn.Module) -> None:
        self.bytes = 0
        self.handles = []
        for module in modules:
            for m in module.modules():
                hook = {torch.nn.Linear: self.linear, torch.nn.Embedding: self.rows}.get(type(m))
                if hook is None and isinstance(m, Kernel):
                    hook = self.attention
                if hook is not None:
                    self.handles.append(m.register_forward_hook(hook))

    def linear(self, module, inputs, output):
        self.bytes += inputs[0].nbytes + module.weight.nbytes + output.nbytes

    def rows(self, module, inputs, output):
        self.bytes += output.nbytes

    def attention(self, module, inputs, output):
        q, k, v = inputs[:3]
        if len(inputs) > 3 and inputs[3] is not None:  # a cache: only its valid slots are read
            seen = int(inputs[3].sum())
            self.bytes += (k.nbytes + v.nbytes) // k.shape[2] * seen
        else:
            self.bytes += k.nbytes + v.nbytes
        self.bytes += q.nbytes + output.nbytes

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("name, causal", [("sqa", False), ("gqa", True), ("swa", False)])
def test_min_bytes_equal_the_bytes_a_real_forward_moves(name, causal):
    spec = get_variant(name, window=48)
    model = build_encoder(spec, TINY, "eager", causal=causal)
    traffic = Traffic(model)
    with torch.inference_mode():
        model(torch.randint(0, TINY.vocab_size, (3, 40)))
    traffic.close()
    for dtype, scale in (("fp32", 1), ("bf16", 2)):  # the model ran in fp32
        assert step_cost(spec, TINY, 3, 40, causal, dtype=dtype).min_bytes * scale == traffic.bytes


def test_min_bytes_of_a_block_and_of_the_attention_alone():
    spec = get_variant("xsqa")
    block = build_block(spec, TINY, "eager")
    traffic = Traffic(block)
    x = torch.randn(2, 40, TINY.d_model)
    rope = rope_tables(40, TINY.head_dim, TINY.rope_base, "cpu", torch.float32)
    with torch.inference_mode():
        block(x, rope)
    traffic.close()
    assert step_cost(spec, TINY, 2, 40, dtype="fp32", scope="block").min_bytes == traffic.bytes
    q, k = torch.randn(2, 4, 40, TINY.head_dim), torch.randn(2, 4, 40, TINY.head_dim)
    assert step_cost(spec, TINY, 2, 40, dtype="fp32", scope="attention").min_bytes == 2 * q.nbytes + 2 * k.nbytes


@pytest.mark.parametrize("name", ["sqa", "swa"])
def test_decode_min_bytes_equal_the_bytes_a_real_step_moves(name, monkeypatch):
    spec = get_variant(name, window=48)
    model = build_encoder(spec, TINY, "eager", causal=True)
    context = 70 if spec.window else 39  # the windowed cache is full and wraps
    decoder = Decoder(model, 2, context, 1, "eager")
    tokens = torch.randint(0, TINY.vocab_size, (2, context + 1))
    with torch.inference_mode():
        decoder.prefill(tokens[:, :context])
        traffic = Traffic(model, decoder.kernel)
        append = KVCache.append

        def counted(cache, k, v):
            traffic.bytes += k.nbytes + v.nbytes  # the new key and value written into the cache
            return append(cache, k, v)

        monkeypatch.setattr(KVCache, "append", counted)
        decoder.step(tokens[:, context:])
    traffic.close()
    assert decode_cost(spec, TINY, 2, context, 1, "fp32").min_bytes == traffic.bytes


def test_amdahl_on_a_hand_computed_step():
    """A 100 ms step with 40 ms of attention; a variant whose attention takes 10 ms: the rest (60 ms) stays, so
    100 / (60 + 10) = 1.43x. The same attention explains no speed-up; no attention at all, 100 / 60."""
    from sqabench.flops import amdahl

    assert amdahl(100.0, 40.0, 10.0) == pytest.approx(100 / 70) and f"{amdahl(100.0, 40.0, 10.0):.2f}" == "1.43"
    assert amdahl(100.0, 40.0, 40.0) == pytest.approx(1.0)
    assert amdahl(100.0, 40.0, 0.0) == pytest.approx(100 / 60)


def test_a_train_step_is_charged_three_times_the_forwards_traffic():
    """docs/method.md's convention: the backward moves twice what the forward moves."""
    for name, causal in (("sqa", False), ("swa", True)):
        spec = get_variant(name, window=48)
        forward, train = (step_cost(spec, TINY, 3, 40, causal, mode) for mode in ("fwd", "train"))
        assert train.min_bytes == 3 * forward.min_bytes


@pytest.mark.parametrize("n, window, causal", [(64, None, False), (64, 5, False), (64, 5, True), (200, 48, True),
                                               (200, 48, False), (7, 300, False)])  # fmt: skip
def test_one_ranks_share_of_the_pairs_equals_brute_force(n, window, causal):
    """The pairs of query rows start..stop-1 alone (a rank's share), counted by hand over its rows."""
    from sqabench.flops import visible_pairs_rows

    def by_hand(start, stop):
        return sum(1 for i in range(start, stop) for j in range(n)
                   if (0 <= i - j if causal else True) and (window is None or abs(i - j) <= window))  # fmt: skip

    for start, stop in ((0, n // 4), (n // 4, n // 2), (n // 2, n), (n - 1, n), (3, n - 2)):
        assert visible_pairs_rows(n, start, stop, window, causal) == by_hand(start, stop), (start, stop)


def test_a_mixtures_tokens_touch_top_k_experts_each_until_every_expert_is_read():
    from sqabench.flops import experts_touched
    from sqabench.presets import PRESETS

    moe = PRESETS["paper-moe"]
    assert (moe.n_experts, moe.top_k) == (12, 2)
    assert [experts_touched(moe, tokens) for tokens in (1, 2, 5, 6, 7, 1000)] == [2, 4, 10, 12, 12, 12]
