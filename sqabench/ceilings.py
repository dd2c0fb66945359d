"""What this device can do: the three rates the cost model's floor needs, measured, and published peaks.

A step cannot run faster than its FLOPs at the best matmul rate, its softmax exponentials at the
best exponential rate, or its minimum bytes at the best copy bandwidth. ``measure_ceilings`` runs
one small benchmark per rate on the present device and keeps the best repeat (load only ever
slows a repeat down, so the best is the least disturbed):

- matmul: square ``a @ b`` in the run's dtype at a few sizes, 2n^3 FLOPs per product;
- exponentials: 32 independent ``exp`` per element of an fp32 tensor, summed, compiled into one
  kernel so that the exponentials, not memory, bind (softmax exponentials run in fp32 whatever
  the dtype; on a GPU they go to the special-function units);
- bandwidth: ``dst.copy_(src)`` of tensors far larger than the caches, 2 x bytes per copy.

Results are cached per device and software (``$SQABENCH_CACHE_DIR``, else ~/.cache/sqabench), so
a sweep measures once. ``peaks_for`` reads the published peaks of common GPUs
(``data/gpu_peaks.csv``, sources in the file).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch

from sqabench.dtypes import get_dtype
from sqabench.environment import Environment
from sqabench.measure import synchronize

EXP_CHAIN = 32


@dataclass(frozen=True)
class Rates:
    """Per second: FLOPs of dense matmul, exponentials, bytes moved. None: unknown."""

    matmul_flops: float | None = None
    exp_per_s: float | None = None
    bytes_per_s: float | None = None


@dataclass(frozen=True)
class Ceilings:
    """The measured rates of one device in one dtype, with how each was measured."""

    key: str
    rates: Rates
    methods: dict[str, str]
    measured_at: str


@dataclass(frozen=True)
class DeviceLimits:
    """What a sweep's rows are held to: the measured ceilings and, for a listed GPU, its published peaks."""

    measured: Rates | None = None
    peak: Rates | None = None
    peak_name: str = ""
    link_bytes_per_s: float | None = None  # context parallelism: what a rank receives per second in an all-gather


@dataclass(frozen=True)
class Floor:
    """The least time a step can take, the limit that sets it, and each limit's time."""

    floor_ms: float
    bound: str  # matmul, exp or memory
    terms_ms: dict[str, float]


def floor(
    flops: int, exps: int, min_bytes: int, rates: Rates, comm_bytes: int = 0, link: float | None = None
) -> Floor | None:
    """max(flops / matmul rate, exps / exp rate, min_bytes / bandwidth[, comm_bytes / link rate]); None
    without all three rates. The fourth term, ``comm``, is a context-parallel rank's all-gathers."""
    if None in (rates.matmul_flops, rates.exp_per_s, rates.bytes_per_s):
        return None
    terms = {
        "matmul": flops / rates.matmul_flops * 1e3,
        "exp": exps / rates.exp_per_s * 1e3,
        "memory": min_bytes / rates.bytes_per_s * 1e3,
    }
    if comm_bytes and link:
        terms["comm"] = comm_bytes / link * 1e3
    bound = max(terms, key=terms.__getitem__)
    return Floor(terms[bound], bound, terms)


# --- published peaks ---------------------------------------------------------------------------


