"""Ceilings, published peaks, the floor of each cell, and its efficiency on a real CPU run."""

import pytest
import torch
from typer.testing import CliRunner

import sqabench.speed.ceilings as ceilings
from sqabench.cli import app
from sqabench.environment import environment
from sqabench.flops import Rates, floor
from sqabench.speed.ceilings import get_ceilings
from sqabench.speed.peaks import peaks_for
from sqabench.speed.results import FLOOR_WRONG, read_rows

pytestmark = pytest.mark.real_ceilings  # this file measures ceilings; every other reads stubbed ones


def test_floor_is_the_largest_term_and_names_it():
    rates = Rates(matmul_flops=1e12, exp_per_s=1e9, bytes_per_s=1e11)
    f = floor(flops=2e12, exps=3e9, min_bytes=1e11, rates=rates)  # 2 s, 3 s, 1 s
    assert (f.bound, f.floor_ms) == ("exp", pytest.approx(3000.0))
    assert f.terms_ms == pytest.approx({"matmul": 2000.0, "exp": 3000.0, "memory": 1000.0})
    assert floor(1e12, 1, 1e13, rates).bound == "memory"
    assert floor(1, 1, 1, Rates(matmul_flops=1e12)) is None


@pytest.mark.parametrize(
    "name, label, bf16, bandwidth",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM5", 989.4e12, 3.35e12),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756e12, 2.0e12),
        ("NVIDIA H200", "H200 SXM", 989.4e12, 4.8e12),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB SXM4", 312e12, 1.555e12),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM4", 312e12, 2.039e12),
        ("NVIDIA L4", "L4", 121e12, 0.3e12),
        ("NVIDIA L40S", "L40S", 362.05e12, 0.864e12),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 165.2e12, 1.008e12),
        ("NVIDIA B200", "B200", 2250e12, 8e12),
    ],
)
def test_published_peaks(name, label, bf16, bandwidth):
    found, rates = peaks_for(name, "bf16")
    assert found == label
    assert rates.matmul_flops == pytest.approx(bf16) and rates.bytes_per_s == pytest.approx(bandwidth)


def test_h100_special_function_rate_is_flashattention3s():
    _, rates = peaks_for("NVIDIA H100 80GB HBM3", "bf16")
    assert rates.exp_per_s == pytest.approx(3.9e12, rel=0.01)  # 132 SMs x 16/clk x 1.83 GHz
    assert peaks_for("", "bf16") is None and peaks_for("Some Unknown GPU", "bf16") is None
    assert peaks_for("NVIDIA H100 80GB HBM3", "fp32")[1].matmul_flops == pytest.approx(66.9e12)


def test_ceilings_are_cached_per_device_and_software(tmp_path, monkeypatch):
    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_measure(device, dtype, budget_s=1.0):
        calls.append(dtype)
        methods = {"matmul": "m", "exp": "e", "memory": "b"}
        return ceilings.Ceilings("", Rates(1e11, 1e9, 1e10), methods, ceilings._now())

    monkeypatch.setattr(ceilings, "measure_ceilings", fake_measure)
    monkeypatch.setattr(ceilings, "probe", lambda device, dtype: Rates(1e11, None, 1e10))  # as fast as cached
    env = environment(torch.device("cpu"))
    first = get_ceilings(torch.device("cpu"), env, "fp32")
    assert not first.cached and first.ceilings.rates == Rates(1e11, 1e9, 1e10)
    again = get_ceilings(torch.device("cpu"), env, "fp32")
    assert again.cached and again.ceilings.rates == first.ceilings.rates and calls == ["fp32"]
    get_ceilings(torch.device("cpu"), env, "bf16")
    get_ceilings(torch.device("cpu"), env, "fp32", refresh=True)
    assert calls == ["fp32", "bf16", "fp32"]
    (tmp_path / "ceilings.json").write_text("{not json")
    assert not get_ceilings(torch.device("cpu"), env, "fp32").cached  # an unreadable cache is measured again


