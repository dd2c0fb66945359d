"""The ``sqabench`` command line: parse, call one library function, print."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sqabench.errors import ConfigError

app = typer.Typer(
    help="Benchmark Sparse Query Attention (arXiv 2510.01817) against MHA, GQA, MQA and sliding windows.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

Preset_ = Annotated[str, typer.Option("--preset", help="Encoder preset: paper (d 256, 8 layers) or wide (d 2048).")]
Device = Annotated[str, typer.Option("--device", help="auto, cuda or cpu.")]


def fail(message: str) -> NoReturn:
    """One line on stderr, exit code 2: the answer to every bad input."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def usage_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as error:
        fail(str(error).replace("[", "\\["))


@app.command()
def variants(
    preset: Preset_ = "paper",
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """List the variant family with parameters, attention FLOPs vs MHA and KV cache per token."""
    from sqabench.presets import get_preset
    from sqabench.report import FAMILY_COLUMNS, FAMILY_HEADERS, family_records, records_table
    from sqabench.variants import FAMILY, get_variant

    with usage_errors():
        p = get_preset(preset)
        if fmt not in ("table", "csv", "json"):
            raise ConfigError(f"unknown format {fmt!r}; choose one of: table, csv, json")
        records = family_records([get_variant(name, p.n_heads) for name in FAMILY], p)
    if fmt == "json":
        typer.echo(json.dumps(records, indent=2))
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FAMILY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        typer.echo(buffer.getvalue(), nl=False)
    else:
        title = f"SQA family, preset {p.name} (d_model {p.d_model}, H {p.n_heads}, {p.n_layers} layers)"
        out.print(records_table(title, records, FAMILY_COLUMNS, FAMILY_HEADERS))


@app.command()
def env(device: Device = "auto") -> None:
    """Show the device, GPU, driver, CUDA, torch, cuDNN, triton and NVML state that rows carry."""
    from dataclasses import asdict

    from sqabench.measure import environment, resolve_device
    from sqabench.report import records_table

    with usage_errors():
        dev = resolve_device(device)
    records = [{"field": k, "value": v or "-"} for k, v in asdict(environment(dev)).items()]
    out.print(records_table("sqabench environment", records, ("field", "value")))


GPU_DEFAULTS = {"seq": "1k,4k,32k,131k,200k", "tokens": 131072, "warmup": 2, "repeats": 10, "dtype": "bf16"}
CPU_DEFAULTS = {"seq": "256,1k", "tokens": 1024, "warmup": 1, "repeats": 3, "dtype": "fp32"}


@app.command()
def run(
    seq: Annotated[str | None, typer.Option(help="Lengths, e.g. 1k,32k,131k,200k (Nk: see README). Default: GPU 1k,4k,32k,131k,200k; CPU 256,1k.")] = None,
    variants: Annotated[str, typer.Option("--variants", help="Registry names, 'all', or heads Hq/Hkv[@W], comma-separated.")] = "all",
    preset: Preset_ = "paper",
    device: Device = "auto",
    dtype: Annotated[str, typer.Option(help="bf16, fp16, fp32, or auto (bf16 on GPU, fp32 on CPU).")] = "auto",
    mode: Annotated[str, typer.Option(help="fwd (inference) or train (forward + backward of a loss).")] = "fwd",
    causal: Annotated[bool, typer.Option("--causal", help="Causal masks (the paper's decoder) instead of the encoder.")] = False,
    window: Annotated[int, typer.Option(help="Sliding window of the windowed variants: |i-j| <= window.")] = 128,
    kernel: Annotated[str, typer.Option(help="auto (sdpa; flex when windowed), eager, sdpa, sdpa-flash, sdpa-cudnn, sdpa-efficient, sdpa-math, flex.")] = "auto",
    tokens: Annotated[int | None, typer.Option(help="Tokens per step; batch = max(1, tokens // seq_len). Default: GPU 131072, CPU 1024.")] = None,
    batch: Annotated[int | None, typer.Option(help="Fixed batch size (overrides --tokens).")] = None,
    warmup: Annotated[int | None, typer.Option(help="Untimed calls after the first (compiling) one. Default: GPU 2, CPU 1.")] = None,
    repeats: Annotated[int | None, typer.Option(help="Timed calls per cell; the median is reported. Default: GPU 10, CPU 3.")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="CSV to write. Default: results/<device>-<timestamp>.csv.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue --out: skip its ok cells, append the rest.")] = False,
    baseline: Annotated[str, typer.Option(help="Variant the final table's speed-ups are relative to.")] = "mha",
) -> None:
    """Time every (variant, length) cell and write one CSV row per cell as it finishes."""
    from sqabench.attention import resolve_kernel
    from sqabench.flops import MODES
    from sqabench.measure import check_dtype_runs, environment, resolve_device
    from sqabench.presets import get_preset
    from sqabench.report import results_table
    from sqabench.results import CsvWriter, cell_key, host_label, read_rows
    from sqabench.sweep import DTYPES, format_len, parse_lengths, plan, run_sweep
    from sqabench.variants import parse_variants

    with usage_errors():
        dev = resolve_device(device)
        defaults = GPU_DEFAULTS if dev.type == "cuda" else CPU_DEFAULTS
        dtype = defaults["dtype"] if dtype == "auto" else dtype
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; choose one of: auto, {', '.join(DTYPES)}")
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
        if window < 1:
            raise ConfigError(f"--window {window} must be >= 1")
        for name, value, lowest in (("--tokens", tokens, 1), ("--batch", batch, 1), ("--warmup", warmup, 0), ("--repeats", repeats, 1)):
            if value is not None and value < lowest:
                raise ConfigError(f"{name} {value} must be >= {lowest}")
        p = get_preset(preset)
        specs = parse_variants(variants, p.n_heads, window)
        lengths = parse_lengths(seq or defaults["seq"])
        for spec in specs:
            resolve_kernel(spec, kernel)
        check_dtype_runs(dev, DTYPES[dtype], dtype)
        env_info = environment(dev)
        path = out_path or Path("results") / f"{host_label(env_info)}-{datetime.now():%Y%m%d-%H%M%S}.csv"
        done = _prepare_output(path, resume, explicit=out_path is not None)
        cells = plan(
            specs, p, lengths, tokens=tokens or defaults["tokens"], batch=batch, dtype=dtype, mode=mode,
            causal=causal, kernel=kernel, device=str(dev), warmup=defaults["warmup"] if warmup is None else warmup,
            repeats=repeats or defaults["repeats"],
        )  # fmt: skip

    where = f"{env_info.gpu_name} ({dev})" if dev.type == "cuda" else "CPU: a quick sweep (pass --seq for more)"
    err.print(
        f"sqabench run on {where}: {len(specs)} variants x lengths {', '.join(f'{format_len(n)}={n}' for n in lengths)}, "
        f"{p.name} preset, {'causal' if causal else 'encoder'}, {mode}, {dtype}",
        highlight=False,
    )
    pending = [c for c in cells if cell_key(c.identity()) not in done]
    if done:
        err.print(f"resuming {path}: {len(cells) - len(pending)} cells already ok, {len(pending)} to run")
    err.print(f"writing {path}")

    writer = CsvWriter(path)
    new_rows: list[dict] = []
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False,
    )  # fmt: skip
    try:
        with progress:
            task = progress.add_task("starting", total=len(pending))
            run_sweep(
                pending,
                writer,
                env_info,
                on_start=lambda cell: progress.update(task, description=cell.label),
                on_row=lambda row: (new_rows.append(row), progress.advance(task)),
            )
            progress.update(task, description="done")
    except KeyboardInterrupt:
        err.print(f"interrupted: {len(new_rows)} finished rows kept in {path}; continue with --resume --out {path}")
        raise typer.Exit(130) from None

    rows = read_rows(path) if path.exists() else []  # with the rows of earlier runs when resumed
    title = f"{env_info.gpu_name or 'CPU'} · {p.name} · {'causal' if causal else 'encoder'} · {mode} · {dtype}"
    if rows:
        out.print(results_table(rows, baseline, title))
    failed = [r for r in new_rows if r["status"] == "error"]
    for row in failed:
        err.print(f"[red]error[/] {row['variant']} @ {row['seq_len']}: {row['error']}", highlight=False, markup=True)
    out.print(f"results: {path}")
    if failed:
        raise typer.Exit(1)


