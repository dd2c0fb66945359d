"""Failures land in the right column; a sticky CUDA error stops the sweep and keeps every row."""

import pytest
import torch
from torch._dynamo.exc import FailOnRecompileLimitHit
from torch._inductor.exc import InductorError, LoweringException

import factories
from sqabench.environment import Environment
from sqabench.speed.cells import Outcome, Timing
from sqabench.speed.results import read_rows, results_writer
from sqabench.speed.sweep import SweepAborted, classify, run_cell, run_sweep
from sqabench.verify import KernelVerifyFailed


def cells(names="mha,sqa,xsqa", lengths=(64,)):
    return factories.cells(names, lengths)


def raising(err):
    def measure(cell, phase):
        raise err

    return measure


def wrapped(inner: BaseException) -> BaseException:
    """An exception raised the way the compiler raises it: wrapped, with the original as cause."""
    try:
        try:
            raise inner
        except BaseException as original:
            raise InductorError(original, None) from original
    except InductorError as outer:
        return outer


@pytest.mark.parametrize(
    "err, status, text",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "oom", "CUDA out of memory"),
        (MemoryError(), "oom", "host memory"),
        (NotImplementedError("FlexAttention does not support backward on CPU"), "skipped", "backward on CPU"),
        (RuntimeError("cuDNN error: CUDNN_STATUS_BAD_PARAM"), "error", "RuntimeError: cuDNN error"),
        (FailOnRecompileLimitHit("recompile_limit reached"), "error", "FailOnRecompileLimitHit: recompile_limit"),
    ],
    ids=["oom", "host-oom", "not-implemented", "runtime", "recompile-limit"],
)
def test_failures_become_rows(err, status, text):
    outcome = run_cell(cells()[0], raising(err), lambda name: None)
    assert outcome.status == status and text in outcome.error


def test_compiler_wrapped_failures_are_classified_by_what_they_wrap():
    assert classify(wrapped(NotImplementedError("no lowering for this op"))).status == "skipped"
    assert classify(wrapped(torch.OutOfMemoryError("CUDA out of memory while autotuning"))).status == "oom"
    lowering = LoweringException(NotImplementedError("unsupported"), "aten.foo", [], {})
    assert classify(lowering).status == "skipped"
    assert classify(wrapped(RuntimeError("Triton compilation failed"))).status == "error"


def test_a_wrong_kernel_is_an_error_even_when_its_cause_says_not_implemented():
    """Verification failed: never ``skipped``, whatever it was raised from."""
    failed = KernelVerifyFailed("flex output disagrees with the fp64 reference: rel err 3e-01 > 1e-04")
    failed.__cause__ = NotImplementedError("FlexAttention does not support backward on CPU")
    assert classify(failed).status == "error"


def test_a_bug_is_not_swallowed():
    with pytest.raises(TypeError):
        run_cell(cells()[0], raising(TypeError("a bug in sqabench")), lambda name: None)


def test_sticky_cuda_error_stops_the_sweep_after_its_row(tmp_path):
    seen = []

    def measure(cell, phase):
        seen.append(cell.spec.name)
        if cell.spec.name == "sqa":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return Outcome(kernel="fake", timing=Timing(1.0, (1.0, 1.0)))

    writer = results_writer(tmp_path / "r.csv")
    with pytest.raises(SweepAborted, match="illegal memory access"):
        run_sweep(cells(), writer, Environment(device="cpu"), measure=measure)
    assert seen == ["mha", "sqa"]
    assert [(r["variant"], r["status"]) for r in read_rows(writer.path)] == [("mha", "ok"), ("sqa", "error")]


def test_phases_are_reported_in_order():
    from sqabench.speed.measure import measure_cell

    phases = []
    outcome = run_cell(cells("mha")[0], measure_cell, phases.append)
    assert outcome.status == "ok", outcome.error
    assert phases == ["build", "compile", "verify", "warm-up", "timing"]


def test_a_host_allocation_failure_is_oom():
    """The CPU allocator raises RuntimeError, not MemoryError: `--seq 10m` on a CPU is out of memory."""
    err = RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 6400000000000 bytes. Error code 12 (Cannot allocate memory)")  # fmt: skip
    outcome = classify(err)
    assert outcome.status == "oom" and outcome.error.startswith("host memory: ")


