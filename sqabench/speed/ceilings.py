"""What this device can do: the three rates the cost model's floor needs, measured the way cells compute.

A step cannot run faster than its FLOPs at the best matmul rate, its softmax exponentials at the
best exponential rate, or its minimum bytes at the best copy bandwidth. A ceiling that is too low
makes a floor too high and an efficiency too good (above 1, impossible), so every rate is the
best of several ways the cells may compute and of several repeats (load only ever slows a repeat):

- matmul: ``a @ b`` and ``F.linear(a, b)`` (what the model's layers call) in the run's dtype at a
  few sizes, 2n^3 FLOPs per product; for a 16-bit dtype also fp32, which a kernel that upcasts
  (CPU attention, say) runs at;
- exponentials: 32 independent ``exp2`` per element of an fp32 tensor, summed, compiled into one
  kernel with fast math, as attention kernels get them (on a GPU: the special-function units'
  ``ex2``); the plain compiled ``exp`` too, the better kept;
- bandwidth: ``dst.copy_(src)`` of tensors far larger than the caches, 2 x bytes per copy.

Results are cached per device, driver, software, thread count, dtype and method (``ceilings.json`` in
sqabench's cache folder: ``sqabench.files.cache_dir``). A cached entry records when and how often it
was measured and keeps the best of its measurements; it is measured again when it is older than
``MAX_AGE_DAYS``, or when a quick probe of matmul and bandwidth runs faster than the cache says
(the cache was measured on a loaded machine).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from sqabench.device import best_time
from sqabench.dtypes import get_dtype
from sqabench.environment import Environment
from sqabench.files import cache_dir, write_text
from sqabench.flops import Rates

EXP_CHAIN = 32
METHOD = 2  # bump when a measurement method changes: older cache entries are then measured again
MAX_AGE_DAYS = 7.0
PROBE_GAIN = 1.25  # a probe this much faster than the cached rate means the cache was measured under load


@dataclass(frozen=True)
class Ceilings:
    """The measured rates of one device in one dtype, with how, when and how often they were measured."""

    key: str
    rates: Rates
    methods: dict[str, str]
    measured_at: str  # UTC, ISO, of the latest measurement
    measurements: int = 1  # the rates are the best over this many

    def age_days(self, now: datetime | None = None) -> float:
        when = datetime.fromisoformat(self.measured_at)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return ((now or datetime.now(timezone.utc)) - when).total_seconds() / 86400


@dataclass(frozen=True)
class DeviceLimits:
    """What a sweep's rows are held to: the measured ceilings and, for a listed GPU, its published peaks."""

    measured: Rates | None = None
    peak: Rates | None = None
    link_bytes_per_s: float | None = None  # context parallelism: what a rank receives per second in an all-gather


# --- measuring ---------------------------------------------------------------------------------


MATMUL_WAYS = {"a @ b": lambda a, b: a @ b, "F.linear(a, b)": F.linear}  # F.linear: what the layers call


def _matmul(device: torch.device, dtype_name: str, budget: float) -> tuple[float, str]:
    """The best of a @ b and F.linear(a, b) at a few sizes, in the dtype (and fp32 for a 16-bit dtype)."""
    sizes = (4096, 8192) if device.type == "cuda" else (512, 1024, 2048)
    names = [dtype_name] + (["fp32"] if get_dtype(dtype_name).bytes == 2 else [])
    ways = MATMUL_WAYS
    tries = [(n, name, way) for name in names for n in sizes for way in ways]
    share = budget / len(tries)
    best_rate, best_how, too_slow = 0.0, "", {}
    for n, name, way in tries:
        if n > too_slow.get((name, way), n):
            continue  # a smaller product already took past its share: a larger one would take far longer
        dtype = get_dtype(name).torch
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        ms, count = best_time(lambda way=way, a=a, b=b: ways[way](a, b), device, share)
        if ms / 1e3 > share:
            too_slow[(name, way)] = n
        rate = 2 * n**3 / (ms / 1e3)
        if rate > best_rate:
            best_rate, best_how = rate, f"{way}, {name} {n}^3, best of {count}"
    skipped = [f"{way} in {name} above {n}" for (name, way), n in too_slow.items() if n < sizes[-1]]
    tried = f"{' and '.join(ways)} in {' and '.join(names)} at {', '.join(map(str, sizes))}"
    return best_rate, f"{best_how} (tried {tried}" + (f"; too slow for more: {', '.join(skipped)})" if skipped else ")")


