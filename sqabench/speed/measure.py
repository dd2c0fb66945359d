"""Measuring one cell: devices, the step, timing (CUDA events on a GPU, the wall clock on a CPU), memory.

``measure_cell`` builds the model, times the first call apart (compilation and block-mask
building: ``compile_ms``), verifies the kernel against fp64, resets the memory peaks, runs the
warm-up calls, then times each repeat on its own. Warm-up and timing run under the compiler stance
``fail_on_recompile``: a compile there would be timed as a step, so it fails the cell instead.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sqabench.attention import rope_tables
from sqabench.decode import Decoder, graphed
from sqabench.device import (
    evictor,
    free_memory,
    graph_replays,
    no_compile,
    peak_memory,
    reset_peak_memory,
    synchronize,
    time_first_call,
    time_repeats,
)  # fmt: skip
from sqabench.dtypes import get_dtype
from sqabench.encoder import build_block, build_encoder
from sqabench.environment import nvml_reading
from sqabench.failures import MEASURE_ERRORS, classify
from sqabench.kernels import KernelUnsupported
from sqabench.settle import time_until_settled
from sqabench.speed.cells import BEST_BRIEF, Cell, Outcome, Timing, stop_rule
from sqabench.speed.energy import energy_per_step, open_monitor
from sqabench.speed.profile import profile_step
from sqabench.verify import KernelVerifyFailed, Verification, verify_decode, verify_layer, verify_model

COMPILED_CHECK_LEN = 256  # a compiled model is verified whole, in fp64, on its first sequence's first tokens


# --- one cell --------------------------------------------------------------------------------------


@dataclass
class Workload:
    """What a cell times: ``first`` (compiles), ``verify``, then ``step`` for warm-up and the repeats.

    ``prepare`` runs once before the warm-up (decode: the timed prefill) and returns extra columns;
    ``attention_memory`` measures the attention's own memory at the cell's shape (after the timing).
    """

    first: Callable[[], object]
    verify: Callable[[], Verification]
    step: Callable[[], object]
    warmup_calls: int
    timed_calls: int
    tokens_per_call: int
    prepare: Callable[[], dict] | None = None
    attention_memory: Callable[[], int | None] = lambda: None
    calls_per_repeat: int = 1  # decode: a repeat is a pass of T one-token calls


def attention_memory(cell: Cell, attn, device: torch.device) -> Callable[[], int | None]:
    """The peak bytes of one layer's attention op alone at the cell's shape, on a GPU: q, k and v (in the
    layout the model hands its kernel), the output and the kernel's workspace, and in train the backward
    with its gradients. The model's peak is dominated by other tensors (the paper preset's logits:
    B x N x 10,000), so this is what can show what SQA changes in memory."""

    def measure() -> int | None:
        if device.type != "cuda":
            return None
        dtype, train = get_dtype(cell.settings.dtype).torch, cell.settings.mode == "train"
        spec, dh, (b, n) = cell.spec, attn.head_dim, (cell.batch, cell.seq_len)
        synchronize(device)
        reset_peak_memory(device)
        base = torch.cuda.memory_allocated(device)
        q = torch.randn(b, n, spec.n_q_heads, dh, device=device, dtype=dtype).transpose(1, 2)  # (B, Hq, N, Dh)
        k = torch.randn(b, n, spec.n_kv_heads, dh, device=device, dtype=dtype).transpose(1, 2)
        v = torch.randn(b, n, spec.n_kv_heads, dh, device=device, dtype=dtype).transpose(1, 2)
        if train:
            q, k, v = (t.requires_grad_() for t in (q, k, v))
            attn.kernel(q, k, v).sum().backward()
        else:
            with torch.inference_mode():
                attn.kernel(q, k, v)
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base

    return measure


def part_workload(cell: Cell, device: torch.device) -> Workload:
    """``--scope block`` (one layer on hidden states) or ``attention`` (the op alone on q, k, v).

    Train: forward and backward from a fixed random gradient of the output (inputs need gradients too).
    """
    dtype = get_dtype(cell.settings.dtype).torch
    block = build_block(cell.spec, cell.preset, cell.settings.kernel, cell.settings.causal, device, dtype)
    attn, train = block.attn, cell.settings.mode == "train"
    generator = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(cell.batch, cell.seq_len, cell.preset.d_model, generator=generator, device=device, dtype=dtype)
    rope = rope_tables(cell.seq_len, attn.head_dim, cell.preset.rope_base, device, dtype)
    if cell.settings.scope == "attention":
        with torch.no_grad():
            q, k, v = attn.qkv(x, rope)  # in the layouts the model hands its kernel
        inputs = [t.detach().requires_grad_(train) for t in (q, k, v)]

        def run() -> torch.Tensor:
            return attn.kernel(*inputs)

    else:
        x.requires_grad_(train)

        def run() -> torch.Tensor:
            return block(x, rope)

    grad = None

    def step() -> None:
        nonlocal grad
        if not train:
            with torch.inference_mode():
                run()
            return
        out = run()
        if grad is None:
            grad = torch.randn(out.shape, generator=generator, device=device, dtype=out.dtype)
        out.backward(grad)

    def verify() -> Verification:
        return verify_layer(attn, cell.batch, cell.seq_len, grad=train, rope_base=cell.preset.rope_base)

    return Workload(step, verify, step, cell.settings.warmup, cell.settings.repeats, cell.batch * cell.seq_len,
                    attention_memory=attention_memory(cell, attn, device))  # fmt: skip


def model_workload(cell: Cell, device: torch.device) -> Workload:
    """A forward under ``inference_mode``, or forward and backward of a cross-entropy loss."""
    if cell.settings.scope != "model":
        return part_workload(cell, device)
    model = build_encoder(
        cell.spec, cell.preset, cell.settings.kernel, cell.settings.causal, device, get_dtype(cell.settings.dtype).torch
    )
    run = (
        torch.compile(model, mode=cell.settings.compile) if cell.settings.compile else model
    )  # --compile: the whole model
    tokens = torch.randint(0, cell.preset.vocab_size, (cell.batch, cell.seq_len), device=device)
    if cell.settings.mode == "fwd":

        def step() -> None:
            with torch.inference_mode():
                run(tokens)

    else:
        targets = torch.randint(0, cell.preset.vocab_size, (cell.batch * cell.seq_len,), device=device)

        def step() -> None:
            model.zero_grad(set_to_none=True)
            logits = run(tokens)  # (B, N, V)
            F.cross_entropy(logits.flatten(0, 1), targets).backward()

    layer = model.blocks[0].attn

    def verify() -> Verification:
        train = cell.settings.mode == "train"
        checked = verify_layer(layer, cell.batch, cell.seq_len, grad=train, rope_base=cell.preset.rope_base)
        if not cell.settings.compile:
            return checked
        err = verify_model(run, model, tokens[:1, :COMPILED_CHECK_LEN])  # the compiled model itself, against fp64
        return dataclasses.replace(checked, rel_err=max(checked.rel_err, err))

    return Workload(step, verify, step, cell.settings.warmup, cell.settings.repeats, cell.batch * cell.seq_len,
                    attention_memory=attention_memory(cell, layer, device))  # fmt: skip


def decode_workload(cell: Cell, device: torch.device) -> Workload:
    """Prefill the context (timed apart), then one-token steps over the cache, each timed: ``new_tokens`` a pass."""
    model = build_encoder(
        cell.spec, cell.preset, cell.settings.kernel, True, device, get_dtype(cell.settings.dtype).torch
    )
    n, t = cell.seq_len, cell.settings.new_tokens
    tokens = torch.randint(0, cell.preset.vocab_size, (cell.batch, n + t), device=device)
    decoder = Decoder(model, cell.batch, n, t, cell.settings.kernel)
    state = {"step": decoder.looping_step(tokens[:, n:])}

    def first() -> None:
        with torch.inference_mode():
            decoder.prefill(tokens[:, :n])
            decoder.step(tokens[:, n : n + 1])

    def prefill() -> None:
        with torch.inference_mode():
            decoder.prefill(tokens[:, :n])

    def prepare() -> dict:
        prefill_ms = time_first_call(prefill, device)
        if cell.settings.cuda_graphs:
            with torch.inference_mode():
                state["step"] = graphed(decoder, tokens[:, n:])
        return {"prefill_ms": prefill_ms}

    def step() -> None:
        with torch.inference_mode():
            state["step"]()

    def verify() -> Verification:
        checked = verify_decode(model, cell.settings.kernel, cell.batch, n, t)
        ran = decoder.backend()  # at the cell's own shapes, not the check's smaller ones
        note = ""
        if ran == "sdpa-math" and cell.settings.kernel in ("auto", "sdpa"):
            note = "decode fell to SDPA's math backend (no fused kernel takes these shapes): it repeats K/V every step"
        return dataclasses.replace(checked, kernel=ran, note=note)

    def cache_memory() -> int | None:  # decode's attention memory is its cache: K and V of every layer
        return decoder.k.nbytes + decoder.v.nbytes if device.type == "cuda" else None

    return Workload(
        first, verify, step, cell.settings.warmup * t, cell.settings.repeats * t, cell.batch, prepare, cache_memory, t
    )


def measure_cell(cell: Cell, phase: Callable[[str], None] = lambda name: None) -> Outcome:
    """Build, compile (timed apart), verify against fp64, warm up, time, read memory and the GPU. May raise.

    ``phase`` hears the name of each stage as it starts: build, compile, verify, (prefill,) warm-up,
    timing (and energy, on a GPU whose timed window was too short for NVML's energy counter; breakdown,
    with --breakdown). ``--kernel best``: see ``measure_best``.
    """
    if cell.settings.kernel == "best":
        return measure_best(cell, phase)
    device = torch.device(cell.settings.device)
    phase("build")
    reset_peak_memory(device)
    work = decode_workload(cell, device) if cell.settings.mode == "decode" else model_workload(cell, device)
    phase("compile")
    compile_ms = time_first_call(work.first, device)
    phase("verify")
    verified = work.verify()
    reset_peak_memory(device)  # the steady state, not the verification's reference
    monitor = open_monitor(device)
    readings: dict[str, object] = {}
    notes = [verified.note]
    try:
        with no_compile():
            if work.prepare is not None:
                phase("prefill")
                readings.update(work.prepare())
            phase("warm-up")
            for _ in range(work.warmup_calls):
                work.step()
            phase("timing")
            with monitor.sampling() if monitor else nullcontext() as window:
                synchronize(device)
                start_mj, start = (monitor.energy_mj() if monitor else None), time.perf_counter()
                cold = evictor(device) if cell.settings.cache == "cold" else None
                if cell.settings.repeats:
                    calls, stopped = time_repeats(work.step, device, work.timed_calls, before_each=cold), "fixed"
                else:
                    calls, stopped = time_until_settled(work.step, device, stop_rule(cell.settings),
                                                        work.calls_per_repeat, before_each=cold)  # fmt: skip
                end_mj, seconds = (monitor.energy_mj() if monitor else None), time.perf_counter() - start
                if cold is not None:  # the window held the evictions too: energy from plain steps of its own
                    seconds = 0.0
            timing = Timing.of_calls(compile_ms, calls, work.calls_per_repeat, stopped)
            if cell.settings.timer == "graph":  # beside the event time, never instead of it
                try:
                    readings["graph_ms"] = statistics.median(graph_replays(work.step, device, len(timing.samples_ms)))
                except RuntimeError as err:
                    notes.append(f"--timer graph: the forward could not be captured ({str(err).splitlines()[0]})")
            peak = peak_memory(device)
            readings.update({**nvml_reading(device), **(window.columns() if window else {})})
            if monitor is not None:
                energy = energy_per_step(
                    monitor, work.step, lambda: synchronize(device), (start_mj, end_mj, len(calls), seconds),
                    timing.median_ms, extending=lambda: phase("energy"),
                )  # fmt: skip
                readings.update(
                    energy_j=energy.joules_per_step,
                    avg_power_w=energy.avg_power_w,
                    tokens_per_j=work.tokens_per_call / energy.joules_per_step if energy.joules_per_step else None,
                )
                notes.append(energy.note)
    finally:
        if monitor is not None:
            monitor.close()
    try:
        readings["attn_mem_bytes"] = work.attention_memory()
    except torch.OutOfMemoryError:
        notes.append("attention memory not measured: out of memory")
    if cell.settings.breakdown:  # one more step, profiled: never one of the timed ones
        phase("breakdown")
        with no_compile():
            breakdown = profile_step(work.step, device, Path(cell.settings.trace) if cell.settings.trace else None)
        readings.update(breakdown.columns())
        notes.append(breakdown.note)
    return Outcome(
        kernel=verified.kernel,
        verify_rel_err=verified.rel_err,
        verify_grad_rel_err=verified.grad_rel_err,
        timing=timing,
        peak=peak,
        readings=readings,
        note="; ".join(note for note in notes if note),
    )


def measure_best(cell: Cell, phase: Callable[[str], None]) -> Outcome:
    """--kernel best: each candidate that runs the cell is verified and timed briefly; those that fail
    verification are never candidates (named in the note); the fastest is then measured in full."""
    brief, refused = {}, []
    for kernel in cell.best_candidates:
        phase(f"trying {kernel}")
        trial = cell.but(kernel=kernel, breakdown=False, trace="", **BEST_BRIEF)
        try:
            outcome = measure_cell(trial)
        except MEASURE_ERRORS as err:
            failed = classify(err)
            if isinstance(err, KernelVerifyFailed):
                refused.append(f"{kernel} ({failed.error.split(': ', 1)[-1]})")
            del err
            free_memory(torch.device(cell.settings.device))
            continue
        brief[outcome.kernel or kernel] = (kernel, outcome.timing.median_ms)
        free_memory(torch.device(cell.settings.device))
    if not brief:
        raise KernelUnsupported(f"no kernel runs this case ({', '.join(cell.best_candidates)}); "
                                f"failed verification: {', '.join(refused) or 'none'}")  # fmt: skip
    ran, (winner, _) = min(brief.items(), key=lambda item: item[1][1])
    outcome = measure_cell(cell.but(kernel=winner))
    others = ";".join(f"{name}={ms:.3g}" for name, (_, ms) in sorted(brief.items(), key=lambda i: i[1][1]))
    outcome.readings["kernel_candidates"] = others
    if refused:
        said = f"failed verification, never a candidate: {', '.join(refused)}"
        outcome.note = "; ".join(note for note in (outcome.note, said) if note)
    return outcome
