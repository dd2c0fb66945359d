import copy

import pytest
import torch

from conftest import SEQ, TINY, WINDOW, rel_err
from sqabench.attention import (
    KERNELS,
    KernelUnsupported,
    SQAttention,
    attend,
    eager_attention,
    rope_tables,
    sdpa_choice,
)
from sqabench.errors import ConfigError
from sqabench.variants import FAMILY, VariantSpec, get_variant

CPU_KERNELS = ["eager", "sdpa", "sdpa-math", "sdpa-flash", "flex"]  # sdpa-flash: the default CPU backend
MASKS = {"encoder": (None, False), "causal": (None, True), "encoder-window": (WINDOW, False), "causal-window": (WINDOW, True)}


def head_groups() -> dict[tuple[int, int], str]:
    """Each distinct (Hq, Hkv) of the registry, named by the variants that share it."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name in FAMILY:
        spec = get_variant(name)
        groups.setdefault((spec.n_q_heads, spec.n_kv_heads), []).append(name)
    return {heads: "+".join(names) for heads, names in groups.items()}


HEADS = head_groups()


def layer_and_reference(q_heads: int, kv_heads: int, window, causal, kernel):
    spec = VariantSpec("t", TINY.n_heads, q_heads, kv_heads, window)
    torch.manual_seed(0)
    layer = SQAttention(TINY.d_model, spec, kernel=kernel, causal=causal)
    reference = copy.deepcopy(layer).double()
    reference.kernel = "eager"
    x = torch.randn(2, SEQ, TINY.d_model)
    return layer, reference, x


def rope(dtype):
    return rope_tables(SEQ, TINY.head_dim, TINY.rope_base, torch.device("cpu"), dtype)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("kernel", CPU_KERNELS)
@pytest.mark.parametrize("heads", HEADS, ids=list(HEADS.values()))
def test_every_variant_and_kernel_matches_fp64_reference(heads, kernel, mask):
    window, causal = MASKS[mask]
    layer, reference, x = layer_and_reference(*heads, window, causal, kernel)
    with torch.inference_mode():
        try:
            out = layer(x, rope(torch.float32))
        except KernelUnsupported as err:
            pytest.skip(str(err))  # e.g. CPU flash with an explicit window mask
        ref = reference(x.double(), rope(torch.float64))
    assert out.shape == (2, SEQ, TINY.d_model)
    assert rel_err(out, ref) <= 1e-5


def explicit_window_attention(q, k, v, window):
    """Independent of sqabench's masks: loops spell out |i - j| <= window."""
    n = q.shape[-2]
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            allowed[i, j] = abs(i - j) <= window
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1).double(), v.repeat_interleave(groups, 1).double()
    scores = (q.double() @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v


@pytest.mark.parametrize("kernel", ["flex", "eager"])
def test_windowed_path_equals_explicit_boolean_mask(kernel):
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 16, SEQ, 16), torch.randn(2, 4, SEQ, 16), torch.randn(2, 4, SEQ, 16)
    with torch.inference_mode():
        out = attend(q, k, v, kernel, window=WINDOW)
    assert rel_err(out, explicit_window_attention(q, k, v, WINDOW)) <= 1e-5


def test_eager_reference_differs_from_unmasked_when_windowed():
    # Guards the guard: the window must change the output, or the tests above prove nothing.
    torch.manual_seed(2)
    q, k, v = torch.randn(1, 4, SEQ, 16), torch.randn(1, 4, SEQ, 16), torch.randn(1, 4, SEQ, 16)
    assert rel_err(eager_attention(q, k, v, window=WINDOW), eager_attention(q, k, v)) > 1e-2
    assert rel_err(eager_attention(q, k, v, causal=True), eager_attention(q, k, v)) > 1e-2


def test_pinned_backend_that_cannot_run_fails_loudly():
    q = k = v = torch.randn(1, 4, 64, 16)
    with pytest.raises(KernelUnsupported, match="sdpa-cudnn cannot run this case"):
        attend(q, k, v, "sdpa-cudnn")


def test_sdpa_choice_names_a_backend():
    q = k = v = torch.randn(1, 4, 64, 16)
    assert sdpa_choice(q, k, v, None, False) in {"flash", "math", "efficient", "cudnn"}


def test_unknown_kernel_is_rejected():
    with pytest.raises(ConfigError, match="unknown kernel 'fast'; choose one of: eager, sdpa"):
        SQAttention(TINY.d_model, get_variant("mha"), kernel="fast")
    assert "flex" in KERNELS


def test_output_projection_is_sized_from_query_heads():
    layer = SQAttention(TINY.d_model, get_variant("xsqa"))
    assert layer.wq.weight.shape == (4 * 16, 256)
    assert layer.wk.weight.shape == layer.wv.weight.shape == (4 * 16, 256)
    assert layer.wo.weight.shape == (256, 4 * 16)