def _exp_chain(x: torch.Tensor, exp) -> torch.Tensor:
    """EXP_CHAIN independent exponentials per element, summed: fused, they bind on the exp unit."""
    total = exp(x)
    for i in range(1, EXP_CHAIN):
        total = total + exp(x * (1.0 - i / (2 * EXP_CHAIN)))  # independent: no serial dependency
    return total


def _exp(device: torch.device, budget: float) -> tuple[float, str]:
    """The best of compiled exp2 and exp chains with fast math; eager exp when nothing compiles."""
    import torch._inductor.config as inductor

    n = 2**26 if device.type == "cuda" else 2**20
    x = torch.rand(n, device=device, dtype=torch.float32)
    fast = {"use_fast_math": True} if hasattr(inductor, "use_fast_math") else {}
    best, how, failures = 0.0, "", []
    for name, exp in (("exp2", torch.exp2), ("exp", torch.exp)):
        try:
            with inductor.patch(fast):
                chain = torch.compile(lambda t, exp=exp: _exp_chain(t, exp), dynamic=False)
                ms, count = best_time(lambda chain=chain: chain(x), device, budget / 2)
        except RuntimeError as err:  # no compiler on this machine
            failures.append(f"{name}: {str(err).splitlines()[0][:80]}")
            continue
        rate = EXP_CHAIN * n / (ms / 1e3)
        if rate > best:
            math_mode = ", fast math" if fast else ""
            best = rate
            how = f"compiled sum of {EXP_CHAIN} fp32 {name} per element{math_mode}, {n} elements, best of {count}"
    if best == 0.0:  # in-place exp, bounded by memory traffic: a low ceiling, said so
        ms, count = best_time(lambda: torch.exp_(x.neg_()), device, budget)
        why = "; ".join(failures)
        return n / (ms / 1e3), f"eager in-place exp over {n} elements, best of {count} (compile failed: {why})"
    return best, how


def _bandwidth(device: torch.device, budget: float) -> tuple[float, str]:
    n = 2**28 if device.type == "cuda" else 2**25  # 1 GiB or 128 MiB of fp32 each
    src = torch.full((n,), 1.0, device=device)  # what it holds does not matter; filling it is cheaper than random
    dst = torch.empty_like(src)
    ms, count = best_time(lambda: dst.copy_(src), device, budget)
    nbytes = src.numel() * src.element_size()
    return 2 * nbytes / (ms / 1e3), f"copy_ of {nbytes / 2**20:.0f} MiB (read + write), best of {count}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def measure_ceilings(device: torch.device, dtype: str, budget_s: float = 1.0) -> Ceilings:
    """Measure the three rates on ``device`` now (about ``budget_s`` each, plus two compiles)."""
    matmul, matmul_how = _matmul(device, dtype, budget_s)
    exp, exp_how = _exp(device, budget_s)
    bandwidth, bandwidth_how = _bandwidth(device, budget_s)
    return Ceilings(
        key="",
        rates=Rates(matmul, exp, bandwidth),
        methods={"matmul": matmul_how, "exp": exp_how, "memory": bandwidth_how},
        measured_at=_now(),
    )


def probe(device: torch.device, dtype: str) -> Rates:
    """A quick look (a fraction of a second) at matmul and bandwidth: is the machine as fast as cached?"""
    n = 1024 if device.type == "cpu" else 4096
    a = torch.randn(n, n, device=device, dtype=get_dtype(dtype).torch)
    ms, _ = best_time(lambda: F.linear(a, a), device, 0.1, max_repeats=5)
    bandwidth, _ = _bandwidth(device, 0.1)  # the same size as the measurement: caches must not flatter it
    return Rates(matmul_flops=2 * n**3 / (ms / 1e3), bytes_per_s=bandwidth)


def best_of(old: Ceilings, new: Ceilings) -> Ceilings:
    """Each rate the higher of two measurements (with its method), the later time, the count summed."""
    rates, methods = {}, dict(old.methods)
    for field, limit in (("matmul_flops", "matmul"), ("exp_per_s", "exp"), ("bytes_per_s", "memory")):
        a, b = getattr(old.rates, field), getattr(new.rates, field)
        rates[field] = max(v for v in (a, b) if v is not None) if (a, b) != (None, None) else None
        if b is not None and (a is None or b > a):
            methods[limit] = new.methods.get(limit, "")
    return Ceilings(old.key, Rates(**rates), methods, max(old.measured_at, new.measured_at),
                    old.measurements + new.measurements)  # fmt: skip


