"""The spine of a sweep: every cell it will measure, built before anything runs, and what measuring one
produced. No torch here.

A ``Cell`` says what was asked for and answers, once, what its step costs (``work``) and how fast
it could run on given rates (``floor``): the CSV row, the run-time estimate and ``sqabench floor``
all ask the cell. Measuring a cell gives an ``Outcome``, which holds its ``Timing``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from sqabench.flops import (
    Cost, Floor, Rates, cache_slots, decode_cost, floor, kv_cache_bytes, split_cost, step_cost,
)  # fmt: skip
from sqabench.presets import Preset
from sqabench.units import format_len
from sqabench.variants import VariantSpec

NOISY_SPREAD = 0.10  # (max - min) / median above which a cell's median is not worth quoting
DENSE_MASK_MAX = 8192  # SDPA with an explicit (N, N) mask, or the math backend: tried up to this length only
BEST_BRIEF = {"warmup": 1, "repeats": 3}  # how briefly each candidate of --kernel best is timed


@dataclass(frozen=True)
class Work:
    """What one timed call of a cell costs, by the cost model.

    ``cost`` is the whole step; ``rank`` the busiest rank's share when the sequence is split
    (``cost`` itself on one process); ``comm_bytes`` what each rank receives per step. Decode adds
    the bytes a step reads (``bytes_per_token``) and the cache the run fills (``kv_cache_bytes``).
    """

    cost: Cost
    rank: Cost
    comm_bytes: int = 0
    bytes_per_token: int | None = None
    kv_cache_bytes: int | None = None


@dataclass(frozen=True)
class Cell:
    """One measurement: a variant at one length, with every setting that changes the number."""

    spec: VariantSpec
    preset: Preset
    seq_len: int
    batch: int
    batch_rule: str  # how the batch was chosen: "tokens=131072" or "batch=1"
    dtype: str
    mode: str
    causal: bool
    kernel_requested: str  # auto, eager, sdpa, sdpa-<backend>, flex
    device: str
    warmup: int
    repeats: int
    new_tokens: int = 0  # decode: tokens generated per pass; 0 otherwise
    cuda_graphs: bool = False  # decode: the step captured in a CUDA graph
    scope: str = "model"  # what is timed: the model, one block, or the attention op
    world_size: int = 1  # ranks the sequence is split across (context parallelism)
    compile: str = ""  # torch.compile's mode for the whole model; "" runs it eagerly
    breakdown: bool = False  # profile one more step after the timed repeats (not part of what is measured)
    trace: str = ""  # --breakdown: where this cell's Chrome trace goes ("" : none)

    @property
    def layers_timed(self) -> int:
        return self.preset.n_layers if self.scope == "model" else 1

    @property
    def uses_flex(self) -> bool:
        """Whether the cell's (prefill) kernel is, or may be, flex: compiled per shape."""
        return self.kernel_requested in ("flex", "best") or (
            self.kernel_requested == "auto" and self.spec.window is not None
        )

    @property
    def flex_skipped(self) -> bool:
        """Whether flex will refuse this cell: FlexAttention has no backward on a CPU (torch 2.11 to 2.13), so
        a train cell there is ``skipped`` (``--kernel best`` tries the other candidates)."""
        return self.mode == "train" and self.device.split(":")[0] == "cpu"

    @property
    def best_candidates(self) -> list[str]:
        """The kernels ``--kernel best`` tries: every fused SDPA backend and flex, and those that hold an N x N
        matrix (a window's explicit mask, the math backend) where N is short enough."""
        short = self.seq_len <= DENSE_MASK_MAX or self.mode == "decode"
        fused = ["sdpa-flash", "sdpa-cudnn", "sdpa-efficient"]
        if self.spec.window is not None and self.mode != "decode":
            return ["flex", *(fused + ["sdpa-math"] if short else [])]
        return [*fused, "flex", *(["sdpa-math"] if short else [])]

    def identity(self) -> dict[str, object]:
        """The columns that say what was asked for, as the CSV spells them."""
        p, s = self.preset, self.spec
        return {
            "variant": s.name, "preset": p.name, "n_heads": s.n_heads, "n_q_heads": s.n_q_heads,
            "n_kv_heads": s.n_kv_heads, "head_dim": p.head_dim, "d_model": p.d_model, "n_layers": self.layers_timed,
            "window": "" if s.window is None else s.window, "causal": self.causal, "mode": self.mode,
            "scope": self.scope,
            "dtype": self.dtype, "device": self.device, "kernel_requested": self.kernel_requested,
            "seq_len": self.seq_len, "batch": self.batch, "batch_rule": self.batch_rule,
            "new_tokens": self.new_tokens if self.mode == "decode" else "", "cuda_graphs": self.cuda_graphs,
            "world_size": self.world_size, **self.split_identity(), "compile": self.compile,
            "warmup": self.warmup, "repeats": self.repeats,
        }  # fmt: skip

    def split_identity(self) -> dict[str, object]:
        """Context parallelism's columns: backend, path and each rank's share; empty on one process."""
        if self.world_size == 1:
            return {"cp_backend": "", "cp_path": "", "local_len": ""}
        return {"cp_backend": self.cp_backend, "cp_path": "flex", "local_len": self.seq_len // self.world_size}

    @property
    def cp_backend(self) -> str:
        return collective_backend(self.device)

    @cached_property
    def work(self) -> Work:
        """The cost model's work of one timed call: a step, or a decode step (one token per sequence)."""
        s, p = self.spec, self.preset
        if self.mode == "decode":
            cost = decode_cost(s, p, self.batch, self.seq_len, self.new_tokens, self.dtype)
            slots = cache_slots(self.seq_len, self.new_tokens, s.window)
            return Work(cost, cost, bytes_per_token=cost.min_bytes,
                        kv_cache_bytes=kv_cache_bytes(s, p, self.batch, slots, self.dtype))  # fmt: skip
        cost = step_cost(s, p, self.batch, self.seq_len, self.causal, self.mode, self.dtype, self.scope)
        if self.world_size == 1:
            return Work(cost, cost)
        rank, comm = split_cost(s, p, self.batch, self.seq_len, self.causal, self.dtype, self.world_size)
        return Work(cost, rank, comm)

    def floor(self, rates: Rates | None, link: float | None = None) -> Floor | None:
        """The least time one timed call can take on ``rates`` (the busiest rank's, when split)."""
        if rates is None:
            return None
        rank = self.work.rank
        return floor(rank.flops, rank.exps, rank.min_bytes, rates, self.work.comm_bytes, link)

    @property
    def label(self) -> str:
        return f"{self.spec.name} · {format_len(self.seq_len)} x{self.batch}"


@dataclass(frozen=True)
class Timing:
    compile_ms: float  # the first call: compilation and mask building included
    samples_ms: tuple[float, ...]  # one per timed repeat (decode: a pass's mean time per token)
    token_samples_ms: tuple[float, ...] = ()  # decode: each timed token's own time, kept apart from the repeats

    @classmethod
    def of_calls(cls, compile_ms: float, calls_ms: tuple[float, ...], per_repeat: int = 1) -> "Timing":
        """The timing of ``calls_ms`` timed one by one, ``per_repeat`` calls to a repeat (decode: a pass of T
        tokens). A repeat's sample is its calls' mean, so the spread is the repeats' (the unit that is
        repeated), not the single tokens'; the calls' own times are kept in ``token_samples_ms``."""
        if per_repeat == 1:
            return cls(compile_ms, tuple(calls_ms))
        if len(calls_ms) % per_repeat:
            raise ValueError(f"{len(calls_ms)} timed calls are not whole repeats of {per_repeat}")
        passes = tuple(
            sum(calls_ms[i : i + per_repeat]) / per_repeat for i in range(0, len(calls_ms), per_repeat)
        )
        return cls(compile_ms, passes, tuple(calls_ms))

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    @property
    def spread(self) -> float:
        """(max - min) / median of the repeats."""
        return (self.max_ms - self.min_ms) / self.median_ms if self.median_ms > 0 else 0.0

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY_SPREAD


@dataclass
class Outcome:
    """What measuring a cell produced: a status, and for an ``ok`` cell its timing and readings."""

    status: str = "ok"
    error: str = ""
    note: str = ""
    kernel: str = ""  # what ran, e.g. sdpa-flash
    verify_rel_err: float | None = None
    verify_grad_rel_err: float | None = None
    timing: Timing | None = None
    peak: tuple[int | None, int | None] = (None, None)
    readings: dict = field(default_factory=dict)  # extra columns: NVML and the like
    fatal: bool = False  # the device or the process group is unusable after this cell: stop the sweep


def collective_backend(device: str) -> str:
    """The collectives' backend of a split cell: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.startswith("cuda") else "gloo"


def batch_for(seq_len: int, tokens: int, batch: int | None = None) -> int:
    """``--batch`` if given, else max(1, tokens // seq_len): the paper's 1024x128 ... 200000x1."""
    return batch if batch is not None else max(1, tokens // seq_len)


def plan(
    specs: Iterable[VariantSpec],
    preset: Preset,
    seq_lens: Iterable[int],
    *,
    tokens: int,
    batch: int | None,
    dtype: str,
    mode: str,
    causal: bool,
    kernel: str,
    device: str,
    warmup: int,
    repeats: int,
    new_tokens: int = 0,
    cuda_graphs: bool = False,
    scope: str = "model",
    world_size: int = 1,
    compile: str = "",
    breakdown: bool = False,
) -> list[Cell]:
    """Every cell of the sweep, shortest lengths first so that an OOM at the end loses nothing.

    Decode cells are causal whatever ``causal`` says: generation never looks ahead.
    """
    specs = list(specs)
    rule = f"batch={batch}" if batch is not None else f"tokens={tokens}"
    causal = causal or mode == "decode"
    return [
        Cell(spec=spec, preset=preset, seq_len=n, batch=batch_for(n, tokens, batch), batch_rule=rule, dtype=dtype,
             mode=mode, causal=causal, kernel_requested=kernel, device=device, warmup=warmup, repeats=repeats,
             new_tokens=new_tokens if mode == "decode" else 0, cuda_graphs=cuda_graphs, scope=scope,
             world_size=world_size, compile=compile, breakdown=breakdown)  # fmt: skip
        for n in seq_lens
        for spec in specs
    ]
