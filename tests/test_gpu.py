"""On a GPU (``pytest -m gpu``): every variant x kernel against fp64, forward and backward, and a real cell."""

import pytest
import torch

import factories
from sqabench.attention import SQAttention
from sqabench.kernels import KernelUnsupported
from sqabench.presets import PRESETS
from sqabench.speed.measure import measure_cell
from sqabench.variants import FAMILY, get_variant
from sqabench.verify import verify_layer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
KERNELS = ["sdpa", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa-math", "flex"]


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "causal"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", FAMILY)
def test_bf16_kernel_matches_fp64_reference_at_4k(name, kernel, causal):
    torch.manual_seed(0)
    layer = SQAttention(256, get_variant(name), kernel=kernel, causal=causal).to("cuda", torch.bfloat16)
    try:
        result = verify_layer(layer, batch=1, seq_len=4096)  # raises KernelVerifyFailed past 2e-2 or on NaN
    except KernelUnsupported as err:
        pytest.skip(str(err))
    assert result.rel_err < 1e-2


@pytest.mark.parametrize("kernel", ["sdpa", "sdpa-cudnn", "flex"])
@pytest.mark.parametrize("name", ["mha", "sqa", "swa-xsqa"])
def test_bf16_gradients_match_fp64(name, kernel):
    torch.manual_seed(0)
    layer = SQAttention(256, get_variant(name), kernel=kernel, causal=True).to("cuda", torch.bfloat16)
    try:
        result = verify_layer(layer, batch=1, seq_len=1000, grad=True)  # 1000 % 128 != 0: the edge blocks
    except KernelUnsupported as err:
        pytest.skip(str(err))
    assert result.grad_rel_err < 4e-2


@pytest.mark.parametrize("mode", ["fwd", "train"])
def test_a_real_cell_on_the_gpu(mode):
    cells = factories.cells(
        "sqa,swa", [2048], PRESETS["paper"], tokens=8192, dtype="bf16", mode=mode, device="cuda", warmup=1, repeats=3
    )
    for cell in cells:
        outcome = measure_cell(cell)
        assert outcome.status == "ok" and outcome.timing.median_ms > 0
        assert outcome.peak[0] > 0


@pytest.mark.parametrize("graphs", [False, True], ids=["eager-launch", "cuda-graph"])
@pytest.mark.parametrize("name", ["gqa", "ssqa", "swa-xsqa"])
def test_decode_cells_on_the_gpu(name, graphs):
    (cell,) = factories.cells(
        name,
        [4096],
        PRESETS["paper"],
        tokens=32768,
        dtype="bf16",
        mode="decode",
        causal=True,
        device="cuda",
        warmup=1,
        repeats=2,
        new_tokens=16,
        cuda_graphs=graphs,
    )
    outcome = measure_cell(cell)
    assert outcome.status == "ok" and outcome.verify_rel_err < 4e-2
    assert len(outcome.timing.samples_ms) == 2 * 16 and outcome.readings["prefill_ms"] > 0


def test_a_graphed_decode_step_equals_the_launched_one():
    from sqabench.decode import Decoder, graphed
    from sqabench.encoder import build_encoder

    model = build_encoder(get_variant("sqa"), PRESETS["paper"], "auto", True, "cuda", torch.bfloat16)
    tokens = torch.randint(0, 10_000, (4, 1024 + 8), device="cuda")
    with torch.inference_mode():
        plain, captured = Decoder(model, 4, 1024, 8, "sdpa"), Decoder(model, 4, 1024, 8, "sdpa")
        plain.prefill(tokens[:, :1024])
        captured.prefill(tokens[:, :1024])
        step = graphed(captured, tokens[:, 1024:])
        for t in range(8):
            expected = plain.step(tokens[:, 1024 + t : 1025 + t])
            assert torch.equal(step(), expected)


def test_attention_memory_grows_with_the_query_heads():
    """The attention's own memory at the cell's shape: q, k, v and the output scale with the heads, where the
    model's peak (its logits) cannot see them."""
    from sqabench.speed.cells import Outcome

    cells = factories.cells("mha,xsqa", [32768], PRESETS["paper"], tokens=65536, dtype="bf16", device="cuda")
    mha, xsqa = (measure_cell(cell) for cell in cells)
    assert isinstance(mha, Outcome) and mha.readings["attn_mem_bytes"] > xsqa.readings["attn_mem_bytes"] > 0
    qkvo = 2 * 32768 * 16 * (2 * 4 + 2 * 4) * 2  # xsqa: q, o of 4 heads, k, v of 4, bf16, batch 2
    assert xsqa.readings["attn_mem_bytes"] >= qkvo


def test_doctor_on_the_gpu():
    from sqabench.speed.doctor import run_doctor, summary

    checks, interrupted = run_doctor(torch.device("cuda"))
    result = summary(checks)
    assert not interrupted
    assert result["ok"], result["broken"]
    statuses = {c.section: c.status for c in checks}
    assert statuses["graphs"] == "ok" and statuses["speed"] != "skipped" and statuses["nvml"] != "skipped"


def test_a_breakdown_on_the_gpu_adds_up():
    from sqabench.encoder import build_encoder
    from sqabench.speed.profile import profile_step

    model = build_encoder(get_variant("sqa"), PRESETS["paper"], "auto", False, "cuda", torch.bfloat16)
    tokens = torch.randint(0, 10_000, (4, 8192), device="cuda")

    def step():
        with torch.inference_mode():
            model(tokens)

    step()
    parts = profile_step(step, torch.device("cuda"))
    assert parts.attention_ms > 0 and parts.matmul_ms > 0 and parts.idle_ms >= 0
    assert parts.attention_ms + parts.matmul_ms + parts.other_ms + parts.idle_ms == pytest.approx(parts.wall_ms)