def test_a_real_cpu_run_records_its_floor_bound_and_efficiency(real_run):
    """Each row holds the floor of its cost at the ceilings the run used, the limit that binds, and floor / time;
    an efficiency above 1 is flagged on the row. (Whether it stays below 1 on measured ceilings compares two
    measurements, the cells' and the ceilings', which a busy machine moves apart: the recorded CSVs show it,
    not a test.) The shared run read the tests' stubbed ceilings (tests/conftest.py)."""
    from conftest import STUB_RATES

    rows = read_rows(real_run[0])
    assert [r["status"] for r in rows] == ["ok"] * 8, [r["error"] for r in rows]
    for row in rows:
        assert row["bound"] in ("matmul", "exp", "memory")
        assert float(row["efficiency"]) > 0
        assert (FLOOR_WRONG in row["note"]) == (float(row["efficiency"]) > 1), row
        assert float(row["floor_ms"]) == pytest.approx(float(row["efficiency"]) * float(row["time_ms"]), rel=1e-3)
        assert float(row["ceiling_matmul_flops"]) == pytest.approx(STUB_RATES["matmul_flops"], rel=1e-3)
        rates = Rates(STUB_RATES["matmul_flops"], STUB_RATES["exp_per_s"], STUB_RATES["bytes_per_s"])
        expected = floor(float(row["flops"]), float(row["exps"]), float(row["min_bytes"]), rates)
        assert float(row["floor_ms"]) == pytest.approx(expected.floor_ms, rel=1e-4) and row["bound"] == expected.bound
        assert row["peak_matmul_flops"] == ""  # no published peak for a CPU


@pytest.mark.slow
def test_ceilings_command_on_cpu():
    result = CliRunner().invoke(app, ["ceilings", "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("matmul", "exp", "memory", "GFLOP/s", "a @ b and F.linear(a, b) in fp32", "fp32 exp", "copy_ of"):
        assert text in result.output


def test_floor_command_shows_the_softmax_bound_of_the_paper_preset():
    runner = CliRunner()
    result = runner.invoke(app, ["floor", "--gpu", "H100 SXM", "--seq", "200k"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("│ mha ", "│ xsqa "))]
    assert "(exp)" in lines[0] and "(exp)" in lines[1]  # d_head 16: the softmax binds, not the tensor cores
    result = runner.invoke(app, ["floor", "--gpu", "H100 SXM", "--seq", "32k", "--preset", "wide"])
    assert "(matmul)" in result.output.split("│ mha ")[1].split("\n")[0]  # d_head 128: the tensor cores bind
    result = runner.invoke(app, ["floor", "--gpu", "TPU v5"])
    assert result.exit_code == 2 and "unknown GPU 'TPU v5'; choose one of: A100 80GB PCIe" in result.output


def test_floor_takes_the_variants_and_the_window_asked_for():
    result = CliRunner().invoke(app, ["floor", "--seq", "1k", "--variants", "mha,swa-xsqa,6/2", "--window", "64"],
                                env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1].strip() for line in result.output.splitlines() if line.startswith("│ ")]
    assert [r for r in rows if r] == ["mha", "swa-xsqa", "6/2"]
    (line,) = [line for line in result.output.splitlines() if line.startswith("│ swa-xsqa ")]
    terms = result.output.split("│ swa-xsqa ")[1].splitlines()[1]  # matmul / exp / memory ms
    keys = sum(min(i + 64, 1023) - max(i - 64, 0) + 1 for i in range(1024))  # window 64, counted row by row
    exp_ms = 8 * 128 * 4 * keys / 3.86e12 * 1e3  # 8 layers, batch 128 (131072 tokens), 4 query heads
    assert float(terms.split("/")[1]) == pytest.approx(exp_ms, rel=5e-3)
    assert "(memory)" in line  # a 64-token window at d_head 16 moves more than it computes


def test_floor_of_decode_is_bound_by_the_bytes_a_step_reads():
    """Decode floors: one token per sequence reads the whole cache; the byte count, by hand, sets the floor."""
    result = CliRunner().invoke(app, ["floor", "--gpu", "H100 SXM", "--seq", "32k", "--mode", "decode", "--tokens",
                                      "131072", "--new-tokens", "1"], env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("│ gqa ")]
    assert "(memory)" in line
    # gqa at 32k x4, one step: K and V of 4 heads x 16 dims x 8 layers x 32769 keys x 4 sequences, bf16,
    # plus every weight once; at 3.35 TB/s that is about 0.1 ms
    cache = 2 * 4 * 16 * 8 * 32769 * 4 * 2
    assert float(line.split("│")[2].split("ms")[0]) == pytest.approx(cache / 3.35e12 * 1e3, rel=0.1)


def stub_ceilings(monkeypatch, measured: list[Rates], probe: Rates):
    """``measure_ceilings`` returns the next of ``measured``; the quick probe sees ``probe``."""
    calls = iter(measured)

    def fake_measure(device, dtype, budget_s=1.0):
        return ceilings.Ceilings("", next(calls), {"matmul": "m", "exp": "e", "memory": "b"}, ceilings._now())

    monkeypatch.setattr(ceilings, "measure_ceilings", fake_measure)
    monkeypatch.setattr(ceilings, "probe", lambda device, dtype: probe)


def test_ceilings_measured_on_a_loaded_machine_are_measured_again_and_the_best_kept(tmp_path, monkeypatch):
    """A cache filled under load (exp 0.6 G/s, copy 8.6 GB/s) would rest every floor on low ceilings; a quick
    probe that runs faster than the cache re-measures, and each rate keeps the best of its measurements."""
    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path))
    env = environment(torch.device("cpu"))
    loaded, quiet = Rates(1e11, 0.6e9, 8.6e9), Rates(0.9e11, 2.6e9, 39.8e9)
    stub_ceilings(monkeypatch, [loaded, quiet], probe=Rates(1e11, None, 40e9))  # memory 4.6x the cache
    first = get_ceilings(torch.device("cpu"), env, "fp32")
    again = get_ceilings(torch.device("cpu"), env, "fp32")
    assert not again.cached and "a quick probe ran faster than the cache (memory 4.7x)" in again.reason
    assert again.ceilings.rates == Rates(1e11, 2.6e9, 39.8e9)  # the best of each: matmul from the first
    assert again.ceilings.measurements == 2 and first.ceilings.measurements == 1
    stub_ceilings(monkeypatch, [], probe=Rates(0.5e11, None, 20e9))  # now loaded: slower, the cache stands
    third = get_ceilings(torch.device("cpu"), env, "fp32")
    assert third.cached and third.ceilings.rates == again.ceilings.rates
    said = ceilings.describe(third)
    assert said.startswith("cached, measured ") and "best of 2 measurements" in said


