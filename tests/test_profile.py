"""--breakdown: where a step's time goes. The category rules against the operator names real CPU traces hold
(tests/fixtures/cpu_profile_ops.json, from record_cpu_ops.py), and a real step profiled."""

import csv
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import sqabench.encoder as encoder
import sqabench.speed.profile as profile
from conftest import TINY
from sqabench.encoder import build_encoder
from sqabench.kernels import ATTENTION_RANGE
from sqabench.speed.profile import RULES, _ancestry, category, profile_step, summarise
from sqabench.variants import get_variant

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "cpu_profile_ops.json").read_text())
CPU = torch.device("cpu")


@pytest.mark.parametrize("kernel", ["sdpa-flash", "sdpa-math"])
def test_sdpa_on_a_cpu_is_attention_by_its_operators_alone(kernel):
    assert all(category(chain) == "attention" for chain in FIXTURE[kernel]), FIXTURE[kernel]


@pytest.mark.parametrize("kernel", ["flex", "eager"])
def test_flex_and_eager_are_attention_through_sqabenchs_range(kernel):
    """A compiled flex call shows only "Torch-Compiled Region", the eager kernel plain matmuls and a softmax:
    their operators alone do not say attention. Every kernel module runs inside ATTENTION_RANGE, which does."""
    assert any(category(chain) != "attention" for chain in FIXTURE[kernel])
    assert all(category([*chain, ATTENTION_RANGE]) == "attention" for chain in FIXTURE[kernel])


def test_projections_are_matmuls_and_norms_are_other_kernels():
    assert all(category(chain) == "matmul" for chain in FIXTURE["projection"])
    assert all(category(chain) == "other" for chain in FIXTURE["norm"])
    rope = {category(chain) for chain in FIXTURE["rope"]}  # the projections, then the rotation's mul and cat
    assert rope == {"matmul", "other"}


def test_one_table_decides():
    assert {rule[0] for rule in RULES} == {"attention", "matmul"}
    assert RULES[0] == ("attention", "op", f"^{re.escape(ATTENTION_RANGE)}$")  # sqabench's range first
    assert category(["aten::mm", "aten::linear"]) == "matmul"
    assert category(["aten::mm", "aten::matmul", ATTENTION_RANGE]) == "attention"  # the eager kernel's product
    assert category(["cudaLaunchKernel", "aten::add"], kernel="void at::native::elementwise_kernel") == "other"


def model_step(name="mha", kernel="sdpa"):
    model = build_encoder(get_variant(name), TINY, kernel)
    tokens = torch.randint(0, TINY.vocab_size, (2, 128))

    def step():
        with torch.inference_mode():
            model(tokens)

    step()  # warm
    return step


def test_the_parts_add_up_to_the_profiled_step():
    parts = profile_step(model_step(), CPU)
    assert min(parts.attention_ms, parts.matmul_ms, parts.other_ms, parts.idle_ms) >= 0
    assert parts.attention_ms > 0 and parts.matmul_ms > 0
    assert parts.attention_ms + parts.matmul_ms + parts.other_ms + parts.idle_ms == pytest.approx(parts.wall_ms)
    assert 0 < parts.attention_share < 1


def test_a_slowed_part_outside_attention_shows_up_in_other(monkeypatch):
    """The feed-forward made 0.2 s slower per layer (TINY has 2): "other" holds at least those 0.4 s (a sleep
    never ends early, however busy the machine), and the slow part's events are filed as other, not attention
    (what is asserted is where each event goes, never a share of measured time)."""
    real = encoder.SwiGLU.forward

    def slowed(self, x):
        with torch.profiler.record_function("a deliberately slow part"):
            time.sleep(0.2)
        return real(self, x)

    monkeypatch.setattr(encoder.SwiGLU, "forward", slowed)
    step = model_step()
    slow = profile_step(step, CPU)
    assert slow.other_ms >= 0.4 * 1e3
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    parts = [e for e in prof.events() if e.name == "a deliberately slow part"]
    assert len(parts) == 2 and {category(_ancestry(e)) for e in parts} == {"other"}


def test_a_run_with_breakdown_writes_its_columns_and_each_variants_longest_trace(real_run):
    out, output = real_run
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        parts = [float(row[c]) for c in ("attention_ms", "matmul_ms", "other_ms", "idle_ms")]
        assert min(parts) >= 0 and float(row["attention_share"]) == pytest.approx(parts[0] / sum(parts), rel=1e-3)
    traces = sorted(p.name for p in (out.parent / "real-traces").iterdir())
    assert traces == ["6-2-128.json", "mha-128.json", "sqa-128.json", "xsqa-128.json"]  # each variant's longest
    assert json.loads((out.parent / "real-traces" / "sqa-128.json").read_text())["traceEvents"]
    assert "attention" in output and "explains" in output  # the table: share and Amdahl


def test_the_kernels_of_a_gpu_trace_are_named_with_the_operators_they_ran_inside():
    """A trace as torch.profiler writes it on a GPU (the fields read: cat, name, ts, dur, tid, External id)."""
    from sqabench.speed.profile import trace_kernels

    def op(name, ts, dur, ext, cat="cpu_op"):
        return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "tid": 1, "args": {"External id": ext}}

    trace = {"traceEvents": [
        op("aten::linear", 0, 50, 1), op("aten::mm", 10, 30, 2),
        op(ATTENTION_RANGE, 60, 100, 3, "user_annotation"), op("Torch-Compiled Region: 0/0", 65, 90, 4),
        {"ph": "X", "cat": "kernel", "name": "nvjet_tst_128x256_64x4", "ts": 12, "dur": 20, "tid": 7,
         "args": {"External id": 2}},
        {"ph": "X", "cat": "kernel", "name": "triton_tem_fused_0", "ts": 70, "dur": 80, "tid": 7,
         "args": {"External id": 4}},
        {"ph": "X", "cat": "kernel", "name": "void at::native::vectorized_elementwise_kernel", "ts": 160, "dur": 5,
         "tid": 7, "args": {}},
    ]}  # fmt: skip
    found = trace_kernels(trace)
    assert [(k["kernel"][:10], k["ops"], k["category"]) for k in found] == [
        ("nvjet_tst_", ["aten::mm", "aten::linear"], "matmul"),
        ("triton_tem", ["Torch-Compiled Region: 0/0", ATTENTION_RANGE], "attention"),
        ("void at::n", [], "other"),
    ]
    assert [k["ms"] for k in found] == [0.02, 0.08, 0.005]


