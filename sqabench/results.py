"""The results CSV: its columns, loading and validation, and the environment each row carries."""

from __future__ import annotations

import csv
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import sqabench
from sqabench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

# The columns every consumer may rely on (issue #3), in file order.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "run_id", "timestamp", "variant", "preset", "n_heads", "n_q_heads", "n_kv_heads", "head_dim",
    "d_model", "n_layers", "window", "causal", "mode", "dtype", "device", "kernel", "seq_len", "batch",
    "warmup", "repeats", "time_ms", "time_ms_min", "time_ms_max", "compile_ms", "tokens_per_s", "flops",
    "tflops", "peak_mem_bytes", "peak_reserved_bytes", "nvml_used_bytes", "gpu_name", "driver_version",
    "cuda_version", "torch_version", "sqabench_version", "git_sha", "status", "error",
)  # fmt: skip
EXTRA_COLUMNS: tuple[str, ...] = (
    "kernel_requested",  # what --kernel asked for (auto, sdpa, ...): the key that --resume matches
    "check_rel_err",  # the kernel's error against the fp64 reference on sampled rows, before timing
    "attention_flops", "exps", "min_bytes",  # the cost model's split of the step
    "cudnn_version", "triton_version", "sm_clock_mhz", "temperature_c", "power_w",
)  # fmt: skip
COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + EXTRA_COLUMNS
STATUSES = ("ok", "oom", "error", "skipped")
# The columns that identify a cell: two rows with the same values measured the same thing.
CELL_KEY: tuple[str, ...] = (
    "variant", "n_q_heads", "n_kv_heads", "preset", "seq_len", "batch", "dtype", "mode", "causal", "window",
    "kernel_requested", "device",
)  # fmt: skip


@dataclass(frozen=True)
class Environment:
    """Where the numbers come from: the same fields in every row and in ``sqabench env``."""

    device: str
    gpu_name: str = ""
    driver_version: str = ""
    cuda_version: str = ""
    cudnn_version: str = ""
    triton_version: str = ""
    torch_version: str = torch.__version__
    sqabench_version: str = sqabench.__version__
    git_sha: str = ""
    nvml: str = "not used"

    def as_row(self) -> dict[str, str]:
        row = asdict(self)
        row.pop("nvml")
        return row


def git_sha() -> str:
    """Short commit of the sqabench checkout, with ``-dirty`` for uncommitted changes; empty if none."""
    here = Path(sqabench.__file__).resolve().parent
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


def cell_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row[column]) for column in CELL_KEY)


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a results file written by this version (same columns, same order), for --resume."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = tuple(reader.fieldnames or ())
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"cannot read results file {path}: {err}") from None
    if header != COLUMNS:
        missing = [c for c in COLUMNS if c not in header]
        detail = f"missing {', '.join(missing[:5])}" if missing else "columns differ in order or extras"
        raise ConfigError(f"{path} has another schema ({detail}); resume needs a file written by this sqabench")
    return rows


class CsvWriter:
    """Appends one row at a time and flushes it, so that an interrupted run keeps every finished row."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, row: dict) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="raise")
            if new:
                writer.writeheader()
            writer.writerow({column: row.get(column, "") for column in COLUMNS})
            handle.flush()
            os.fsync(handle.fileno())


def load_results(paths: list[Path] | Path) -> "pd.DataFrame":
    """One DataFrame from results CSVs, each checked for the required columns; a ``source`` column added."""
    import pandas as pd

    frames = []
    for path in [paths] if isinstance(paths, Path) else paths:
        if not path.is_file():
            raise ConfigError(f"no such results file: {path}")
        try:
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise ConfigError(f"cannot read {path} as a results CSV: {str(err).splitlines()[0]}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ConfigError(f"{path} is not a sqabench results CSV: missing columns {', '.join(missing[:6])}")
        if frame.empty:
            raise ConfigError(f"{path} has no rows")
        bad = sorted(set(frame["status"].astype(str)) - set(STATUSES))
        if bad:
            raise ConfigError(f"{path}: unknown status {bad[0]!r}; expected one of {', '.join(STATUSES)}")
        for column in ("seq_len", "batch", "time_ms", "n_heads", "n_q_heads"):
            if not pd.api.types.is_numeric_dtype(frame[column]):
                raise ConfigError(f"{path}: column {column} is not numeric")
        frame["source"] = str(path)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def host_label(env: Environment) -> str:
    """A file-name-safe device label: the GPU's name, or ``cpu-<machine>``."""
    name = env.gpu_name or f"cpu-{platform.machine()}"
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
