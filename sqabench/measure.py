"""Devices, timing (CUDA events on a GPU, the wall clock on a CPU), memory peaks, NVML readings.

Timing comes in two calls: ``time_first_call`` for the first step (compilation and block-mask
building, reported apart as compile time), then ``time_repeats``: warm-up calls, then each repeat
timed on its own; ``Timing`` reports their median and spread.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sqabench.errors import ConfigError
from sqabench.results import Environment, git_sha


@dataclass(frozen=True)
class Timing:
    compile_ms: float  # the first call: compilation and mask building included
    samples_ms: tuple[float, ...]  # one per timed repeat

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_first_call(step: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one synchronized call, by the wall clock (it may compile)."""
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def time_repeats(
    step: Callable[[], object], device: torch.device, warmup: int, repeats: int
) -> tuple[float, ...]:
    """``warmup`` untimed calls, then ``repeats`` calls timed one by one, in milliseconds."""
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return tuple(start.elapsed_time(end) for start, end in events)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1e3)
    return tuple(samples)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cuda`` or ``cpu``; a missing GPU is a usage error."""
    if name not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"unknown device {name!r}; choose one of: auto, cuda, cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but torch sees no CUDA GPU on this machine; use --device cpu or auto")
    return torch.device(name)


def check_dtype_runs(device: torch.device, dtype: torch.dtype, name: str) -> None:
    """Fail early, as a usage error, when the device cannot compute in ``dtype``."""
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU cannot run bf16; choose --dtype fp16 or fp32")
    try:
        x = torch.ones(8, 8, device=device, dtype=dtype)
        torch.nn.functional.scaled_dot_product_attention(x[None, None], x[None, None], x[None, None])
    except RuntimeError as err:
        raise ConfigError(f"--dtype {name} cannot run on {device.type}: {str(err).splitlines()[0]}") from None


# --- memory ------------------------------------------------------------------------------------


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int | None, int | None]:
    """(max allocated, max reserved) bytes since the last reset; None on a CPU."""
    if device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --- NVML and the environment ------------------------------------------------------------------


def nvml_reading(device: torch.device) -> dict[str, float | int | str]:
    """Used memory, SM clock, temperature, power and driver of the GPU from NVML; {} when unavailable."""
    if device.type != "cuda":
        return {}
    try:
        import pynvml  # from the nvidia-ml-py package
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return {}
    try:
        handle = _nvml_handle(pynvml, device)
        return {
            "nvml_used_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).used),
            "sm_clock_mhz": int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)),
            "temperature_c": int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
            "power_w": round(pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, 1),
            "driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
        }
    except pynvml.NVMLError:
        return {}
    finally:
        pynvml.nvmlShutdown()


def _nvml_handle(pynvml, device: torch.device):
    """The NVML handle of this torch device, matched by UUID (CUDA and NVML may number GPUs apart)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except pynvml.NVMLError:
            pass
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def environment(device: torch.device) -> Environment:
    """The software and hardware a run measures on."""
    triton = ""
    try:
        import triton as _triton

        triton = _triton.__version__
    except ImportError:
        pass
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if device.type != "cuda":
        return Environment(device="cpu", triton_version=triton, git_sha=git_sha(), nvml="no GPU")
    reading = nvml_reading(device)
    return Environment(
        device=str(device),
        gpu_name=torch.cuda.get_device_name(device),
        driver_version=str(reading.get("driver_version", "")),
        cuda_version=torch.version.cuda or "",
        cudnn_version=str(cudnn or ""),
        triton_version=triton,
        git_sha=git_sha(),
        nvml="ok" if reading else "unavailable",
    )