def test_old_ceilings_are_measured_again(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path))
    env = environment(torch.device("cpu"))
    stub_ceilings(monkeypatch, [Rates(1e11, 1e9, 1e10), Rates(1e11, 1e9, 1e10)], probe=Rates(1e11, None, 1e10))
    get_ceilings(torch.device("cpu"), env, "fp32")
    cache = json.loads((tmp_path / "ceilings.json").read_text())
    (entry,) = cache.values()
    entry["measured_at"] = "2026-01-01T00:00:00+00:00"
    (tmp_path / "ceilings.json").write_text(json.dumps(cache))
    lookup = get_ceilings(torch.device("cpu"), env, "fp32")
    assert not lookup.cached and "days old" in lookup.reason


def test_the_matmul_ceiling_is_the_best_way_the_cells_compute(monkeypatch):
    """On a CPU without fast bf16 a square a @ b ran at 1.3 GFLOP/s while the model's F.linear ran far
    faster: efficiency 13. The ceiling takes the best of a @ b and F.linear, and of fp32 for a 16-bit
    dtype (a kernel that upcasts runs at fp32's rate)."""
    speeds = {("a @ b", torch.bfloat16): 1.3e9, ("F.linear(a, b)", torch.bfloat16): 90e9,
              ("a @ b", torch.float32): 40e9, ("F.linear(a, b)", torch.float32): 45e9}  # fmt: skip

    def fake_best(step, device, budget_s, max_repeats=50):
        return step(), 3  # the step returns its milliseconds

    def way(name):
        def run(a, b):
            n = a.shape[0]
            return 2 * n**3 / speeds[(name, a.dtype)] * 1e3

        return run

    monkeypatch.setattr(ceilings, "best_time", fake_best)
    monkeypatch.setattr(ceilings, "MATMUL_WAYS", {"a @ b": way("a @ b"), "F.linear(a, b)": way("F.linear(a, b)")})
    rate, how = ceilings._matmul(torch.device("cpu"), "bf16", 0.1)
    assert rate == pytest.approx(90e9) and how.startswith("F.linear(a, b), bf16")
    rate, how = ceilings._matmul(torch.device("cpu"), "fp32", 0.1)
    assert rate == pytest.approx(45e9) and "tried a @ b and F.linear(a, b) in fp32 at" in how  # fp32 once
    speeds[("a @ b", torch.float32)] = 150e9  # a CPU whose bf16 kernels all upcast: fp32 is the ceiling
    rate, how = ceilings._matmul(torch.device("cpu"), "bf16", 0.1)
    assert rate == pytest.approx(150e9) and how.startswith("a @ b, fp32")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpu", "h100"], "--gpu 'h100' fits 2 GPUs: H100 PCIe, H100 SXM5; name one"),
        (["--gpu", ""], "--gpu is empty; choose one of: A100 80GB PCIe"),
        (["--gpu", "a"], "--gpu 'a' fits 3 GPUs: A100 80GB PCIe, A100 80GB SXM4, A100 40GB SXM4"),
        (["--gpu", "4"], "--gpu '4' fits"),
        (["--tokens", "0"], "--tokens 0 must be >= 1"),
        (["--window", "0"], "--window 0 must be >= 1"),
        (["--variants", "mha,5/3"], "5/3: n_q_heads=5 is not a multiple of n_kv_heads=3"),
        (["--mode", "bwd"], "unknown mode 'bwd'; choose one of: fwd, train, decode"),
    ],
)
def test_floor_bad_input(args, message):
    result = CliRunner().invoke(app, ["floor", *args], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "name, found",
    [("H100 SXM", "H100 SXM5"), ("h100 pcie", "H100 PCIe"), ("A100 40GB", "A100 40GB SXM4"), ("h200", "H200 SXM"),
     ("L4", "L4"), ("rtx 4090", "GeForce RTX 4090")],
)  # fmt: skip
def test_an_unambiguous_gpu_name_picks_its_gpu(name, found):
    from sqabench.speed.peaks import published_gpu

    assert published_gpu(name, "bf16")[0] == found