@app.command()
def plot(
    csvs: Annotated[list[Path], typer.Argument(help="Results CSVs; several GPUs or settings are faceted.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the PNG and SVG figures.")] = Path("plots"),
    baseline: Annotated[str, typer.Option(help="Variant the speed-ups are relative to.")] = "mha",
) -> None:
    """Draw time, speed-up, memory, TFLOP/s and paper-comparison figures from results CSVs."""
    from sqabench.plots import make_plots
    from sqabench.results import load_results

    with usage_errors():
        frame = load_results(csvs)
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out {out_dir} is a file; give a directory")
    for path in make_plots(frame, out_dir, baseline):
        out.print(str(path), highlight=False)


@app.command()
def check(
    baseline_csv: Annotated[Path, typer.Argument(metavar="BASELINE", help="Results CSV of the reference run.")],
    current_csv: Annotated[Path, typer.Argument(metavar="CURRENT", help="Results CSV of the run under test.")],
    max_slowdown: Annotated[float, typer.Option(help="Largest allowed per-cell slowdown (0.10 = 10%).")] = 0.10,
    max_mem_growth: Annotated[float, typer.Option(help="Largest allowed per-cell peak-memory growth.")] = 0.05,
    max_ratio_drop: Annotated[float, typer.Option(help="Largest allowed drop of a speed-up over --baseline within the run.")] = 0.05,
    max_geomean_slowdown: Annotated[float, typer.Option(help="Largest allowed geometric-mean slowdown.")] = 0.03,
    baseline: Annotated[str, typer.Option("--baseline", help="Variant the within-run speed-ups are relative to.")] = "mha",
    strict: Annotated[bool, typer.Option("--strict", help="Apply every gate even when the GPUs differ.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write CURRENT as github-action-benchmark customSmallerIsBetter JSON.")] = None,
) -> None:
    """Exit 0 when CURRENT holds against BASELINE, 1 on a regression (each failing cell named), 2 on bad input."""
    from rich.table import Table

    from sqabench.check import Limits, benchmark_json, compare, format_number, markdown, verdict_text

    with usage_errors():
        for name, value in (("--max-slowdown", max_slowdown), ("--max-mem-growth", max_mem_growth),
                            ("--max-ratio-drop", max_ratio_drop), ("--max-geomean-slowdown", max_geomean_slowdown)):  # fmt: skip
            if value < 0:
                raise ConfigError(f"{name} {value} must be >= 0")
        report = compare(baseline_csv, current_csv, Limits(max_slowdown, max_mem_growth, max_ratio_drop, max_geomean_slowdown, baseline, strict))
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    table = Table(title=f"sqabench check: {current_csv} vs {baseline_csv}", title_justify="left")
    for column in ("cell", "baseline ms", "current ms", "ratio", "verdict"):
        table.add_column(column, justify="left" if column in ("cell", "verdict") else "right")
    for v in report.cells:
        style = "" if v.ok else "bold red"
        table.add_row(
            v.cell, format_number(v.baseline_ms), format_number(v.current_ms), format_number(v.ratio, 3),
            verdict_text(v), style=style,
        )  # fmt: skip
    out.print(table)
    if report.geomean_ratio is not None:
        out.print(f"geometric-mean time ratio: {report.geomean_ratio:.3f}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as handle:
            handle.write(markdown(report))
    if json_out is not None:
        json_out.write_text(json.dumps(benchmark_json(report.current), indent=2) + "\n")
    if not report.ok:
        for v in report.failing:
            err.print(f"[bold red]regression:[/] {v.cell}: {'; '.join(v.problems)}", highlight=False)
        for problem in report.problems:
            err.print(f"[bold red]regression:[/] {problem}", highlight=False)
        raise typer.Exit(1)
    out.print("[green]no regression[/]")


def _prepare_output(path: Path, resume: bool, explicit: bool) -> set[tuple[str, ...]]:
    """Check that ``path`` can be written (before any work) and return the keys of its ok cells."""
    from sqabench.results import cell_key, read_rows

    if resume and not explicit:
        raise ConfigError("--resume needs --out FILE: the results file to continue")
    if path.exists() and path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give a .csv file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not explicit:
        parent.mkdir(parents=True, exist_ok=True)
    if not parent.is_dir():
        raise ConfigError(f"--out {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"--out {path} is not writable")
    if path.exists() and path.stat().st_size > 0:
        if not resume:
            raise ConfigError(f"--out {path} exists; pass --resume to continue it, or choose another file")
        return {cell_key(row) for row in read_rows(path) if row["status"] == "ok"}
    return set()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