def test_the_first_cell_also_warms_the_process_up(tmp_path):
    """An identical later cell ran faster than the first (a cold process): the first cell runs more untimed
    calls, and its row records how many."""
    from sqabench.speed.sweep import PROCESS_WARMUP

    seen = []

    def measure(cell, phase):
        seen.append((cell.spec.name, cell.settings.warmup))
        return Outcome(kernel="fake", timing=Timing(1.0, (1.0, 1.0)))

    writer = results_writer(tmp_path / "r.csv")
    run_sweep(cells("mha,sqa,xsqa"), writer, Environment(device="cpu"), measure=measure)
    assert seen == [("mha", PROCESS_WARMUP), ("sqa", 0), ("xsqa", 0)]
    assert [r["warmup"] for r in read_rows(writer.path)] == [str(PROCESS_WARMUP), "0", "0"]


def test_a_decode_repeat_is_its_passs_mean_token_and_noisy_means_past_ten_percent():
    """A pass of 3 tokens timed 1, 2 and 6 ms is one repeat of 3 ms; the tokens' own times are kept apart.
    A spread of exactly 10% is not noisy (docs: "spread > 10%"); a hair more is."""
    timing = Timing.of_calls(5.0, (1.0, 2.0, 6.0, 10.0, 20.0, 30.0), per_repeat=3)
    assert timing.samples_ms == (3.0, 20.0) and timing.token_samples_ms == (1.0, 2.0, 6.0, 10.0, 20.0, 30.0)
    assert not Timing(0.0, (9.0, 10.0, 10.0)).noisy  # (10 - 9) / 10 = 10%
    assert Timing(0.0, (9.0, 10.0, 10.0, 10.01)).noisy


def test_a_decode_rows_tokens_a_second_are_its_new_tokens_not_its_context(tmp_path):
    """One decode step makes one token in each of the batch's sequences, whatever the context's length."""
    from rows import write_run

    rows = read_rows(write_run(tmp_path / "d.csv", mode="decode"))
    assert rows
    for row in rows:
        batch, ms = int(row["batch"]), float(row["time_ms"])
        assert float(row["tokens_per_s"]) == pytest.approx(batch / (ms / 1e3), rel=1e-4), row["seq_len"]


def test_a_cold_cell_evicts_the_cache_before_every_timed_repeat_and_outside_its_time(monkeypatch):
    """--cache cold: before each timed repeat (and never before a warm-up call) the evictor runs, and the time
    of a repeat is the step's alone; --cache warm runs none. The order of calls is recorded, not timed."""
    import sqabench.device as device_module
    import sqabench.speed.measure as measure

    order: list[str] = []

    clock = iter(range(10_000))  # each perf_counter reading one 1 s tick later than the last

    def counting_evictor(device):  # an eviction takes a tick too: inside a repeat's time it would show there
        return lambda: (order.append("evict"), next(clock))

    monkeypatch.setattr(measure, "evictor", counting_evictor)
    monkeypatch.setattr(device_module.time, "perf_counter", lambda: float(next(clock)))
    (cell,) = factories.cells("sqa", [64], repeats=3, warmup=2, cache="cold")
    outcome = run_cell(cell, measure.measure_cell, lambda name: order.append(name))
    assert outcome.status == "ok", outcome.error
    timed = order[order.index("timing") + 1 :]
    assert timed == ["evict", "evict", "evict"]  # one per timed repeat: the step itself is never in the list
    assert "evict" not in order[: order.index("timing")]
    assert outcome.timing.samples_ms == (1000.0, 1000.0, 1000.0)  # start and end read around the step alone
    order.clear()
    (warm,) = factories.cells("sqa", [64], repeats=3, warmup=2, cache="warm")
    assert run_cell(warm, measure.measure_cell, lambda name: order.append(name)).status == "ok"
    assert "evict" not in order


def test_the_cache_default_is_cold_on_a_gpu_warm_for_decode_and_on_a_cpu():
    import torch

    from sqabench.speed.request import default_cache

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert [default_cache(cuda, "fwd"), default_cache(cuda, "train"), default_cache(cuda, "decode")] == [
        "cold", "cold", "warm"]  # fmt: skip
    assert default_cache(cpu, "fwd") == "warm"


def test_an_evictor_writes_twice_the_cache(monkeypatch):
    import torch

    import sqabench.device as device_module

    monkeypatch.setattr(device_module, "cache_bytes", lambda device: 1000)
    made = []
    real = torch.empty
    monkeypatch.setattr(device_module.torch, "empty", lambda n, **kw: made.append(n) or real(n, **kw))
    evict = device_module.evictor(torch.device("cpu"))
    evict()
    assert made == [2000]