GPU_FIXTURE = Path(__file__).parent / "fixtures" / "gpu_kernels.jsonl"


@pytest.mark.skipif(not GPU_FIXTURE.exists(), reason="no GPU trace recorded yet: scripts/gpu-check first writes one")
def test_the_rules_against_a_real_gpu_trace():  # pragma: no cover - runs once a GPU run has been recorded
    kernels = [json.loads(line) for line in GPU_FIXTURE.read_text().splitlines() if line.strip()]
    for k in kernels:
        assert category(k["ops"], k["kernel"]) == k["expected"], k


@pytest.mark.slow
def test_a_flex_step_is_attention_through_the_range(monkeypatch):
    """flex shows only a compiled region in a profile: without sqabench's range its time would be "other"."""
    from conftest import SEQ, WINDOW

    model = build_encoder(get_variant("swa", window=WINDOW), TINY, "auto")  # flex: the windowed kernel
    tokens = torch.randint(0, TINY.vocab_size, (2, SEQ))

    def step():
        with torch.inference_mode():
            model(tokens)

    step()
    parts = profile_step(step, CPU)
    assert parts.attention_ms > 0
    # What files it as attention is sqabench's range: without that rule the compiled region is "other".
    without = [rule for rule in profile._COMPILED if rule[2].pattern != RULES[0][2]]
    monkeypatch.setattr(profile, "_COMPILED", without)
    assert profile_step(step, CPU).attention_ms == 0


@pytest.mark.parametrize("kernel", ["eager", "sdpa-math"])
def test_a_real_eager_or_math_step_files_its_products_under_attention(kernel):
    """The eager kernel's and SDPA math's products are plain matmuls: inside sqabench's range they are
    attention, never matmul (the range rule comes first)."""
    step = model_step("mha", kernel)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    inside = [e for e in prof.events() if ATTENTION_RANGE in _ancestry(e)[1:]]
    products = [e for e in inside if re.search(r"^aten::(mm|bmm|matmul|baddbmm)$", e.name)]
    assert products, sorted({e.name for e in inside})  # the kernel's own products run inside the range
    assert {category(_ancestry(e)) for e in inside} == {"attention"}
    assert profile_step(step, CPU).attention_ms > 0


def _kernel(name, duration_us):
    return SimpleNamespace(name=name, duration=duration_us)


def test_busy_time_is_the_union_of_kernel_intervals_and_the_rest_is_idle():
    """A GPU step of 200 us: an attention kernel [0, 40] and a matmul [20, 60] overlapping on two streams, a gap,
    then an elementwise kernel [100, 120]. Busy: the union, 80 us (not the 100 us of their sum); idle: 120 us.
    The categories share the busy time in proportion to their kernels' (40:40:20 of 80 us)."""
    from torch.autograd import DeviceType

    def cpu_op(name, kernels, parent=None):
        return SimpleNamespace(name=name, device_type=DeviceType.CPU, kernels=kernels, cpu_parent=parent,
                               is_async=False)  # fmt: skip

    def on_gpu(start, end):
        return SimpleNamespace(name="k", device_type=DeviceType.CUDA, kernels=[], cpu_parent=None,
                               time_range=SimpleNamespace(start=start, end=end))  # fmt: skip

    attention = cpu_op(ATTENTION_RANGE, [])
    events = [
        cpu_op("aten::_flash_attention_forward", [_kernel("flash_fwd_kernel", 40)], attention),
        cpu_op("aten::mm", [_kernel("nvjet_tst_128x256", 40)]),
        cpu_op("aten::add", [_kernel("vectorized_elementwise_kernel", 20)]),
        on_gpu(0, 40),
        on_gpu(20, 60),
        on_gpu(100, 120),
    ]
    parts = summarise(events, wall_ms=0.2, device=torch.device("cuda"))
    assert parts.idle_ms == pytest.approx(0.12)
    assert (parts.attention_ms, parts.matmul_ms, parts.other_ms) == pytest.approx((0.032, 0.032, 0.016))
    assert parts.wall_ms == pytest.approx(0.2)
    assert profile._union_ms([(0, 40), (20, 60), (100, 120), (105, 110)]) == pytest.approx(0.08)


def test_a_trace_that_cannot_be_written_is_a_note_and_the_breakdown_stands(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    parts = profile_step(model_step(), CPU, blocker / "t.json")
    assert parts.attention_ms > 0 and parts.note.startswith(f"trace not written to {blocker / 't.json'}")


def test_the_profilers_own_lines_stay_off_stderr_and_others_pass(capfd):
    """torch's profiler backend prints `USDT: ... profiler_start` to file descriptor 2 at each start and stop;
    a --breakdown run would show them between its progress lines."""
    import os

    from sqabench.speed.profile import kineto_quiet

    profile_step(model_step(), CPU)
    with kineto_quiet():
        os.write(2, b"USDT:2026-12-01 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"a real warning\n")
    err = capfd.readouterr().err
    assert "USDT" not in err and "profiler_start" not in err and "a real warning" in err
