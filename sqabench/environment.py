"""Where the numbers come from: the ``Environment`` record, git commit, host label and NVML.

Every row carries the same fields ``sqabench env`` prints: device, GPU, driver, CUDA, cuDNN,
triton, torch and sqabench versions, the commit, the host CPU and torch's thread count (the host
matters for launch-bound cells, on a GPU too). NVML (the ``nvidia-ml-py`` package, imported as
``pynvml``) adds readings of the GPU; without it or without a GPU those fields stay empty.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqabench.version import __version__

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Environment:
    """The same fields in every row and in ``sqabench env``."""

    device: str
    gpu_name: str = ""
    driver_version: str = ""
    cuda_version: str = ""
    cudnn_version: str = ""
    triton_version: str = ""
    torch_version: str = ""
    sqabench_version: str = __version__
    git_sha: str = ""
    cpu_model: str = ""
    torch_threads: int | None = None
    nvml: str = "not used"

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        row.pop("nvml")
        return row


def git_sha() -> str:
    """Short commit of the sqabench checkout, with ``-dirty`` for uncommitted changes; empty if none."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if sha.returncode:
            return ""
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=here, capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha.stdout.strip() + ("-dirty" if dirty.returncode else "")


def cpu_model() -> str:
    """The host CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_IMPORTED = time.monotonic()


STARTED_ENV = "SQABENCH_STARTED"  # a --cp job's launching command: its start (epoch seconds), for the ranks


def process_age_s() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere: since sqabench was imported); in a
    rank of a ``--cp`` job, since the command that launched it started (the launcher's start counts)."""
    launched = os.environ.get(STARTED_ENV)
    if launched:
        try:
            return max(0.0, time.time() - float(launched))
        except ValueError:
            pass
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def host_label(env: Environment) -> str:
    """A file-name-safe device label: the GPU's name, or ``cpu-<model>`` (the CPU the tables name, e.g.
    ``cpu-amd-epyc``; the machine's architecture when the model is unknown)."""
    name = env.gpu_name or f"cpu-{env.cpu_model or platform.machine()}"
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")


# --- NVML ------------------------------------------------------------------------------------------


def nvml_module():
    """The ``pynvml`` module (from nvidia-ml-py), initialised; None without it or without a driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


def nvml_handle(pynvml, device: "torch.device"):
    """The NVML handle of this torch device, matched by UUID (CUDA and NVML may number GPUs apart)."""
    import torch

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


def clock_lock(device: "torch.device") -> tuple[bool | None, str]:
    """Whether the GPU's SM clock is locked (NVML's application clock set away from its default, as
    ``nvidia-smi -ac`` does): (True, False or None when NVML cannot say, the sentence that says it)."""
    if device.type != "cuda":
        return None, "no GPU"
    pynvml = nvml_module()
    if pynvml is None:
        return None, "unknown (no NVML)"
    try:
        handle = nvml_handle(pynvml, device)
        now = pynvml.nvmlDeviceGetApplicationsClock(handle, pynvml.NVML_CLOCK_SM)
        default = pynvml.nvmlDeviceGetDefaultApplicationsClock(handle, pynvml.NVML_CLOCK_SM)
    except (pynvml.NVMLError, AttributeError):
        return None, "unknown (NVML does not report the application clocks)"
    finally:
        pynvml.nvmlShutdown()
    if now != default:
        return True, f"locked: application SM clock {now} MHz (its default {default} MHz)"
    return False, (f"not locked: application SM clock {now} MHz, its default; times follow the boost clock "
                   "(check compares in cycle space: time x SM clock)")  # fmt: skip


def nvml_reading(device: "torch.device") -> dict[str, object]:
    """Used memory and driver of the GPU from NVML; {} when unavailable."""
    if device.type != "cuda":
        return {}
    pynvml = nvml_module()
    if pynvml is None:
        return {}
    try:
        handle = nvml_handle(pynvml, device)
        return {
            "nvml_used_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).used),
            "driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
        }
    except pynvml.NVMLError:
        return {}
    finally:
        pynvml.nvmlShutdown()


def environment(device: "torch.device") -> Environment:
    """The software and hardware a run measures on."""
    import torch

    triton = ""
    try:
        import triton as _triton

        triton = _triton.__version__
    except ImportError:
        pass
    common = {
        "triton_version": triton,
        "torch_version": torch.__version__,
        "git_sha": git_sha(),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type != "cuda":
        return Environment(device="cpu", nvml="no GPU", **common)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    reading = nvml_reading(device)
    return Environment(
        device=str(device),
        gpu_name=torch.cuda.get_device_name(device),
        driver_version=str(reading.get("driver_version", "")),
        cuda_version=torch.version.cuda or "",
        cudnn_version=str(cudnn or ""),
        nvml="ok" if reading else "unavailable",
        **common,
    )