def test_a_probe_is_bounded_however_slow_its_step(monkeypatch):
    """A step of 10 s (fp16 emulated on a CPU) against a 1 s budget: one repeat after the warm-up, not three."""
    import sqabench.device as device

    clock = [0.0]
    monkeypatch.setattr(device.time, "perf_counter", lambda: clock[0])

    def slow():
        clock[0] += 10.0

    best, count = device.best_time(slow, torch.device("cpu"), budget_s=1.0)
    assert count == 1 and best == pytest.approx(10_000.0)

    def quick():
        clock[0] += 0.1

    assert device.best_time(quick, torch.device("cpu"), budget_s=1.0)[1] in (10, 11)  # a quick one fills its budget


def test_a_slow_matmul_is_not_tried_at_larger_sizes(monkeypatch):
    tried = []

    def fake_best(step, device, budget_s, max_repeats=50):
        return step(), 1

    def slow(a, b):
        tried.append(a.shape[0])
        return 2 * a.shape[0] ** 3 / 1e9 * 1e3  # 1 GFLOP/s: 512^3 takes 0.27 s, far past its share

    monkeypatch.setattr(ceilings, "best_time", fake_best)
    monkeypatch.setattr(ceilings, "MATMUL_WAYS", {"a @ b": slow})
    rate, how = ceilings._matmul(torch.device("cpu"), "fp32", 0.3)  # 0.1 s for each of three sizes
    assert tried == [512] and rate == pytest.approx(1e9) and "too slow for more: a @ b in fp32 above 512" in how


def test_what_is_measured_is_said_before_the_measuring(tmp_path, monkeypatch):
    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path))
    said = []
    fake = ceilings.Ceilings("", Rates(1e9, 1e9, 1e9), {}, "2026-01-01T00:00:00+00:00")
    monkeypatch.setattr(ceilings, "measure_ceilings", lambda device, dtype: said.append("measured") or fake)
    get_ceilings(torch.device("cpu"), environment(torch.device("cpu")), "fp16", before=said.append)
    assert said[-1] == "measured" and len(said) == 2
    assert said[0].startswith("measuring this CPU's ceilings in fp16 (none cached") and "about 10 s" in said[0]
    assert "fp16 is emulated on a CPU" in said[0]
