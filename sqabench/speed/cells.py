"""The spine of a sweep: every cell it will measure, built before anything runs, and what measuring one
produced. No torch here.

A ``Cell`` says what was asked for and answers, once, what its step costs (``work``) and how fast
it could run on given rates (``floor``): the CSV row, the run-time estimate and ``sqabench floor``
all ask the cell. Measuring a cell gives an ``Outcome``, which holds its ``Timing``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

from sqabench.flops import (
    Cost,
    Floor,
    Rates,
    cache_slots,
    decode_cost,
    floor,
    kv_cache_bytes,
    split_cost,
    step_cost,
)  # fmt: skip
from sqabench.presets import Preset
from sqabench.units import format_len
from sqabench.variants import VariantSpec

NOISY_SPREAD = 0.10  # (max - min) / median above which a cell's median is not worth quoting
DENSE_MASK_MAX = 8192  # SDPA with an explicit (N, N) mask, or the math backend: tried up to this length only
# --repeats auto, by device: the target for the median's 95% interval (--target-noise's default) and the rule's
# bounds. A GPU's timer is quiet (2% is nvbench's default) and its cells cheap to repeat; a shared CPU's is not
# (benchmarks/timer_noise.py), and a CPU sweep is the quick one.
TARGET_NOISE = {"cuda": 0.02, "cpu": 0.05}
AUTO_RULE = {"cuda": {"min_repeats": 10, "min_s": 0.05, "max_repeats": 200, "limit_s": 10.0},
             "cpu": {"min_repeats": 6, "min_s": 0.0, "max_repeats": 30, "limit_s": 2.0}}  # fmt: skip
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


def setting(default: object, *, key: bool = True, column: str | None = "", show=None):
    """A field of ``Settings``: ``key`` when it tells two measurements apart (the cell key, resume, the gate's
    pairing, a table's or panel's setting); ``column`` its CSV column ("" : its own name, None : none); ``show``
    how the column spells the value, when not as it is."""
    return field(default=default, metadata={"key": key, "column": column, "show": show})


@dataclass(frozen=True)
class Settings:
    """Every setting of a cell but its variant, model and length, declared once: the cell key, the CSV columns
    and a row's identity are derived from these fields (``key_columns``, ``setting_columns``). A new setting is
    a field here, an option (``speed.options``) of the same name, and its use."""

    causal: bool = setting(False)
    mode: str = setting("fwd")
    scope: str = setting("model")  # what is timed: the model, one block, or the attention op
    dtype: str = setting("fp32")
    device: str = setting("cpu")
    kernel: str = setting("auto", column="kernel_requested")  # auto, eager, sdpa, sdpa-<backend>, flex, best
    new_tokens: int = setting(0, show=lambda value: value or "")  # decode: tokens generated per pass; else 0
    cuda_graphs: bool = setting(False)  # decode: the step captured in a CUDA graph
    world_size: int = setting(1)  # ranks the sequence is split across (context parallelism)
    compile: str = setting("")  # torch.compile's mode for the whole model; "" runs it eagerly
    cache: str = setting("warm")  # cold: the cache evicted before every timed repeat (outside its time)
    warmup: int = setting(1, key=False)
    timer: str = setting("events", key=False)  # graph: the forward's CUDA-graph replays timed too (graph_ms)
    repeats: int = setting(3, key=False, show=lambda value: value or "auto")  # 0: --repeats auto
    target_noise: float = setting(0.0, key=False, show=lambda value: value or "")  # auto: the median's 95% interval
    breakdown: bool = setting(False, key=False, column=None)  # profile one more step (not part of the measure)
    trace: str = setting("", key=False, column=None)  # --breakdown: where this cell's Chrome trace goes

    def columns(self) -> dict[str, object]:
        """The CSV columns of these settings, as the file spells them."""
        found = {}
        for f in fields(self):
            if f.metadata["column"] is not None:
                value = getattr(self, f.name)
                found[f.metadata["column"] or f.name] = f.metadata["show"](value) if f.metadata["show"] else value
        return found


def stop_rule(settings: "Settings"):
    """``--repeats auto``'s rule for a cell of ``settings`` (``settle.StopRule``): its device's bounds, and its
    target (``--target-noise``, else the device's)."""
    from sqabench.settle import StopRule

    device = settings.device.split(":")[0]
    return StopRule(settings.target_noise or TARGET_NOISE[device], **AUTO_RULE[device])


def setting_columns(settings_type: type | None = None) -> tuple[str, ...]:
    """The CSV columns of every setting of ``settings_type`` (default ``Settings``), in declaration order."""
    found = fields(settings_type or Settings)
    return tuple(f.metadata["column"] or f.name for f in found if f.metadata["column"] is not None)


def key_columns(settings_type: type | None = None) -> tuple[str, ...]:
    """The columns of the settings that tell two measurements apart."""
    return tuple(f.metadata["column"] or f.name for f in fields(settings_type or Settings) if f.metadata["key"])


@dataclass(frozen=True)
class Cell:
    """One measurement: a variant at one length, with every setting that changes the number."""

    spec: VariantSpec
    preset: Preset
    seq_len: int
    batch: int
    batch_rule: str  # how the batch was chosen: "tokens=131072" or "batch=1"
    settings: Settings

    def but(self, **changes) -> "Cell":
        """This cell with some of its settings changed."""
        return replace(self, settings=replace(self.settings, **changes))

    @property
    def layers_timed(self) -> int:
        return self.preset.n_layers if self.settings.scope == "model" else 1

    @property
    def uses_flex(self) -> bool:
        """Whether the cell's (prefill) kernel is, or may be, flex: compiled per shape."""
        return self.settings.kernel in ("flex", "best") or (
            self.settings.kernel == "auto" and self.spec.window is not None
        )

    @property
    def flex_skipped(self) -> bool:
        """Whether flex will refuse this cell: FlexAttention has no backward on a CPU (torch 2.11 to 2.13), so
        a train cell there is ``skipped`` (``--kernel best`` tries the other candidates)."""
        return self.settings.mode == "train" and self.settings.device.split(":")[0] == "cpu"

    @property
    def best_candidates(self) -> list[str]:
        """The kernels ``--kernel best`` tries: every fused SDPA backend and flex, and those that hold an N x N
        matrix (a window's explicit mask, the math backend) where N is short enough."""
        short = self.seq_len <= DENSE_MASK_MAX or self.settings.mode == "decode"
        fused = ["sdpa-flash", "sdpa-cudnn", "sdpa-efficient"]
        if self.spec.window is not None and self.settings.mode != "decode":
            return ["flex", *(fused + ["sdpa-math"] if short else [])]
        return [*fused, "flex", *(["sdpa-math"] if short else [])]

    def identity(self) -> dict[str, object]:
        """The columns that say what was asked for, as the CSV spells them."""
        p, s = self.preset, self.spec
        return {
            "variant": s.name, "preset": p.name, "n_heads": s.n_heads, "n_q_heads": s.n_q_heads,
            "n_kv_heads": s.n_kv_heads, "head_dim": p.head_dim, "d_model": p.d_model, "n_layers": self.layers_timed,
            "window": "" if s.window is None else s.window, "seq_len": self.seq_len, "batch": self.batch,
            "batch_rule": self.batch_rule, **self.settings.columns(), **self.split_identity(),
        }  # fmt: skip

    def split_identity(self) -> dict[str, object]:
        """Context parallelism's columns: backend, path and each rank's share; empty on one process."""
        if self.settings.world_size == 1:
            return {"cp_backend": "", "cp_path": "", "local_len": ""}
        return {"cp_backend": self.cp_backend, "cp_path": "flex", "local_len": self.seq_len // self.settings.world_size}

    @property
    def cp_backend(self) -> str:
        return collective_backend(self.settings.device)

    @cached_property
    def work(self) -> Work:
        """The cost model's work of one timed call: a step, or a decode step (one token per sequence)."""
        s, p = self.spec, self.preset
        if self.settings.mode == "decode":
            cost = decode_cost(s, p, self.batch, self.seq_len, self.settings.new_tokens, self.settings.dtype)
            slots = cache_slots(self.seq_len, self.settings.new_tokens, s.window)
            return Work(cost, cost, bytes_per_token=cost.min_bytes,
                        kv_cache_bytes=kv_cache_bytes(s, p, self.batch, slots, self.settings.dtype))  # fmt: skip
        cost = step_cost(
            s,
            p,
            self.batch,
            self.seq_len,
            self.settings.causal,
            self.settings.mode,
            self.settings.dtype,
            self.settings.scope,
        )
        if self.settings.world_size == 1:
            return Work(cost, cost)
        rank, comm = split_cost(
            s, p, self.batch, self.seq_len, self.settings.causal, self.settings.dtype, self.settings.world_size
        )
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
    stopped: str = "fixed"  # fixed (--repeats N), target (auto: the noise settled) or cap (auto: it did not)

    @classmethod
    def of_calls(cls, compile_ms: float, calls_ms: tuple[float, ...], per_repeat: int = 1,
                 stopped: str = "fixed") -> "Timing":  # fmt: skip
        """The timing of ``calls_ms`` timed one by one, ``per_repeat`` calls to a repeat (decode: a pass of T
        tokens). A repeat's sample is its calls' mean, so the spread is the repeats' (the unit that is
        repeated), not the single tokens'; the calls' own times are kept in ``token_samples_ms``."""
        if per_repeat == 1:
            return cls(compile_ms, tuple(calls_ms), stopped=stopped)
        if len(calls_ms) % per_repeat:
            raise ValueError(f"{len(calls_ms)} timed calls are not whole repeats of {per_repeat}")
        passes = tuple(sum(calls_ms[i : i + per_repeat]) / per_repeat for i in range(0, len(calls_ms), per_repeat))
        return cls(compile_ms, passes, tuple(calls_ms), stopped)

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
    def noise(self) -> float | None:
        """The half-width of the median's 95% interval relative to it (``settle.median_noise``); None under 6."""
        from sqabench.settle import median_noise

        return median_noise(self.samples_ms)

    @property
    def noisy(self) -> bool:
        """A spread past ``NOISY_SPREAD``, or an auto cell that stopped on its cap before its noise settled."""
        return self.spread > NOISY_SPREAD or self.stopped == "cap"


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
    sticky: bool = False  # a sticky CUDA error: every later cell on this device would fail

    @classmethod
    def failed(cls, failure) -> "Outcome":
        """The outcome of a cell that raised an expected failure (``sqabench.failures.Failure``)."""
        return cls(status=failure.status, error=failure.error, sticky=failure.sticky)


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
    settings: Settings,
    *,
    tokens: int,
    batch: int | None = None,
) -> list[Cell]:
    """Every cell of the sweep, shortest lengths first so that an OOM at the end loses nothing.

    Decode cells are causal whatever ``settings`` say (generation never looks ahead); other cells generate no
    new tokens.
    """
    specs = list(specs)
    rule = f"batch={batch}" if batch is not None else f"tokens={tokens}"
    decode = settings.mode == "decode"
    settings = replace(settings, causal=settings.causal or decode, new_tokens=settings.new_tokens if decode else 0)
    return [
        Cell(spec=spec, preset=preset, seq_len=n, batch=batch_for(n, tokens, batch), batch_rule=rule, settings=settings)
        for n in seq_lens
        for spec in specs
    ]
