"""The device and its clock: which device, whether it runs a dtype, synchronizing, timing, memory peaks.

Every timing loop in sqabench goes through ``time_first_call`` (one call that may compile, by the
wall clock), ``time_repeats`` (each call timed on its own: a pair of CUDA events on a GPU, the wall
clock on a CPU; an optional hook before each, such as a barrier between ranks) or ``best_time``
(repeats until a time budget is spent, the fastest kept: for ceilings).
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from sqabench.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cuda`` or ``cpu``; a missing GPU is a usage error.

    A rank of a torchrun job on CUDA takes its own GPU (``LOCAL_RANK``) before anything touches
    CUDA: otherwise every rank would open a context on GPU 0.
    """
    name = name.lower()
    if name not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"unknown device {name!r}; choose one of: auto, cuda, cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but torch sees no CUDA GPU on this machine; use --device cpu or auto")
    if name == "cuda" and "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device(name)


def validate_dtype(device: torch.device, dtype: torch.dtype, name: str) -> None:
    """Fail early, as a usage error, when the device cannot compute in ``dtype``."""
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU cannot run bf16; choose --dtype fp16 or fp32")
    try:
        x = torch.ones(8, 8, device=device, dtype=dtype)
        F.scaled_dot_product_attention(x[None, None], x[None, None], x[None, None])
    except RuntimeError as err:
        raise ConfigError(f"--dtype {name} cannot run on {device.type}: {str(err).splitlines()[0]}") from None


# --- the clock -----------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_first_call(
    step: Callable[[], object], device: torch.device, before: Callable[[], object] | None = None
) -> float:
    """Milliseconds of one synchronized call, by the wall clock (it may compile); ``before`` runs first."""
    if before is not None:
        before()
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def time_repeats(
    step: Callable[[], object],
    device: torch.device,
    repeats: int,
    before_each: Callable[[], object] | None = None,
) -> tuple[float, ...]:
    """``repeats`` calls timed one by one, in milliseconds: a pair of CUDA events each on a GPU.

    ``before_each`` (a barrier between ranks, say) runs before each repeat, outside its time; the
    device is then synchronized, so that each repeat starts from an idle device.
    """
    synchronize(device)
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            if before_each is not None:
                before_each()
                synchronize(device)
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return tuple(start.elapsed_time(end) for start, end in events)
    samples = []
    for _ in range(repeats):
        if before_each is not None:
            before_each()
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1e3)
    return tuple(samples)


def graph_replays(step: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, ...]:
    """``step`` captured in a CUDA graph (after three calls on a side stream, as torch's docs warm a capture),
    its replays timed between CUDA events: the kernels' time without the host's launches."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return time_repeats(graph.replay, device, repeats)


FALLBACK_CACHE_BYTES = 32 * 2**20  # a last-level cache this machine does not report: a common server size


def cache_bytes(device: torch.device) -> int:
    """The last-level cache a timed call could find warm: a GPU's L2 (its properties), a CPU's largest cache
    (Linux's sysfs; ``FALLBACK_CACHE_BYTES`` where it says nothing)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).L2_cache_size)
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = entry.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in "KMG" else text
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=FALLBACK_CACHE_BYTES)


def evictor(device: torch.device) -> Callable[[], object]:
    """What ``--cache cold`` runs before each timed repeat, outside its time: a write of twice the cache
    (triton's ``do_bench`` zeroes a buffer the same way), so that no repeat finds the last one's data."""
    buffer = torch.empty(2 * cache_bytes(device), dtype=torch.uint8, device=device)

    def evict() -> None:
        buffer.add_(1)  # a read and a write of every byte: the cache holds this buffer, nothing of the step

    return evict


def best_time(
    step: Callable[[], object], device: torch.device, budget_s: float, max_repeats: int = 50
) -> tuple[float, int]:
    """The fastest of repeated calls after one warm-up, spending about ``budget_s``: (milliseconds, repeats).

    Load only ever slows a repeat down, so the fastest is the least disturbed.
    """
    step()  # warm-up (and compile)
    best, count, start = math.inf, 0, time.perf_counter()
    while count < max_repeats:
        best = min(best, *time_repeats(step, device, 1))
        count += 1
        spent = time.perf_counter() - start
        # At least 3 repeats, unless they would take far past the budget (a slow dtype): one then does.
        if spent >= budget_s and (count >= 3 or spent >= 3 * budget_s):
            break
    return best, count


@contextmanager
def no_compile() -> Iterator[None]:
    """Fail, rather than time, any compilation: everything must have compiled in the first call."""
    with torch.compiler.set_stance("fail_on_recompile"):
        yield


# --- memory --------------------------------------------------------------------------------------


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int | None, int | None]:
    """(max allocated, max reserved) bytes since the last reset; None on a CPU."""
    if device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)


def free_memory(device: torch.device, collect: bool = True) -> None:
    """Return the cell's memory: collect reference cycles (slow with torch loaded), empty the CUDA cache."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        try:
            torch.cuda.empty_cache()
        except RuntimeError:  # a sticky CUDA error: the sweep reports it and stops
            pass