def _peak_rows() -> list[dict[str, str]]:
    text = resources.files("sqabench").joinpath("data/gpu_peaks.csv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def _rates_of(row: dict[str, str], dtype: str) -> Rates:
    tflops = row.get(f"{get_dtype(dtype).name}_tflops") or ""
    exp = int(row["sms"]) * 16 * float(row["clock_mhz"]) * 1e6 if row["sms"] and row["clock_mhz"] else None
    return Rates(
        matmul_flops=float(tflops) * 1e12 if tflops else None,
        exp_per_s=exp,
        bytes_per_s=float(row["bandwidth_gbs"]) * 1e9 if row["bandwidth_gbs"] else None,
    )


def peaks_for(gpu_name: str, dtype: str) -> tuple[str, Rates] | None:
    """(published name, peak rates) of the GPU whose name matches, or None (a CPU, an unlisted GPU)."""
    if not gpu_name:
        return None
    for row in _peak_rows():
        if re.search(row["pattern"], gpu_name, re.IGNORECASE):
            return row["name"], _rates_of(row, dtype)
    return None


def published_gpu(name: str, dtype: str) -> tuple[str, Rates]:
    """The published peaks of a GPU named as in the table ('H100 SXM', 'A100 40GB'...); exit 2 if unknown."""
    from sqabench.errors import ConfigError

    rows = _peak_rows()
    wanted = name.lower().replace("-", " ")
    for row in rows:
        if wanted in row["name"].lower() or re.search(row["pattern"], name, re.IGNORECASE):
            rates = _rates_of(row, dtype)
            if None in (rates.matmul_flops, rates.exp_per_s, rates.bytes_per_s):
                raise ConfigError(f"{row['name']}: the table lacks a published {dtype} or exp rate for a floor")
            return row["name"], rates
    raise ConfigError(f"unknown GPU {name!r}; choose one of: {', '.join(r['name'] for r in rows)}")


def floor_records(preset, lengths, rates: Rates, dtype: str, mode: str, causal: bool, tokens: int) -> list[dict]:
    """Per variant and length: each limit's time and the floor, from the cost model and ``rates``."""
    from sqabench.cells import batch_for
    from sqabench.flops import step_cost
    from sqabench.variants import FAMILY, get_variant

    records = []
    for name in FAMILY:
        spec = get_variant(name, preset.n_heads)
        for n in lengths:
            batch = batch_for(n, tokens)
            cost = step_cost(spec, preset, batch, n, causal, mode, dtype)
            f = floor(cost.flops, cost.exps, cost.min_bytes, rates)
            records.append({"variant": name, "seq_len": n, "batch": batch, **f.terms_ms, "floor_ms": f.floor_ms,
                            "bound": f.bound})  # fmt: skip
    return records


# --- measuring ---------------------------------------------------------------------------------


def _best_seconds(fn, device: torch.device, budget_s: float, max_repeats: int = 50) -> tuple[float, int]:
    """The fastest of repeated synchronized calls, spending about ``budget_s``; (seconds, repeats)."""
    fn()  # warm-up (and compile)
    synchronize(device)
    best, count, start = math.inf, 0, time.perf_counter()
    while count < max_repeats and (count < 3 or time.perf_counter() - start < budget_s):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            seconds = begin.elapsed_time(end) / 1e3
        else:
            t = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t
        best, count = min(best, seconds), count + 1
    return best, count


def _matmul(device: torch.device, dtype_name: str, budget: float) -> tuple[float, str]:
    dtype = get_dtype(dtype_name).torch
    sizes = (4096, 8192) if device.type == "cuda" else (512, 1024, 2048)
    best_rate, notes = 0.0, []
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds, count = _best_seconds(lambda: a @ b, device, budget / len(sizes))
        rate = 2 * n**3 / seconds
        best_rate = max(best_rate, rate)
        notes.append(f"{n}^3 x{count}")
    return best_rate, f"a @ b, {dtype_name} square, best repeat of {', '.join(notes)}"


def _exp_chain(x: torch.Tensor) -> torch.Tensor:
    """EXP_CHAIN independent exponentials per element, summed: fused, they bind on the exp unit."""
    total = torch.exp(x)
    for i in range(1, EXP_CHAIN):
        total = total + torch.exp(x * (1.0 - i / (2 * EXP_CHAIN)))  # independent: no serial dependency
    return total


def _exp(device: torch.device, budget: float) -> tuple[float, str]:
    n = 2**26 if device.type == "cuda" else 2**20
    x = torch.rand(n, device=device, dtype=torch.float32)
    try:
        chain = torch.compile(_exp_chain, dynamic=False)
        seconds, count = _best_seconds(lambda: chain(x), device, budget)
        return (
            EXP_CHAIN * n / seconds,
            f"compiled sum of {EXP_CHAIN} fp32 exp per element over {n} elements, best of {count}",
        )
    except RuntimeError as err:  # no compiler on this machine: in-place exp, bounded by memory traffic
        seconds, count = _best_seconds(lambda: torch.exp_(x.neg_()), device, budget)
        return n / seconds, f"eager in-place exp over {n} elements, best of {count} (compile failed: {err})"


def _bandwidth(device: torch.device, budget: float) -> tuple[float, str]:
    n = 2**28 if device.type == "cuda" else 2**25  # 1 GiB or 128 MiB of fp32 each
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    seconds, count = _best_seconds(lambda: dst.copy_(src), device, budget)
    nbytes = src.numel() * src.element_size()
    return 2 * nbytes / seconds, f"copy_ of {nbytes / 2**20:.0f} MiB (read + write), best of {count}"


def measure_ceilings(device: torch.device, dtype: str, budget_s: float = 1.0) -> Ceilings:
    """Measure the three rates on ``device`` now (about ``budget_s`` each, plus one compile)."""
    matmul, matmul_how = _matmul(device, dtype, budget_s)
    exp, exp_how = _exp(device, budget_s)
    bandwidth, bandwidth_how = _bandwidth(device, budget_s)
    return Ceilings(
        key="",
        rates=Rates(matmul, exp, bandwidth),
        methods={"matmul": matmul_how, "exp": exp_how, "memory": bandwidth_how},
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


# --- the cache ---------------------------------------------------------------------------------


def cache_path() -> Path:
    root = os.environ.get("SQABENCH_CACHE_DIR") or Path.home() / ".cache" / "sqabench"
    return Path(root) / "ceilings.json"


def cache_key(env: Environment, dtype: str) -> str:
    """What the rates depend on: the device, its driver, the software and the thread count."""
    device = env.gpu_name or env.cpu_model or "cpu"
    return f"{env.device}|{device}|{env.driver_version}|torch {env.torch_version}|threads {env.torch_threads}|{dtype}"


def _load_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # absent or unreadable: measure again


def get_ceilings(device: torch.device, env: Environment, dtype: str, refresh: bool = False) -> tuple[Ceilings, bool]:
    """The cached ceilings of this device and software, measured now if absent; (ceilings, was cached)."""
    key, path = cache_key(env, dtype), cache_path()
    cache = _load_cache(path)
    if key in cache and not refresh:
        entry = cache[key]
        return Ceilings(key, Rates(**entry["rates"]), entry["methods"], entry["measured_at"]), True
    measured = measure_ceilings(device, dtype)
    result = Ceilings(key, measured.rates, measured.methods, measured.measured_at)
    cache[key] = {"rates": asdict(result.rates), "methods": result.methods, "measured_at": result.measured_at}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only home: the ceilings still serve this run
    return result, False