# --- the cache ---------------------------------------------------------------------------------


def cache_path() -> Path:
    return cache_dir() / "ceilings.json"


def cache_key(env: Environment, dtype: str) -> str:
    """What the rates depend on: the device, its driver, the software, the thread count and the method."""
    device = env.gpu_name or env.cpu_model or "cpu"
    return (
        f"{env.device}|{device}|{env.driver_version}|torch {env.torch_version}|threads {env.torch_threads}|"
        f"{dtype}|method {METHOD}"
    )


def _load_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # absent or unreadable: measure again
    return cache if isinstance(cache, dict) else {}


def _entry(key: str, entry: dict) -> Ceilings | None:
    try:
        return Ceilings(key, Rates(**entry["rates"]), dict(entry["methods"]), str(entry["measured_at"]),
                        int(entry.get("measurements", 1)))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Lookup:
    """The ceilings a run uses, and why: ``cached``, or measured now and for what reason."""

    ceilings: Ceilings
    cached: bool
    reason: str  # why it was measured now, or what the probe saw of a cached entry


MEASURE_S = 10  # about how long measure_ceilings takes (three rates of about a second each, and two compiles)


def announcement(device: torch.device, dtype: str, reason: str) -> str:
    """What is about to be measured, why, and about how long it takes: said before the silence."""
    text = (f"measuring this {'GPU' if device.type == 'cuda' else 'CPU'}'s ceilings in {dtype} ({reason}): matmul, "
            f"exponentials and memory bandwidth, about {MEASURE_S} s")  # fmt: skip
    if device.type == "cpu" and get_dtype(dtype).bytes == 2:
        text += f"; {dtype} is emulated on a CPU: its matmuls run far slower than fp32, and so will the cells"
    return text


def cached_ceilings(env: Environment, dtype: str) -> Ceilings | None:
    """What the cache holds for this device and dtype, as it is: nothing measured, nothing written (a dry run's)."""
    key = cache_key(env, dtype)
    cache = _load_cache(cache_path())
    return _entry(key, cache[key]) if key in cache else None


def get_ceilings(
    device: torch.device, env: Environment, dtype: str, refresh: bool = False,
    before: Callable[[str], object] = lambda text: None,
) -> Lookup:  # fmt: skip
    """This device's ceilings: cached when fresh and not beaten by a quick probe, else measured now and
    merged with the cached ones (the best of each rate kept: a ceiling can only be too low). ``before`` hears
    what is measured, and about how long it takes, before any measurement starts (the probe's included)."""
    key, path = cache_key(env, dtype), cache_path()
    cache = _load_cache(path)
    old = _entry(key, cache[key]) if key in cache else None
    reason = "asked to (--refresh)" if refresh else "none cached for this device and software"
    if old is not None and not refresh:
        age = old.age_days()
        if age > MAX_AGE_DAYS:
            reason = f"the cached ones are {age:.0f} days old"
        else:
            if device.type == "cpu" and get_dtype(dtype).bytes == 2:
                before(f"checking the cached {dtype} ceilings with a quick probe ({dtype} is emulated on a CPU: slow)")
            quick = probe(device, dtype)
            faster = [
                f"{name} {getattr(quick, field) / getattr(old.rates, field):.1f}x"
                for name, field in (("matmul", "matmul_flops"), ("memory", "bytes_per_s"))
                if getattr(old.rates, field) and getattr(quick, field) > PROBE_GAIN * getattr(old.rates, field)
            ]
            if not faster:
                return Lookup(old, True, "")
            reason = f"a quick probe ran faster than the cache ({', '.join(faster)}): it was measured under load"
    before(announcement(device, dtype, reason))
    measured = replace(measure_ceilings(device, dtype), key=key)
    result = best_of(old, measured) if old is not None else measured
    cache[key] = {"rates": asdict(result.rates), "methods": result.methods, "measured_at": result.measured_at,
                  "measurements": result.measurements}  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only home: the ceilings still serve this run
    return Lookup(result, False, reason)


def describe(lookup: Lookup) -> str:
    """When and how the ceilings were measured, for a run's header."""
    c = lookup.ceilings
    when = f"measured {c.measured_at}" + (f", best of {c.measurements} measurements" if c.measurements > 1 else "")
    if lookup.cached:
        return f"cached, {when}"
    return f"{when} now ({lookup.reason})"
