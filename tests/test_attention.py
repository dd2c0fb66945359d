"""Every kernel against the independent per-head fp64 reference of tests/reference.py."""

import pytest
import torch

from conftest import SEQ, TINY, WINDOW, rel_err
from reference import attention_layer, attention_per_head, mask_by_loops, rotate
from sqabench.attention import SQAttention, apply_rope, rope_tables
from sqabench.errors import ConfigError
from sqabench.kernels import KernelUnsupported, SdpaKernel, build_kernel
from sqabench.variants import FAMILY, VariantSpec, get_variant

MASKS = {
    "encoder": (None, False),
    "causal": (None, True),
    "encoder-window": (WINDOW, False),
    "causal-window": (WINDOW, True),
}
EAGER_KERNELS = ["eager", "sdpa", "sdpa-math", "sdpa-flash"]  # sdpa-flash: the default CPU backend


def head_groups() -> dict[tuple[int, int], str]:
    """Each distinct (Hq, Hkv) of the registry, named by the variants that share it."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name in FAMILY:
        spec = get_variant(name)
        groups.setdefault((spec.n_q_heads, spec.n_kv_heads), []).append(name)
    return {heads: "+".join(names) for heads, names in groups.items()}


HEADS = head_groups()
# flex compiles a kernel per shape (~5-20 s each on a CPU), so a covering set rather than every pair: every
# mask on the grouped layout (16/4: swa's, gqa's), and the most intricate mask on the layouts that take
# another path through the kernel: no grouping (8/8) and every query head on one key/value head (4/1). The
# eager kernels above cover every layout with every mask.
FLEX_CASES = [((16, 4), mask) for mask in MASKS] + [(heads, "causal-window") for heads in [(8, 8), (4, 1)]]


def qkv(q_heads: int, kv_heads: int, seed: int = 0):
    """Random q, k, v in the (B, N, H, Dh) memory layout the layer hands its kernels."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, SEQ, q_heads, 16, generator=g).transpose(1, 2)
    k = torch.randn(2, SEQ, kv_heads, 16, generator=g).transpose(1, 2)
    v = torch.randn(2, SEQ, kv_heads, 16, generator=g).transpose(1, 2)
    return q, k, v


def run_kernel(kernel, heads, mask):
    window, causal = MASKS[mask]
    q, k, v = qkv(*heads)
    with torch.inference_mode():  # every kernel here runs every mask on a CPU: none may pass by skipping
        out = build_kernel(kernel, window, causal)(q, k, v)
    assert out.shape == q.shape
    assert rel_err(out, attention_per_head(q, k, v, window, causal)) <= 1e-5


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("kernel", EAGER_KERNELS)
@pytest.mark.parametrize("heads", HEADS, ids=list(HEADS.values()))
def test_every_variant_and_kernel_matches_the_per_head_reference(heads, kernel, mask):
    run_kernel(kernel, heads, mask)


@pytest.mark.slow
@pytest.mark.parametrize("heads, mask", FLEX_CASES, ids=[f"{HEADS[h]}-{m}" for h, m in FLEX_CASES])
def test_flex_matches_the_per_head_reference(heads, mask):
    run_kernel("flex", heads, mask)


def test_mask_loops_follow_the_definition():
    # Guards the guard: the reference's own mask, spelled out on a small case.
    m = mask_by_loops(5, 1, True)
    assert m.tolist() == [
        [True, False, False, False, False],
        [True, True, False, False, False],
        [False, True, True, False, False],
        [False, False, True, True, False],
        [False, False, False, True, True],
    ]
    assert mask_by_loops(4, 1, False)[0].tolist() == [True, True, False, False]
    assert mask_by_loops(3, None, True).sum() == 6 and mask_by_loops(3, None, False).all()


