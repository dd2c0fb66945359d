"""A sweep's plan: every cell it will measure, built before anything runs, and each cell's outcome."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqabench.flops import Cost, decode_cost, step_cost
from sqabench.lengths import format_len
from sqabench.presets import Preset
from sqabench.variants import VariantSpec

if TYPE_CHECKING:
    from sqabench.measure import Timing


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
    kernel: str  # as requested: auto, eager, sdpa, sdpa-<backend>, flex
    device: str
    warmup: int
    repeats: int
    new_tokens: int = 0  # decode: tokens generated per pass; 0 otherwise
    cuda_graphs: bool = False  # decode: the step captured in a CUDA graph
    scope: str = "model"  # what is timed: the model, one block, or the attention op
    world_size: int = 1  # ranks the sequence is split across (context parallelism)

    @property
    def layers_timed(self) -> int:
        return self.preset.n_layers if self.scope == "model" else 1

    def identity(self) -> dict[str, object]:
        """The columns that say what was asked for, as the CSV spells them."""
        p, s = self.preset, self.spec
        return {
            "variant": s.name, "preset": p.name, "n_heads": s.n_heads, "n_q_heads": s.n_q_heads,
            "n_kv_heads": s.n_kv_heads, "head_dim": p.head_dim, "d_model": p.d_model, "n_layers": self.layers_timed,
            "window": "" if s.window is None else s.window, "causal": self.causal, "mode": self.mode,
            "scope": self.scope,
            "dtype": self.dtype, "device": self.device, "kernel_requested": self.kernel,
            "seq_len": self.seq_len, "batch": self.batch, "batch_rule": self.batch_rule,
            "new_tokens": self.new_tokens if self.mode == "decode" else "", "cuda_graphs": self.cuda_graphs,
            "world_size": self.world_size, **self.split_identity(), "warmup": self.warmup, "repeats": self.repeats,
        }  # fmt: skip

    def split_identity(self) -> dict[str, object]:
        """Context parallelism's columns: backend, path and each rank's share; empty on one process."""
        if self.world_size == 1:
            return {"cp_backend": "", "cp_path": "", "local_len": ""}
        backend = "nccl" if self.device.startswith("cuda") else "gloo"
        return {"cp_backend": backend, "cp_path": "flex", "local_len": self.seq_len // self.world_size}

    def cost(self) -> Cost:
        """The cost model's work of one timed call: a step, or a decode step (one token per sequence)."""
        if self.mode == "decode":
            return decode_cost(self.spec, self.preset, self.batch, self.seq_len, self.new_tokens, self.dtype)
        return step_cost(
            self.spec, self.preset, self.batch, self.seq_len, self.causal, self.mode, self.dtype, self.scope
        )

    @property
    def label(self) -> str:
        return f"{self.spec.name} · {format_len(self.seq_len)} x{self.batch}"


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
) -> list[Cell]:
    """Every cell of the sweep, shortest lengths first so that an OOM at the end loses nothing.

    Decode cells are causal whatever ``causal`` says: generation never looks ahead.
    """
    specs = list(specs)
    rule = f"batch={batch}" if batch is not None else f"tokens={tokens}"
    causal = causal or mode == "decode"
    return [
        Cell(spec, preset, n, batch_for(n, tokens, batch), rule, dtype, mode, causal, kernel, device, warmup,
             repeats, new_tokens if mode == "decode" else 0, cuda_graphs, scope, world_size)  # fmt: skip
        for n in seq_lens
        for spec in specs
    ]
