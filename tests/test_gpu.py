"""bf16 correctness on a GPU (``pytest -m gpu``): every variant x kernel against the fp64 reference."""

import pytest
import torch

from sqabench.attention import KernelUnsupported, SQAttention
from sqabench.variants import FAMILY, get_variant
from sqabench.verify import check_layer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "causal"])
@pytest.mark.parametrize("kernel", ["sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa-math", "flex"])
@pytest.mark.parametrize("name", FAMILY)
def test_bf16_kernel_matches_fp64_reference_at_4k(name, kernel, causal):
    torch.manual_seed(0)
    layer = SQAttention(256, get_variant(name), kernel=kernel, causal=causal).to("cuda", torch.bfloat16)
    try:
        check = check_layer(layer, batch=1, seq_len=4096)  # raises KernelCheckFailed past 2e-2 or on NaN
    except KernelUnsupported as err:
        pytest.skip(str(err))
    assert check.rel_err < 1e-2
