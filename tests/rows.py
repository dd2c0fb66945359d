"""Results files for tests, made by the code that makes real ones: ``plan``, ``classify``, ``to_row``."""

from pathlib import Path

import torch

import factories
from sqabench.environment import Environment
from sqabench.presets import PRESETS
from sqabench.speed.cells import Outcome, Timing
from sqabench.speed.results import results_writer
from sqabench.speed.sweep import classify, to_row

LENGTHS = (1024, 32768)
TIMES = {"mha": 10.0, "gqa": 9.0, "sqa": 5.0, "xsqa": 3.0}  # ms at 1k; x32 at 32k
H100 = "NVIDIA H100 80GB HBM3"
SPREAD = (0.995, 1.0, 1.005, 0.998, 1.002, 0.999, 1.001, 0.997, 1.003, 1.0)  # 1% spread, median 1.0


def write_run(
    path: Path,
    gpu=H100,
    scale=None,
    status=None,
    mem=None,
    drop=(),
    kernel=None,
    samples=None,
    throttle=None,
    mode="fwd",
    attn_mem=None,
    run_id="run",
    baseline="mha",
    clock=None,
) -> Path:
    """A results CSV of a GPU-like run: every variant of TIMES at two lengths, 10 repeats each.

    ``scale`` multiplies a cell's time (key (variant, n), or "*" for all); ``status`` makes a cell
    raise what a real failure raises ("oom", "error", "skipped"); ``mem`` scales peak memory and
    ``attn_mem`` the attention's own (which grows with the query heads: 0.1 GB per head);
    ``kernel`` names the kernel that ran per cell; ``samples`` replaces a cell's per-repeat factors;
    ``throttle`` sets the slowdown reasons NVML reported during a cell's window; ``baseline`` is the
    variant the run recorded (``sqabench run --baseline``; mha by default, as a run records it); ``clock`` sets
    a cell's median SM clock (MHz; 1980 by default).
    """
    scale, status, mem, kernel, samples = scale or {}, status or {}, mem or {}, kernel or {}, samples or {}
    attn_mem = attn_mem or {}
    throttle = throttle or {}
    clock = clock or {}
    env = Environment(device="cuda", gpu_name=gpu, torch_version="2.11.0", git_sha="abc", cpu_model="test")
    cells = factories.cells(
        ",".join(TIMES),
        LENGTHS,
        PRESETS["paper"],
        tokens=131072,
        dtype="bf16",
        mode=mode,
        device="cuda",
        warmup=2,
        repeats=10,
        new_tokens=32,
    )
    writer = results_writer(path)
    for cell in cells:
        at = (cell.spec.name, cell.seq_len)
        if at in drop:
            continue
        t = TIMES[cell.spec.name] * cell.seq_len / 1024 * scale.get(at, scale.get("*", 1.0))

        failure = {
            "oom": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB"),
            "error": RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
            "skipped": NotImplementedError("no kernel for this case"),
        }.get(status.get(at))
        if failure is not None:
            outcome = Outcome.failed(classify(failure))  # what run_cell makes of the exception a real run raises
        else:
            peak = int(1e9 * mem.get(at, 1.0))
            outcome = Outcome(
                kernel=kernel.get(at, "sdpa-flash"), verify_rel_err=3e-3,
                timing=Timing(900.0, tuple(t * f for f in samples.get(at, SPREAD))), peak=(peak, peak),
                readings={"throttle": throttle.get(at, ""), "sm_clock_median_mhz": clock.get(at, 1980),
                          "attn_mem_bytes": int(1e8 * cell.spec.n_q_heads * attn_mem.get(at, 1.0))},
            )  # fmt: skip
        writer.write(to_row(cell, outcome, env, run_id, baseline=baseline))
    return path
