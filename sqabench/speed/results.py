"""The results CSV: its columns, the cell key, writing, reading and validation. No torch here.

A row is one cell. Which columns identify a cell (``CELL_KEY``: what was asked for, never what
ran) and which group cells into one setting (``SETTING_KEY``: one table, one plot panel) is
defined here once; ``--resume``, ``check``, ``plot`` and the tables all import it.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from sqabench.errors import ConfigError
from sqabench.files import CsvWriter, read_csv
from sqabench.speed.cells import key_columns, setting_columns
from sqabench.variants import pick_baseline

if TYPE_CHECKING:
    import pandas as pd

# Columns in file order, grouped as the README documents them. A cell's settings are declared once, in
# ``cells.Settings``: their columns, and which of them are key columns, come from there.
IDENTITY = (
    "run_id", "timestamp", "variant", "preset", "n_heads", "n_q_heads", "n_kv_heads", "head_dim", "d_model",
    "n_layers", "window", *setting_columns(), "kernel", "kernel_candidates", "seq_len", "batch", "batch_rule",
    "cp_backend", "cp_path", "local_len", "baseline",
)  # fmt: skip
TIMING = (
    "time_ms", "time_ms_min", "time_ms_max", "spread", "noisy", "noise", "stopped", "samples_ms", "token_samples_ms", "graph_ms", "compile_ms",
    "prefill_ms",
    "tokens_per_s", "flops", "tflops", "attention_flops", "exps", "min_bytes", "bytes_per_token", "kv_cache_bytes",
    "rank_flops", "comm_bytes",
    "verify_rel_err", "verify_grad_rel_err",
)  # fmt: skip
BREAKDOWN = ("attention_ms", "matmul_ms", "other_ms", "idle_ms", "attention_share")
FLOOR = (
    "floor_ms", "bound", "efficiency", "ceiling_matmul_flops", "ceiling_exp_per_s", "ceiling_bytes_per_s",
    "ceiling_link_bytes_per_s",
    "peak_matmul_flops", "peak_exp_per_s", "peak_bytes_per_s",
)  # fmt: skip
MEMORY = ("peak_mem_bytes", "peak_reserved_bytes", "attn_mem_bytes", "nvml_used_bytes")
# Said of a row whose efficiency passes 1: a step cannot beat its floor, so the floor is wrong.
FLOOR_WRONG = "efficiency above 1: the floor is wrong (a ceiling measured too low?)"
GPU = (
    "energy_j", "tokens_per_j", "avg_power_w", "power_max_w", "sm_clock_min_mhz", "sm_clock_median_mhz",
    "mem_clock_mhz", "temperature_max_c", "throttle",
)  # fmt: skip
ENVIRONMENT = (
    "gpu_name", "driver_version", "cuda_version", "cudnn_version", "triton_version", "torch_version",
    "sqabench_version", "git_sha", "cpu_model", "torch_threads",
)  # fmt: skip
OUTCOME = ("status", "error", "note")
COLUMNS: tuple[str, ...] = IDENTITY + TIMING + BREAKDOWN + FLOOR + MEMORY + GPU + ENVIRONMENT + OUTCOME

# What identifies a cell: what was asked for. Two rows with the same key measured the same thing.
CELL_KEY: tuple[str, ...] = (
    "variant", "n_q_heads", "n_kv_heads", "window", "preset", "n_layers", "seq_len", "batch", *key_columns(),
)  # fmt: skip
# What makes cells comparable in one table or one plot panel: every setting but the variant and the length.
SETTING_KEY: tuple[str, ...] = ("gpu_name", "preset", "n_layers", "batch_rule", *key_columns())
# A (setting, length) point: pairs a variant with the baseline variant for speed-ups.
POINT_KEY: tuple[str, ...] = (*SETTING_KEY, "seq_len", "batch")
# The smallest set of columns that makes a file a sqabench results CSV (older files may lack the rest).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "variant", "preset", "n_heads", "n_q_heads", "n_kv_heads", "window", "causal", "mode", "dtype", "device",
    "kernel_requested", "kernel", "seq_len", "batch", "time_ms", "time_ms_min", "time_ms_max", "gpu_name", "status",
    "error",
)  # fmt: skip
STATUSES = ("ok", "oom", "error", "skipped")
SIGNIFICANT_DIGITS = 6


def significant(value: float | None, digits: int = SIGNIFICANT_DIGITS) -> float | str:
    """A measured or derived float kept to ``digits`` significant digits (never fixed decimals)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if math.isinf(value):
        return value
    return float(f"{value:.{digits}g}")


