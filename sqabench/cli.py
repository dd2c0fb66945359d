"""The ``sqabench`` command line: parse, call one library function, print."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, get_type_hints

import typer
import typer.core
from rich.console import Console
from rich.text import Text

from sqabench.errors import ConfigError
from sqabench.options import PRESET_HELP, QualityOptions, RunOptions
from sqabench.version import __version__

def repeated_option(command, args: list[str]) -> str | None:
    """The first option that ``args`` give twice (a flag and its --no- form count as one), or None: the parser
    would keep the last one silently, and ``--seq 1k --seq 2k`` would time 2k alone."""
    names: dict[str, tuple[str, bool]] = {}  # each spelling -> (the option's name, whether it takes a value)
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option" and not getattr(param, "multiple", False):
            for opt in (*param.opts, *param.secondary_opts):
                names[opt] = (param.name, not param.is_flag)
    seen: dict[str, str] = {}
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            break
        spelling = token.split("=", 1)[0]
        if spelling not in names:
            continue
        name, takes_value = names[spelling]
        if name in seen:
            return spelling if spelling == seen[name] else f"{seen[name]} and {spelling}"
        seen[name] = spelling
        if takes_value and "=" not in token:
            next(tokens, None)  # its value, whatever it looks like
    return None


class Commands(typer.core.TyperGroup):
    """sqabench's commands, with one more usage check than the parser makes: no option given twice."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        repeated = repeated_option(command, rest) if command is not None else None
        if repeated:
            fail(f"{repeated} given more than once; give each option once (--seq and --variants take "
                 "comma-separated lists)")  # fmt: skip
        return name, command, rest


app = typer.Typer(
    cls=Commands,
    help="Benchmark Sparse Query Attention (arXiv 2510.01817) against MHA, GQA, MQA and sliding windows.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: flags shown as flags, [brackets] as typed
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

# Options shared by several commands, declared once (sqabench run's own live on RunOptions).
PresetOption = Annotated[str, typer.Option("--preset", metavar="NAME|CONFIG", help=PRESET_HELP)]
DeviceOption = Annotated[str, typer.Option("--device", metavar="NAME", help="auto, cuda or cpu.")]
_RUN_OPTIONS = get_type_hints(RunOptions, include_extras=True)  # run's options, reused where another command has them
VariantsOption, WindowOption = _RUN_OPTIONS["variants"], _RUN_OPTIONS["window"]
BaselineOption = Annotated[
    str | None,
    typer.Option(
        "--baseline", metavar="VARIANT", help="Variant the speed-ups are relative to. Default: mha, when present."
    ),
]


def command_of(options_type: type, body: Callable) -> Callable:
    """A Typer command whose options are the fields of the dataclass ``options_type`` (each carrying its
    own ``typer.Option``), calling ``body(options_type(**given))``: the options are written once."""
    hints = get_type_hints(options_type, include_extras=True)
    parameters = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in dataclasses.fields(options_type)
    ]

    def command(**given) -> None:
        body(options_type(**given))

    command.__signature__ = inspect.Signature(parameters)
    command.__doc__ = body.__doc__
    return command


def say(message: str, style: str = "") -> None:
    """A line on stderr, printed as text (never parsed as markup)."""
    err.print(Text(message, style=style), highlight=False)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit code 2: the answer to every bad input."""
    err.print(Text("error: ", style="bold red") + Text(message), highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def usage_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as error:
        fail(str(error))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sqabench {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark Sparse Query Attention (arXiv 2510.01817) against MHA, GQA, MQA and sliding windows."""


@app.command()
def variants(
    preset: PresetOption = "paper",
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="table, csv or json.")] = "table",
) -> None:
    """List the variant family with parameters, attention FLOPs vs MHA and KV cache per token."""
    from sqabench.presets import get_preset
    from sqabench.report import FAMILY_COLUMNS, FAMILY_HEADERS, family_records, records_table
    from sqabench.variants import base_variant, parse_variants

    with usage_errors():
        p = get_preset(preset)
        fmt = fmt.lower()
        if fmt not in ("table", "csv", "json"):
            raise ConfigError(f"unknown format {fmt!r}; choose one of: table, csv, json")
        base = base_variant(p.n_heads, p.n_kv_heads, p.sliding_window)
        records = family_records(parse_variants("all", p.n_heads, base=base), p)
    if fmt == "json":
        typer.echo(json.dumps(records, indent=2))
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FAMILY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        typer.echo(buffer.getvalue(), nl=False)
    else:
        title = (
            f"SQA family, preset {p.name} (d_model {p.d_model}, H {p.n_heads}, d_head {p.head_dim}, "
            f"{p.n_layers} layers{', tied embeddings' if p.tie_embeddings else ''}; {p.source})"
        )
        out.print(records_table(title, records, FAMILY_COLUMNS, FAMILY_HEADERS))