def test_reference_differs_when_masked():
    # The masks change the output, so the tests above compare something.
    q, k, v = qkv(4, 4, seed=2)
    full = attention_per_head(q, k, v)
    assert rel_err(attention_per_head(q, k, v, WINDOW), full) > 1e-2
    assert rel_err(attention_per_head(q, k, v, None, True), full) > 1e-2
    assert rel_err(attention_per_head(q, k, v, WINDOW, True), attention_per_head(q, k, v, None, True)) > 1e-2


@pytest.mark.parametrize("window", [None, WINDOW], ids=["full", "window"])
@pytest.mark.parametrize("kernel", EAGER_KERNELS)
def test_causal_kernel_never_looks_ahead(kernel, window):
    """Changing keys and values after position t leaves rows <= t unchanged (window or not). Every kernel
    here runs every mask on a CPU: an unsupported case fails the test rather than checking nothing."""
    q, k, v = qkv(8, 4, seed=3)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 120:] += 1.0
    v2[:, :, 120:] -= 1.0
    op = build_kernel(kernel, window, True)
    with torch.inference_mode():
        a, b = op(q, k, v), op(q, k2, v2)
    assert torch.allclose(a[:, :, :120], b[:, :, :120])
    assert not torch.allclose(a[:, :, 120:], b[:, :, 120:])


def test_rope_matches_the_pairwise_rotation():
    x = torch.randn(1, 2, 37, 16, dtype=torch.float64)
    cos, sin = rope_tables(37, 16, 10_000.0, torch.device("cpu"), torch.float64)
    assert rel_err(apply_rope(x, cos, sin), rotate(x, 10_000.0)) < 1e-12


@pytest.mark.parametrize("heads", [(16, 16), (8, 4), (4, 1)], ids=["mha", "sqa", "xsmqa"])
@pytest.mark.parametrize("mask", ["causal-window", "encoder"])
def test_layer_matches_a_reference_built_from_its_weights(heads, mask):
    window, causal = MASKS[mask]
    spec = VariantSpec("t", TINY.n_heads, *heads, window)
    torch.manual_seed(0)
    layer = SQAttention(TINY.d_model, spec, kernel="sdpa", causal=causal)
    x = torch.randn(2, SEQ, TINY.d_model)
    with torch.inference_mode():
        out = layer(x, rope_tables(SEQ, 16, 10_000.0, torch.device("cpu"), torch.float32))
    weights = {f"attn.{k}": t for k, t in layer.state_dict().items()}
    ref = attention_layer(x.double(), weights, "attn", heads[0], heads[1], 16, window, causal, 10_000.0)
    assert rel_err(out, ref) <= 1e-5


def test_pinned_backend_that_cannot_run_fails_loudly():
    q = k = v = torch.randn(1, 4, 64, 16)
    with pytest.raises(KernelUnsupported, match="sdpa-cudnn cannot run this case"):
        build_kernel("sdpa-cudnn")(q, k, v)


def test_sdpa_choice_names_a_backend():
    q = k = v = torch.randn(1, 4, 64, 16)
    assert SdpaKernel().ran(q, k, v) in {"sdpa-flash", "sdpa-math", "sdpa-efficient", "sdpa-cudnn"}


def test_unknown_kernel_is_rejected_naming_every_choice():
    with pytest.raises(ConfigError, match="unknown kernel 'fast'; choose one of: auto, eager, sdpa") as raised:
        SQAttention(TINY.d_model, get_variant("mha"), kernel="fast")
    named = str(raised.value).split("choose one of: ")[1].split(", ")
    assert (named[0], named[-1]) == ("auto", "best") and "flex" in named  # auto and best choose per cell
    assert [build_kernel(name).name for name in named[1:-1]] == named[1:-1]  # every other name builds


def test_output_projection_is_sized_from_query_heads():
    layer = SQAttention(TINY.d_model, get_variant("xsqa"))
    assert layer.wq.weight.shape == (4 * 16, 256)
    assert layer.wk.weight.shape == layer.wv.weight.shape == (4 * 16, 256)
    assert layer.wo.weight.shape == (256, 4 * 16)
