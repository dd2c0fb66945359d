"""Measuring one cell with its sequence split across the ranks of a context-parallel job.

Every rank builds the same model (same seed) and the same tokens, keeps its contiguous share of
the sequence (with that share's RoPE positions), and runs the model with ``cp.split_model``'s
attention. Before timing, each rank's output on sampled rows of its share is held to the
single-process fp64 reference over the whole sequence; the worst error over the ranks decides,
on every rank at once. Each timed repeat starts after a barrier; a repeat's time is the slowest
rank's. Peak memory is the largest over the ranks.

Ranks report their outcome through the job's store, not a collective, so that a rank whose step
failed cannot mismatch the collectives the others are in: they time out instead (``--cp-timeout``),
report that, and the cell's row takes the worst status (``oom`` on any rank makes the cell
``oom``), naming the rank. A cell that failed inside the split step leaves the process group
unusable, so the sweep stops after its row.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist

from sqabench.attention import rope_tables
from sqabench.device import evictor, no_compile, peak_memory, reset_peak_memory, time_first_call, time_repeats
from sqabench.dtypes import get_dtype
from sqabench.encoder import build_encoder
from sqabench.failures import MEASURE_ERRORS, classify
from sqabench.speed.cells import Cell, Outcome, Timing, stop_rule
from sqabench.speed.cp import PATH, Group, split_model
from sqabench.verify import KernelVerifyFailed, reference_rows, sample_rows

WORST = ("oom", "error", "skipped", "ok")  # the cell takes the first of these any rank reports


def _local(cell: Cell, phase: Callable[[str], None], group: Group) -> Outcome:
    device = group.device
    phase("build")
    reset_peak_memory(device)
    dtype = get_dtype(cell.settings.dtype).torch
    model = build_encoder(cell.spec, cell.preset, "flex", cell.settings.causal, device, dtype)
    split_model(model, group, cell.seq_len)
    generator = torch.Generator(device=device).manual_seed(0)  # the same tokens on every rank
    tokens = torch.randint(0, cell.preset.vocab_size, (cell.batch, cell.seq_len), generator=generator, device=device)
    local_tokens, positions = group.local(tokens, dim=1), group.positions(cell.seq_len)

    def step() -> None:
        with torch.inference_mode():
            model(local_tokens, positions)

    phase("compile")
    compile_ms = time_first_call(step, device, before=dist.barrier)
    phase("verify")
    err = verify_split(model.blocks[0].attn, cell, group)
    reset_peak_memory(device)
    with no_compile():  # as on one process: a compile here would be timed as a step
        phase("warm-up")
        for _ in range(cell.settings.warmup):
            step()
        phase("timing")
        evict = evictor(device) if cell.settings.cache == "cold" else None

        def ready() -> None:  # each rank's cache evicted (--cache cold), then every rank starts together
            if evict is not None:
                evict()
            dist.barrier()

        # --repeats auto: every rank must stop together, so a split cell times the rule's minimum, fixed
        repeats = cell.settings.repeats or stop_rule(cell.settings).min_repeats
        samples = time_repeats(step, device, repeats, before_each=ready)
    return Outcome(kernel=f"cp-{PATH}", verify_rel_err=err, timing=Timing(compile_ms, samples),
                   peak=peak_memory(device))  # fmt: skip


def verify_split(layer, cell: Cell, group: Group) -> float:
    """This rank's attention output on sampled rows of its share against the fp64 reference over the
    whole sequence; the worst over the ranks, raising on every rank past the dtype's tolerance."""
    device, dtype = group.device, layer.wq.weight.dtype
    generator = torch.Generator(device=device).manual_seed(1)  # the same hidden states on every rank
    x = torch.randn(cell.batch, cell.seq_len, layer.wq.weight.shape[1], generator=generator, device=device,
                    dtype=dtype)  # fmt: skip
    rope = rope_tables(cell.seq_len, layer.head_dim, cell.preset.rope_base, device, dtype)
    start, stop = group.shard(cell.seq_len)
    with torch.inference_mode():
        q, k, v = layer.qkv(x, rope)  # (B, H, N, Dh) of the whole sequence
        local = [group.local(t, dim=2) for t in (q, k, v)]
        out = layer.kernel(*local)  # this rank's rows; the kernel gathers the other shares' K/V
        rows = sample_rows(stop - start, seed=group.rank)
        picked = sorted({0, cell.batch - 1})
        ref = reference_rows(local[0][picked][:, :, rows.to(device)], k[picked], v[picked], rows + start,
                             layer.spec.window, layer.causal)  # fmt: skip
        got = out[picked][:, :, rows.to(device)].double()
        err = float((got - ref).norm() / ref.norm())
    worst = torch.tensor([err if math.isfinite(err) else math.inf], device=device, dtype=torch.float64)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    err = float(worst)
    tolerance = get_dtype(cell.settings.dtype).tolerance
    if not err <= tolerance:
        raise KernelVerifyFailed(
            f"cp-{PATH} output disagrees with the fp64 reference: rel err {err:.2e} > {tolerance:.0e}"
        )
    return err


def measure_split(cell: Cell, phase: Callable[[str], None], group: Group, key: str) -> Outcome:
    """Measure ``cell`` on every rank; every rank returns the same, combined outcome."""
    try:
        local = _local(cell, phase, group)
    except MEASURE_ERRORS as err:
        local = Outcome.failed(classify(err))
    group.post(f"{key}/{group.rank}", {
        "status": local.status, "error": local.error, "kernel": local.kernel, "verify": local.verify_rel_err,
        "compile_ms": local.timing.compile_ms if local.timing else None,
        "samples": list(local.timing.samples_ms) if local.timing else None,
        "peak": list(local.peak),
    })  # fmt: skip
    return combine(group.collect(key))


def combine(reports: list[dict]) -> Outcome:
    """One outcome from every rank's report: the worst status (naming the rank), else the slowest times."""
    for status in WORST[:-1]:
        failed = [(rank, r) for rank, r in enumerate(reports) if r["status"] == status]
        if failed:
            rank, report = failed[0]
            return Outcome(status=status, error=f"rank {rank}: {report['error']}", fatal=status != "skipped")
    samples = tuple(max(values) for values in zip(*(r["samples"] for r in reports)))
    peaks = [r["peak"] for r in reports]
    peak = tuple(max(p[i] for p in peaks) if peaks[0][i] is not None else None for i in range(2))
    return Outcome(
        kernel=reports[0]["kernel"],
        verify_rel_err=max(r["verify"] for r in reports),
        timing=Timing(max(r["compile_ms"] for r in reports), samples),
        peak=peak,
    )