@app.command()
def env(device: DeviceOption = "auto") -> None:
    """Show the device, GPU, driver, CUDA, torch, cuDNN, triton, host CPU and NVML state that rows carry."""
    from dataclasses import asdict

    from sqabench.device import resolve_device
    from sqabench.environment import environment
    from sqabench.report import records_table

    with usage_errors():
        dev = resolve_device(device)
    records = [{"field": k, "value": v} for k, v in asdict(environment(dev)).items()]
    out.print(records_table("sqabench environment", records, ("field", "value")))


@app.command()
def ceilings(
    device: DeviceOption = "auto",
    dtype: Annotated[
        str, typer.Option(metavar="DTYPE", help="bf16, fp16, fp32, or auto (bf16 on GPU, fp32 on CPU).")
    ] = "auto",
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again even when cached.")] = False,
) -> None:
    """Measure (or show the cached) matmul, exponential and memory rates of this device, beside published peaks."""
    from sqabench.ceilings import cache_path, describe, get_ceilings
    from sqabench.device import resolve_device
    from sqabench.dtypes import get_dtype
    from sqabench.environment import environment
    from sqabench.peaks import peaks_for
    from sqabench.report import ceilings_table

    with usage_errors():
        dev = resolve_device(device)
        name = ("bf16" if dev.type == "cuda" else "fp32") if dtype.lower() == "auto" else get_dtype(dtype).name
    env_info = environment(dev)
    say(f"cache: {cache_path()}")
    lookup = get_ceilings(dev, env_info, name, refresh=refresh, before=say)
    published = peaks_for(env_info.gpu_name, name)
    out.print(Text(f"ceilings of {env_info.gpu_name or env_info.cpu_model} ({dev}), {name}", style="bold"))
    out.print(ceilings_table(lookup.ceilings, published))
    out.print(Text(f"{describe(lookup)}; cache: {cache_path()}"), highlight=False)


