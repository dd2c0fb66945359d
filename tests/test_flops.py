import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import TINY
from sqabench.kernels import dense_mask
from sqabench.encoder import build_encoder
from sqabench.flops import step_cost, visible_pairs
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
    """A wrong head count must change the count: the test above is not vacuous."""
    a = step_cost(get_variant("mha"), TINY, 3, 40).flops
    b = step_cost(get_variant("sqa"), TINY, 3, 40).flops
    assert a != b


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


def test_train_step_factors():
    spec = get_variant("gqa")
    fwd = step_cost(spec, TINY, 2, 100)
    train = step_cost(spec, TINY, 2, 100, mode="train")
    assert train.matmul_flops == 3 * fwd.matmul_flops
    assert train.attention_flops == 3.5 * fwd.attention_flops
    assert train.exps == 2 * fwd.exps


def test_min_bytes_counts_weights_and_activations():
    spec = get_variant("mha")
    small, big = step_cost(spec, TINY, 1, 100), step_cost(spec, TINY, 1, 200)
    assert 0 < small.min_bytes < big.min_bytes
    assert step_cost(spec, TINY, 1, 100, dtype="fp32").min_bytes == 2 * small.min_bytes


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode='bwd'"):
        step_cost(get_variant("mha"), TINY, 1, 10, mode="bwd")