def format_samples(samples_ms) -> str:
    """Per-repeat times as the ``samples_ms`` column spells them: ``1.23;1.25;1.22``."""
    return ";".join(f"{s:.{SIGNIFICANT_DIGITS}g}" for s in samples_ms)


def parse_samples(text: object) -> tuple[float, ...]:
    if not isinstance(text, str) or not text.strip():
        return ()
    return tuple(float(part) for part in text.split(";"))


def normal(value: object) -> str:
    """One spelling of a key value, whether it came from ``csv`` (strings) or pandas (numbers, NaN)."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    text = str(value)
    return "" if text in ("nan", "<NA>", "None") else text


def key_of(row, columns: tuple[str, ...] = CELL_KEY) -> tuple[str, ...]:
    """The normalised values of ``columns`` in a dict row or a pandas Series; a missing column is ''."""
    return tuple(normal(row[column]) if column in row else "" for column in columns)


def setting_title(row) -> str:
    """One line that names a setting (a dict row or a pandas Series): every ``SETTING_KEY`` column that
    says something, e.g. ``NVIDIA H100 · paper (8 layers) · scope model · encoder · fwd · bf16 ·
    kernel auto · tokens=131072``."""

    def value(column: str) -> str:
        return normal(row[column]) if column in row else ""

    host = value("gpu_name") or f"CPU ({value('cpu_model') or 'unknown'})"
    layers = f" ({value('n_layers')} layer{'' if value('n_layers') == '1' else 's'})" if value("n_layers") else ""
    parts = [host, f"{value('preset')}{layers}", f"scope {value('scope') or 'model'}",
             "causal" if value("causal") == "True" else "encoder", value("mode"), value("dtype"),
             f"kernel {value('kernel_requested')}", value("batch_rule") or "batch as recorded"]  # fmt: skip
    if value("mode") == "decode" and value("new_tokens"):
        parts.append(f"{value('new_tokens')} new tokens" + (", CUDA graphs" if value("cuda_graphs") == "True" else ""))
    if value("world_size") not in ("", "1"):
        parts.append(f"split across {value('world_size')} ranks")
    if value("compile"):
        parts.append(f"compiled ({value('compile')})")
    return " · ".join(parts)


NAMED_SETTINGS = ("dtype", "mode", "causal", "kernel_requested", "device", "scope", "new_tokens", "cuda_graphs",
                  "world_size", "compile")  # fmt: skip


def cell_name(row) -> str:
    """A cell's name from every column of its cell key, so that two cells never print under one name:
    ``sqa paper n=32768 b=4 bf16 fwd encoder auto cuda heads 8/4 8 layers scope model``."""
    return " ".join(cell_words(row))


def cell_words(row) -> list[str]:
    """The parts of ``cell_name``, one per cell-key column that says something (a table can print the ones
    every cell shares once)."""
    v = dict(zip(CELL_KEY, key_of(row)))
    words = [
        f"{v['variant']}{'@' + v['window'] if v['window'] else ''}", v["preset"], f"n={v['seq_len']}",
        f"b={v['batch']}", v["dtype"], v["mode"], "causal" if v["causal"] == "True" else "encoder",
        v["kernel_requested"], v["device"], f"heads {v['n_q_heads']}/{v['n_kv_heads']}",
        f"{v['n_layers']} layers" if v["n_layers"] else "", f"scope {v['scope']}" if v["scope"] else "",
        f"T={v['new_tokens']}" if v["new_tokens"] else "", "CUDA graphs" if v["cuda_graphs"] == "True" else "",
        f"{v['world_size']} ranks" if v["world_size"] not in ("", "1") else "",
        f"compiled {v['compile']}" if v["compile"] else "",
    ]  # fmt: skip
    # a key setting without a word of its own above is named by its column, so no two cells share a name
    words += [f"{column}={v[column]}" for column in key_columns() if column not in NAMED_SETTINGS and v[column]]
    return [word for word in words if word]


def shared_words(names: list[list[str]]) -> list[str]:
    """The words every one of ``names`` (from ``cell_words``) has, in the first one's order; none for one name."""
    if len(names) < 2:
        return []
    return [word for word in names[0] if all(word in other for other in names[1:])]


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a results file written by this version (same columns, same order), each validated (--resume)."""
    rows = read_csv(path, COLUMNS, "results CSV", exact=True)
    for line, row in enumerate(rows, start=2):
        validate_row(row, f"{path} line {line}")
    return rows


POSITIVE_INTEGERS = ("seq_len", "batch", "n_heads", "n_q_heads", "n_kv_heads")
TIMES = ("time_ms", "time_ms_min", "time_ms_max")  # an ok row's: finite and > 0


def _raw(row, column: str) -> str:
    """What the file holds in ``column``, as written: '' when missing or empty, ``nan`` when it says nan."""
    if column not in row:
        return ""
    value = row[column]
    return str(value).strip() if isinstance(value, str) else normal(value)


def validate_row(row, where: str) -> None:
    """Refuse a row that no run writes: an unknown status, a size that is not a positive integer, an ok row
    whose times are missing, not finite or not positive, whose ``samples_ms`` do not parse, or whose median,
    minimum and maximum are not its samples' (one source drives both a figure and a verdict). One check for
    every reader (``--resume``, ``plot``, ``report``, ``check``); ``row`` is a dict or a pandas Series."""
    value = {column: normal(row[column]) if column in row else "" for column in (*COLUMNS, "status")}
    if value["status"] not in STATUSES:
        raise ConfigError(f"{where}: unknown status {value['status']!r}; expected one of {', '.join(STATUSES)}")
    for column in POSITIVE_INTEGERS:
        text = value[column]
        if text and not (_is_number(text) and float(text).is_integer() and float(text) >= 1):
            raise ConfigError(f"{where}: {column}={text!r} is not a positive integer")
    for column in ("flops", "spread", *TIMES):
        if _raw(row, column) and not _is_number(_raw(row, column)):
            raise ConfigError(f"{where}: {column}={_raw(row, column)!r} is not a number")
    if value["status"] != "ok":
        return
    for column in TIMES:
        text = _raw(row, column)
        if not text or not math.isfinite(float(text)) or float(text) <= 0:
            raise ConfigError(f"{where}: {column}={text or 'empty'} in an ok row; times must be finite and > 0 ms")
    try:
        samples = parse_samples(value["samples_ms"])
    except ValueError:
        raise ConfigError(f"{where}: samples_ms={value['samples_ms']!r} is not ';'-separated times in ms") from None
    if any(not math.isfinite(s) or s <= 0 for s in samples):
        raise ConfigError(f"{where}: samples_ms={value['samples_ms']!r}: times must be finite and > 0 ms")
    if samples:
        expected = {"time_ms": statistics.median(samples), "time_ms_min": min(samples), "time_ms_max": max(samples)}
        for column, of_samples in expected.items():
            if not math.isclose(float(value[column]), of_samples, rel_tol=2e-5):
                raise ConfigError(f"{where}: {column}={value[column]} but its samples_ms say {of_samples:.6g}: a "
                                  "row whose times disagree with its samples is not one a run writes")  # fmt: skip


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def results_writer(path: Path) -> CsvWriter:
    """The appending writer of a results CSV: this schema, a row flushed as it comes."""
    return CsvWriter(path, COLUMNS)


def newest_results(folder: Path = Path("results")) -> Path:
    """The results CSV written last in ``folder`` (what ``sqabench plot`` draws when given none)."""
    found = sorted(folder.glob("*.csv"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []
    if not found:
        raise ConfigError(f"no results CSV given and none in {folder}/; run `sqabench run` first, or name CSVs")
    return found[-1]


def load_results(paths: list[Path] | Path) -> "pd.DataFrame":
    """One DataFrame from results CSVs, each checked for the required columns; a ``source`` column added.

    Columns a file lacks (written by an older sqabench) are added empty.
    """
    import pandas as pd

    frames = []
    for path in [paths] if isinstance(paths, Path) else paths:
        if not path.is_file():
            raise ConfigError(f"no such results file: {path}")
        rows = read_csv(path, REQUIRED_COLUMNS, "results CSV")  # the file as written: each row checked first
        if not rows:
            raise ConfigError(f"{path} has no rows")
        for line, row in enumerate(rows, start=2):
            validate_row(row, f"{path} line {line}")
        frame = typed_frame(rows)  # the rows as read, once: no second parse of the file
        for column in ("seq_len", "batch", "time_ms", "n_heads", "n_q_heads"):
            if not pd.api.types.is_numeric_dtype(frame[column]):
                raise ConfigError(f"{path}: column {column} is not numeric")
        for column in COLUMNS:
            if column not in frame.columns:
                frame[column] = pd.NA
        frame["source"] = str(path)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


TEXT_COLUMNS = ("samples_ms", "token_samples_ms")  # ;-separated lists: kept as written


def typed_frame(rows: list[dict[str, str]]) -> "pd.DataFrame":
    """A DataFrame of rows read as strings: empty is missing; a column whose every value is a number becomes
    numeric, one of True/False booleans; the rest (and ``TEXT_COLUMNS``) stay as written."""
    import pandas as pd

    frame = pd.DataFrame(rows, dtype=object).replace({"": float("nan")})
    for column in frame.columns:
        if column in TEXT_COLUMNS:
            continue
        given = frame[column].notna()
        numbers = pd.to_numeric(frame[column], errors="coerce")
        said_nan = frame[column].astype(str).str.strip().str.lower().isin(("nan", "-nan", "+nan"))
        if (numbers.notna() | said_nan).sum() == given.sum():
            frame[column] = numbers
        elif set(frame[column][given]) <= {"True", "False"}:
            frame[column] = frame[column].map({"True": True, "False": False})
            if given.all():
                frame[column] = frame[column].astype(bool)
    return frame


def latest(frame: "pd.DataFrame", also: tuple[str, ...] = ()) -> "pd.DataFrame":
    """One row per cell (and per ``also`` columns): the last one written (a resumed file may hold an oom
    and a later ok). Plots pass ("source", "gpu_name"), so that two files or two GPUs never collapse."""
    keys = frame.apply(lambda row: key_of(row, CELL_KEY + also), axis=1)
    return frame.loc[~keys.duplicated(keep="last")]


def duplicate_notes(frame: "pd.DataFrame") -> list[str]:
    """What to say when a file holds one cell twice as ``ok`` from different runs (two writers, or a
    re-run): the later row of each is used."""
    ok = frame[frame["status"].astype(str) == "ok"]
    notes = []
    for source, rows in ok.groupby("source", sort=False):
        keys = rows.apply(lambda row: key_of(row), axis=1)
        twice = rows[keys.duplicated(keep=False)]
        if not twice.empty:
            cells = keys[keys.duplicated(keep="last")].nunique()
            runs = ", ".join(sorted(set(twice["run_id"].dropna().astype(str))))
            notes.append(f"{source}: {cells} cells measured twice as ok (runs {runs}); the later row of each is used")
    return notes


def variants_in(frame: "pd.DataFrame") -> list[str]:
    return list(dict.fromkeys(frame["variant"].astype(str)))


def resolve_baseline(frame: "pd.DataFrame", baseline: str | None) -> str | None:
    """The baseline variant for speed-ups: ``baseline`` if given (it must be in the data), else the one the
    run recorded (``sqabench run --baseline``), else mha if there.

    An explicit baseline missing from the data is a usage error naming the variants that are there.
    """
    present = variants_in(frame)
    if baseline is None and "baseline" in frame.columns:
        recorded = [name for name in dict.fromkeys(frame["baseline"].dropna().astype(str)) if name in present]
        if recorded:
            baseline = "mha" if "mha" in recorded else recorded[0]
    return pick_baseline(baseline, present, "is not in the data; variants there")