@app.command()
def doctor(
    device: DeviceOption = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """What this machine can run: versions, the device, which kernels run which shapes, speed, CUDA graphs, NVML,
    ceilings. Exit 0 when the default sweep can run, 1 naming what cannot."""
    from sqabench.device import resolve_device
    from sqabench.doctor import run_doctor, summary
    from sqabench.report import doctor_tables

    with usage_errors():
        dev = resolve_device(device)
    if not json_out:
        say(f"sqabench doctor on {dev}: a minute at most" + ("" if dev.type == "cuda" else "; GPU parts are skipped"))
    checks, interrupted = run_doctor(dev)
    result = summary(checks, interrupted)
    if json_out:
        typer.echo(json.dumps(result, indent=1))
    else:
        for table in doctor_tables(checks):
            out.print(table)
        for line in result["broken"]:
            say(f"not ready: {line}", "bold red")
        if not interrupted:
            out.print(Text("ready for the default sweep" if result["ok"] else "not ready: see above",
                           style="green" if result["ok"] else "bold red"))  # fmt: skip
    if interrupted:
        say("interrupted: the checks above are the ones made", "yellow")
        raise typer.Exit(130)
    raise typer.Exit(0 if result["ok"] else 1)


@app.command()
def floor(
    gpu: Annotated[
        str,
        typer.Option("--gpu", metavar="NAME", help="A GPU of the published-peaks table, e.g. 'H100 SXM', 'A100 40GB'."),
    ] = "H100 SXM",
    seq: Annotated[str, typer.Option(metavar="LENGTHS", help="Lengths, e.g. 1k,32k,200k.")] = "1k,32k,200k",
    variants: VariantsOption = "all",
    window: WindowOption = 128,
    preset: PresetOption = "paper",
    dtype: Annotated[str, typer.Option(metavar="DTYPE", help="bf16, fp16 or fp32.")] = "bf16",
    mode: Annotated[str, typer.Option(metavar="MODE", help="fwd, train or decode.")] = "fwd",
    causal: Annotated[bool, typer.Option("--causal", help="Causal masks instead of the encoder.")] = False,
    tokens: Annotated[
        int, typer.Option(metavar="TOKENS", help="Tokens per step; batch = max(1, tokens // seq_len).")
    ] = 131072,
    new_tokens: Annotated[
        int, typer.Option(metavar="T", help="Decode: tokens generated per pass after the --seq context.")
    ] = 32,
) -> None:
    """The cost model's floor of every variant on a GPU's published peaks: which limit binds, and how hard."""
    from sqabench.cells import plan
    from sqabench.dtypes import get_dtype
    from sqabench.flops import MODES
    from sqabench.lengths import parse_lengths
    from sqabench.peaks import published_gpu
    from sqabench.presets import get_preset
    from sqabench.report import floor_table
    from sqabench.variants import base_variant, parse_variants

    with usage_errors():
        dtype = get_dtype(dtype).name
        name, rates = published_gpu(gpu, dtype)
        mode = mode.lower()
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
        for flag, value in (("--tokens", tokens), ("--new-tokens", new_tokens), ("--window", window)):
            if value < 1:
                raise ConfigError(f"{flag} {value} must be >= 1")
        p, lengths = get_preset(preset), parse_lengths(seq)
        base = base_variant(p.n_heads, p.n_kv_heads, p.sliding_window)  # a config's own heads, as in run
        cells = plan(
            parse_variants(variants, p.n_heads, window, base), p, lengths, tokens=tokens, batch=None, dtype=dtype,
            mode=mode, causal=causal, kernel="auto", device="cuda", warmup=0, repeats=1, new_tokens=new_tokens,
        )  # fmt: skip
    title = (
        f"floor on the published peaks of the {name} ({rates.matmul_flops / 1e12:.4g} TFLOP/s {dtype}, "
        f"{rates.exp_per_s / 1e12:.3g} T exp/s, {rates.bytes_per_s / 1e12:.3g} TB/s) · {p.name} · "
        f"{'causal' if cells[0].causal else 'encoder'} · {mode}"
        + (f" · {new_tokens} new tokens" if mode == "decode" else "")
    )
    out.print(Text(title, style="bold"), soft_wrap=True)
    out.print(floor_table(cells, rates))


def run(options: "RunOptions") -> None:
    """Time every (variant, length) cell and write one CSV row per cell as it finishes."""
    from sqabench.request import resolve_run
    from sqabench.runner import execute

    with usage_errors():
        plan = resolve_run(options)
    if plan.dry_run:
        with usage_errors():
            raise typer.Exit(execute(plan, out, err))
    if plan.launch:  # start the ranks through torch's launcher; they join below, as a torchrun job
        from sqabench.cp import launch

        argv = ["run", *dataclasses.replace(options, out=str(plan.path)).argv()]
        say(f"sqabench run --cp {plan.world}: starting {plan.world} ranks with torch.distributed.run")
        raise typer.Exit(launch(plan.world, argv))
    if plan.world > 1:
        from sqabench.runner import execute_split

        raise typer.Exit(execute_split(plan, out, err))
    with usage_errors():
        code = execute(plan, out, err)
    raise typer.Exit(code)


app.command("run")(command_of(RunOptions, run))


@app.command()
def reproduce(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="What to reproduce: paper (its Table 3).")],
    seq: Annotated[
        str | None, typer.Option(metavar="LENGTHS", help="Lengths. Default: GPU 32k,131k,200k; CPU 1k,4k.")
    ] = None,
    device: DeviceOption = "auto",
    out_path: Annotated[str | None, typer.Option("--out", metavar="FILE", help="CSV to write.")] = None,
    plots: Annotated[
        Path | None, typer.Option("--plots", metavar="DIR", help="Where the paper figure goes. Default: beside --out.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue --out.")] = False,
    budget: Annotated[str | None, typer.Option(metavar="DURATION", help="As sqabench run --budget.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the cells and the estimate, run nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Start a run estimated past an hour without asking.")] = False,
) -> None:
    """Run the paper's Table 3 protocol and print our numbers beside the paper's, claim by claim."""
    from sqabench import reproduce as protocol
    from sqabench.device import resolve_device
    from sqabench.report import reproduce_tables
    from sqabench.request import resolve_run
    from sqabench.results import load_results, read_rows
    from sqabench.runner import execute

    with usage_errors():
        on_gpu = resolve_device(device).type == "cuda"
        options = protocol.options(target.lower(), on_gpu, seq=seq, device=device, out=out_path, resume=resume,
                                   budget=budget, dry_run=dry_run, yes=yes)  # fmt: skip
        plan = resolve_run(options)
        code = execute(plan, out, err)
    if dry_run or not plan.path.exists():
        raise typer.Exit(code)
    rows = read_rows(plan.path)
    ours = protocol.our_times(rows)
    for title, table in reproduce_tables(ours, protocol.paper_times(), protocol.verdicts(ours), on_gpu):
        out.print(Text(title, style="bold"), highlight=False)
        out.print(table)
    for difference in protocol.differences(rows, on_gpu):
        say(f"differs from the paper: {difference}")
    from sqabench.plots import make_plots

    folder = plots or plan.path.with_name(plan.path.stem + "-plots")
    written, _ = make_plots(load_results(plan.path), folder, "mha")
    for path in written:
        if path.stem in ("paper", "speedup"):
            out.print(Text(str(path)), highlight=False)
    raise typer.Exit(code)


@app.command()
def plot(
    csvs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="CSV",
            help="Results CSVs; settings and GPUs become separate panels. Default: the newest in results/.",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Directory for the PNG and SVG figures.")
    ] = Path("plots"),
    baseline: BaselineOption = None,
) -> None:
    """Draw time, speed-up, memory, throughput and paper-comparison figures from results CSVs."""
    from sqabench.plots import make_plots
    from sqabench.results import load_results, newest_results, resolve_baseline

    with usage_errors():
        if not csvs:
            csvs = [newest_results()]
            say(f"plotting {csvs[0]}, the newest results file")
        frame = load_results(csvs)
        baseline = resolve_baseline(frame, baseline)
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out {out_dir} is a file; give a directory")
        try:
            written, notes = make_plots(frame, out_dir, baseline)
        except OSError as error:
            raise ConfigError(f"--out {out_dir}: cannot write figures there: {error.strerror or error}") from None
        except KeyboardInterrupt:
            say("interrupted: the figures written so far are whole; none is half written", "yellow")
            raise typer.Exit(130) from None
    for note in notes:
        say(f"note: {note}")
    for path in written:
        out.print(Text(str(path)), highlight=False)


@app.command()
def check(
    baseline_csv: Annotated[Path, typer.Argument(metavar="BASELINE", help="Results CSV of the reference run.")],
    current_csv: Annotated[Path, typer.Argument(metavar="CURRENT", help="Results CSV of the run under test.")],
    max_slowdown: Annotated[
        float, typer.Option(metavar="FRACTION", help="Largest allowed per-cell slowdown (0.10 = 10%), beyond noise.")
    ] = 0.10,
    max_mem_growth: Annotated[
        float, typer.Option(metavar="FRACTION", help="Largest allowed per-cell peak-memory growth.")
    ] = 0.05,
    max_ratio_drop: Annotated[
        float,
        typer.Option(metavar="FRACTION", help="Largest allowed drop of a speed-up over --baseline within the run."),
    ] = 0.05,
    max_geomean_slowdown: Annotated[
        float, typer.Option(metavar="FRACTION", help="Largest allowed geometric-mean slowdown, beyond noise.")
    ] = 0.03,
    baseline: BaselineOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Apply every gate even when the GPUs differ.")] = False,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json", metavar="FILE", help="Write CURRENT as github-action-benchmark customSmallerIsBetter JSON."
        ),
    ] = None,
) -> None:
    """Exit 0 when CURRENT holds against BASELINE, 1 on a regression (each failing cell named), 2 on bad input."""
    from sqabench.check import Limits, baseline_line, benchmark_json, compare, markdown
    from sqabench.report import check_table

    with usage_errors():
        limits = Limits(max_slowdown, max_mem_growth, max_ratio_drop, max_geomean_slowdown, baseline, strict)
        if json_out is not None:
            writable_file(json_out, "--json")
        report = compare(baseline_csv, current_csv, limits)
    for warning in report.warnings:
        say(f"warning: {warning}", "yellow")
    out.print(check_table(report, baseline_csv, current_csv))
    if report.baseline_variant:
        out.print(Text(baseline_line(report)), highlight=False)
    if report.geomean_ratio is not None:
        out.print(f"geometric-mean time ratio: {report.geomean_ratio:.3f} (at least {report.geomean_low:.3f})")
    if not report.ok:
        for v in report.failing:
            say(f"regression: {v.cell}: {'; '.join(v.problems)}", "bold red")
        for problem in report.problems:
            say(f"regression: {problem}", "bold red")
    else:
        out.print(Text("no regression", style="green"))
    # The verdict is said first: a file that cannot be written is an error of its own, never one that masks it.
    written = []
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        written.append(write_quietly(Path(summary), markdown(report, baseline_csv, current_csv),
                                     "GITHUB_STEP_SUMMARY", "a"))
    if json_out is not None:
        text = json.dumps(benchmark_json(report.current), indent=2) + "\n"
        written.append(write_quietly(json_out, text, "--json", "w"))
    if not report.ok:
        raise typer.Exit(1)
    if not all(written):
        raise typer.Exit(2)


def quality(options: "QualityOptions") -> None:
    """Train every variant from scratch on the same data and seeds: its quality, with the noise stated."""
    from sqabench.quality import claims, resolve_quality, run_quality, summarise
    from sqabench.report import quality_table

    with usage_errors():
        plan, env = resolve_quality(options)
    cfg, total, done = plan.cfg, len(plan.specs) * len(plan.seeds), []
    say(f"sqabench quality on {env.gpu_name or 'CPU'}: MQAR (vocab {cfg.task.vocab}, length {cfg.task.seq_len}, "
        f"{cfg.task.pairs} pairs), {len(plan.specs)} variants x {len(plan.seeds)} seeds, {cfg.steps} steps of "
        f"{cfg.batch} examples; writing {plan.path}")  # fmt: skip

    def finished(row: dict) -> None:
        done.append(row)
        say(f"[{len(done)}/{total}] {row['variant']} seed {row['seed']}: accuracy {float(row['val_accuracy']):.3f}"
            f"{' (solved)' if row['solved'] else ''}, {float(row['step_ms']):.3g} ms a step, {row['wall_s']} s")

    def heard(label: str, point: dict) -> None:
        say(f"  {label}: step {point['step']}/{cfg.steps}, loss {point['train_loss']:.3g}, held-out accuracy "
            f"{point['val_accuracy']:.3f}", "dim")

    try:
        rows = run_quality(plan, env, on_start=lambda label: say(f"training {label} ..."), on_eval=heard,
                           on_row=finished)  # fmt: skip
    except KeyboardInterrupt:
        say(f"interrupted: {len(done)} finished run{'' if len(done) == 1 else 's'} kept in {plan.path}"
            if done else "interrupted before any run finished: no row written", "yellow")  # fmt: skip
        raise typer.Exit(130) from None
    out.print(quality_table(summarise(rows, plan.baseline), plan.baseline, len(plan.seeds)))
    for claim, said in claims(rows):
        out.print(Text(f"{claim}: {said}"), highlight=False)
    out.print(Text(f"results: {plan.path} (curves: {plan.curves_path})"), highlight=False)


app.command("quality")(command_of(QualityOptions, quality))


def writable_file(path: Path, option: str) -> None:
    """Refuse, before any work, a file ``option`` could not write: a directory, or a missing or read-only folder."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: directory {parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK) or not path.exists() and not os.access(parent, os.W_OK):
        raise ConfigError(f"{option} {path} is not writable")


def write_quietly(path: Path, text: str, what: str, mode: str) -> bool:
    """Write ``text`` to ``path``; a failure is one error line (no traceback), and False."""
    try:
        with open(path, mode) as handle:
            handle.write(text)
    except OSError as error:
        err.print(Text("error: ", style="bold red") + Text(f"{what} {path}: cannot write: {error.strerror or error}"))
        return False
    return True


def main() -> None:
    app()


if __name__ == "__main__":
    main()
