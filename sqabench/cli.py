"""The ``sqabench`` command line: parse, call one library function, print."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, get_type_hints

import typer
import typer.core
from rich.console import Console
from rich.text import Text

from sqabench.errors import ConfigError
from sqabench.options import BASELINE_HELP, PRESET_HELP, check_options
from sqabench.quality.options import DEFAULT_SEEDS, QualityOptions
from sqabench.speed.options import FloorOptions, RunOptions, VariantsOptions
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


class Targets(Commands):
    """``sqabench reproduce``'s targets: an unknown one, or an option of another target, is one line naming the
    choices (the parser would print its usage block)."""

    def resolve_command(self, ctx, args):
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            fail(f"unknown target {args[0]!r}; choose one of: {', '.join(self.list_commands(ctx))}")
        name, command, rest = super().resolve_command(ctx, args)
        own = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for other in self.list_commands(ctx):
            theirs = {opt for param in self.get_command(ctx, other).params
                      for opt in (*param.opts, *param.secondary_opts)}  # fmt: skip
            given = [token.split("=", 1)[0] for token in rest if token.split("=", 1)[0] in theirs - own]
            if given:
                fail(f"{', '.join(dict.fromkeys(given))}: for {ctx.info_name} {other} only")
        return name, command, rest


app = typer.Typer(
    cls=Commands,
    help="Benchmark Sparse Query Attention (arXiv 2510.01817) against MHA, GQA, MQA and sliding windows.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: flags shown as flags, [brackets] as typed
)
OFF_TERMINAL_WIDTH = 400  # a file, a pipe or a CI log has no width: what is printed there is never squeezed


class Screen(Console):
    """A console as wide as its terminal; off one (``> file``, ``| tee``, a CI log) as wide as what it prints, so
    that a table is never cut or squeezed to 80 columns. ``COLUMNS``, when set, wins."""

    @property
    def size(self):
        dimensions = super().size
        if not self.is_terminal and "COLUMNS" not in self._environ:
            return dimensions._replace(width=OFF_TERMINAL_WIDTH)
        return dimensions


out = Screen()
err = Screen(stderr=True, soft_wrap=True)

# Options shared by several commands, declared once (sqabench run's own live on RunOptions).
PresetOption = Annotated[str, typer.Option("--preset", metavar="NAME|CONFIG", help=PRESET_HELP)]
DeviceOption = Annotated[str, typer.Option("--device", metavar="NAME", help="auto, cuda or cpu.")]
BaselineOption = Annotated[str | None, typer.Option("--baseline", metavar="VARIANT", help=BASELINE_HELP)]


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


class Said(logging.Handler):
    """sqabench's log (``logging.getLogger("sqabench")``) as lines on stderr: what a library says before a silent
    wait (reading a corpus, training a tokenizer) reaches the user without a callback threaded down to it."""

    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage(), "yellow" if record.levelno >= logging.WARNING else "")


def log_to_stderr() -> None:
    logger = logging.getLogger("sqabench")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(isinstance(handler, Said) for handler in logger.handlers):
        logger.addHandler(Said())


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


@contextmanager
def interrupted_exits(interrupted: type[Exception]) -> Iterator[None]:
    """A library's ``interrupted`` (raised after it said what it kept) becomes its exit code."""
    try:
        yield
    except interrupted as stop:
        raise typer.Exit(stop.code) from None


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
    log_to_stderr()


def variants(options: VariantsOptions) -> None:
    """List the variant family with parameters, attention FLOPs vs MHA and KV cache per token."""
    from sqabench.presets import get_preset
    from sqabench.speed.report import FAMILY_COLUMNS, FAMILY_HEADERS, family_records, records_table
    from sqabench.variants import base_variant, parse_variants

    with usage_errors():
        check_options(options)
        p, fmt = get_preset(options.preset), options.format.lower()
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
            f"{p.n_layers} layers{', tied embeddings' if p.tie_embeddings else ''}; {p.source}); attention FLOPs "
            "vs MHA at the same mask: a window's own saving is not in it (run and floor count it)"
        )
        out.print(records_table(title, records, FAMILY_COLUMNS, FAMILY_HEADERS))


app.command("variants")(command_of(VariantsOptions, variants))


@app.command()
def env(device: DeviceOption = "auto") -> None:
    """Show the device, GPU, driver, CUDA, torch, cuDNN, triton, host CPU and NVML state that rows carry."""
    from dataclasses import asdict

    from sqabench.device import resolve_device
    from sqabench.environment import environment
    from sqabench.speed.report import records_table

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
    from sqabench.device import resolve_device
    from sqabench.dtypes import get_dtype
    from sqabench.environment import environment
    from sqabench.speed.ceilings import cache_path, describe, get_ceilings
    from sqabench.speed.peaks import peaks_for
    from sqabench.speed.report import ceilings_table

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
    from sqabench.speed.doctor import run_doctor, summary
    from sqabench.speed.report import doctor_tables

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


def floor(options: FloorOptions) -> None:
    """The cost model's floor of every variant on a GPU's published peaks: which limit binds, and how hard."""
    from sqabench.speed.report import floor_table
    from sqabench.speed.request import resolve_floor

    with usage_errors():
        name, rates, p, cells = resolve_floor(options)
    settings = cells[0].settings
    title = (
        f"floor on the published peaks of the {name} ({rates.matmul_flops / 1e12:.4g} TFLOP/s {settings.dtype}, "
        f"{rates.exp_per_s / 1e12:.3g} T exp/s, {rates.bytes_per_s / 1e12:.3g} TB/s) · {p.name} · "
        f"{'causal' if settings.causal else 'encoder'} · {settings.mode}"
        + (f" · {settings.new_tokens} new tokens" if settings.mode == "decode" else "")
    )
    out.print(Text(title, style="bold"), soft_wrap=True)
    out.print(floor_table(cells, rates))


app.command("floor")(command_of(FloorOptions, floor))


def run(options: "RunOptions") -> None:
    """Time every (variant, length) cell and write one CSV row per cell as it finishes."""
    from sqabench.speed.request import resolve_run
    from sqabench.speed.runner import execute

    with usage_errors():
        code = execute(resolve_run(options), out, err)
    raise typer.Exit(code)


app.command("run")(command_of(RunOptions, run))


reproduce_app = typer.Typer(
    cls=Targets,
    help="Run one of the paper's protocols and print our numbers beside the paper's, claim by claim.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(reproduce_app, name="reproduce")
OutOption = Annotated[str | None, typer.Option("--out", metavar="FILE", help="CSV to write.")]
PlotsOption = Annotated[
    Path | None, typer.Option("--plots", metavar="DIR", help="Where the figures go. Default: beside --out.")
]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue --out.")]
BudgetOption = Annotated[str | None, typer.Option(metavar="DURATION", help="As sqabench run --budget.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan and its estimate, run nothing.")]


@reproduce_app.command("paper")
def reproduce_paper(
    seq: Annotated[
        str | None, typer.Option(metavar="LENGTHS", help="paper: the lengths (default GPU 32k,131k,200k; CPU 1k,4k).")
    ] = None,  # fmt: skip
    device: DeviceOption = "auto",
    out_path: OutOption = None,
    plots: PlotsOption = None,
    resume: ResumeOption = False,
    budget: BudgetOption = None,
    dry_run: DryRunOption = False,
    yes: Annotated[bool, typer.Option("--yes", help="Start a run estimated past an hour without asking.")] = False,
) -> None:
    """The paper's Table 3 protocol (speed): ours beside its table, claim by claim, and the paper figure."""
    from sqabench.speed.reproduce import reproduce_paper

    with usage_errors():
        code = reproduce_paper(out, err, device, plots, seq=seq, out=out_path, resume=resume, budget=budget,
                               dry_run=dry_run, yes=yes)  # fmt: skip
    raise typer.Exit(code)


@reproduce_app.command("quality")
def reproduce_quality(
    data: Annotated[
        str | None,
        typer.Option("--data", metavar="PATH", help="quality: the text corpus (as sqabench quality --data)."),
    ] = None,
    seq: Annotated[
        str | None,
        typer.Option(
            metavar="LENGTH",
            help="quality: the context, one length (default on a GPU 1024, with --moe 256; on a CPU 256).",
        ),
    ] = None,  # fmt: skip
    device: DeviceOption = "auto",
    out_path: OutOption = None,
    plots: PlotsOption = None,
    resume: ResumeOption = False,
    budget: BudgetOption = None,
    dry_run: DryRunOption = False,
    moe: Annotated[
        bool, typer.Option("--moe", help="quality: Table 2's MoE protocol (paper-moe) instead of Table 1's.")
    ] = False,  # fmt: skip
    seeds: Annotated[int | None, typer.Option(metavar="N", help=f"quality: seeds (default {DEFAULT_SEEDS}).")] = None,
    steps: Annotated[int | None, typer.Option(metavar="N", help="quality: steps instead of --budget.")] = None,
    tokenizer: Annotated[str | None, typer.Option(metavar="NAME", help="quality: bpe (default) or bytes.")] = None,
    pad_like_paper: Annotated[
        bool,
        typer.Option(
            "--pad-like-paper", help="quality: the paper's padding, the pads scored, beside the real-token numbers."
        ),
    ] = False,  # fmt: skip
) -> None:
    """The paper's quality protocol (Table 1; --moe Table 2): ours beside its table and what differs."""
    from sqabench.quality.flow import Interrupted
    from sqabench.quality.reproduce import reproduce_quality

    with usage_errors(), interrupted_exits(Interrupted):
        reproduce_quality(out, err, moe, device, seq, plots, data=data, seeds=seeds, steps=steps, budget=budget,
                          out=out_path, resume=resume, dry_run=dry_run, tokenizer=tokenizer,
                          pad_like_paper=pad_like_paper or None)  # fmt: skip


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
    from sqabench.quality.figures import plot_quality
    from sqabench.quality.rows import is_quality_csv
    from sqabench.speed.plots import make_plots
    from sqabench.speed.results import load_results, newest_results, resolve_baseline

    with usage_errors():
        if not csvs:
            csvs = [newest_results()]
            say(f"plotting {csvs[0]}, the newest results file")
        if any(is_quality_csv(path) for path in csvs):
            written, notes = plot_quality(csvs, out_dir, baseline)
            return print_figures(written, notes)
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
    print_figures(written, notes)


def print_figures(written: list[Path], notes: list[str]) -> None:
    for note in notes:
        say(f"note: {note}")
    for path in written:
        out.print(Text(str(path)), highlight=False)


@app.command()
def report(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE",
            help="Results CSVs of sqabench run or sqabench quality (any version), re-read as they are.",
            show_default=False,
        ),
    ],
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            metavar="VARIANT",
            help="Variant to pair against (speed-ups, quality differences). Default: the run's, else mha.",
        ),
    ] = None,
    also_against: Annotated[
        str | None,
        typer.Option(
            "--also-against",
            metavar="VARIANTS",
            help="Quality: also pair every variant against these (e.g. gqa), in the one family of verdicts.",
        ),
    ] = None,
    margin: Annotated[
        str | None,
        typer.Option(
            "--margin",
            metavar="MARGIN",
            help="Quality: the closeness claims' margin (text: a share of the loss, default "
            "the paper's MHA-GQA gap; MQAR: an accuracy, default 0.05).",
        ),
    ] = None,
    confirm: Annotated[
        Path | None,
        typer.Option(
            "--confirm",
            metavar="FIRST",
            help="Quality: test FIRST's findings on this file's fresh seeds (those FIRST did not use).",
        ),
    ] = None,
) -> None:
    """Print the tables a finished run printed, from its file alone: no training, no GPU, no torch."""
    from sqabench.quality.report import report_quality
    from sqabench.quality.rows import is_quality_csv
    from sqabench.quality.summary import parse_also, parse_margin
    from sqabench.speed.report import report_results

    with usage_errors():
        quality_options = {"also": parse_also(also_against), "margin": parse_margin(margin), "confirm": confirm}
    with usage_errors():
        missing = next((path for path in files if not path.is_file()), None)
        if missing is not None:
            raise ConfigError(f"no such results file: {missing}")
        shards = [path for path in files if is_quality_csv(path)]
        if len(shards) > 1:  # several quality files: the shards of one run (--shard), read as one
            from sqabench.quality.report import report_shards

            out.print(Text(f"{len(shards)} quality files as one run: {', '.join(map(str, shards))}", style="bold"),
                      highlight=False)  # fmt: skip
            for note in report_shards(shards, baseline, out, **quality_options):
                say(f"note: {note}")
            files = [path for path in files if path not in shards]
    for path in files:
        with usage_errors():
            out.print(Text(f"{path}", style="bold"), highlight=False)
            if is_quality_csv(path):
                notes = report_quality(path, baseline, out, **quality_options)
            else:
                notes = report_results(path, baseline, out)
        for note in notes:
            say(f"note: {note}")


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(
        metavar="BASELINE... CURRENT", show_default=False,
        help="Results CSVs: the baseline's runs (one file or several; a file may hold several runs, as run --runs K "
        "writes it), then the run under test, last.")],
    max_slowdown: Annotated[str, typer.Option(
        metavar="LIMIT", help="Largest allowed per-cell slowdown, as 10% or 0.10.")] = "10%",
    max_mem_growth: Annotated[str, typer.Option(
        metavar="LIMIT", help="Largest allowed per-cell peak-memory growth, as 5% or 0.05.")] = "5%",
    max_ratio_drop: Annotated[str, typer.Option(
        metavar="LIMIT", help="Largest allowed drop of a speed-up over --baseline within its run, as 5% or 0.05."
    )] = "5%",
    max_geomean_slowdown: Annotated[str, typer.Option(
        metavar="LIMIT", help="Largest allowed geometric-mean slowdown, as 3% or 0.03.")] = "3%",
    baseline: Annotated[str | None, typer.Option("--baseline", metavar="VARIANT", help=(
        "Variant the speed-up gate measures over. Default: the one the runs recorded (run --baseline), else mha "
        "when both runs have it."))] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Apply the time and geometric-mean gates even when the GPU models differ.")] = False,
    allow_unjudged: Annotated[bool, typer.Option(
        "--allow-unjudged", help="Pass although some gates could not tell (never when one failed).")] = False,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json", metavar="FILE", help="Write CURRENT as github-action-benchmark customSmallerIsBetter JSON."
        ),
    ] = None,
) -> None:  # fmt: skip
    """Exit 0 when CURRENT holds against BASELINE, 1 on a regression or when a gate cannot tell (each cell named),
    2 on bad input."""
    from sqabench.speed.check import Limits, gate

    with usage_errors():
        if len(files) < 2:
            raise ConfigError("check needs a BASELINE and a CURRENT results CSV (the baseline may be several files)")
        limits = Limits.parse(max_slowdown=max_slowdown, max_mem_growth=max_mem_growth, max_ratio_drop=max_ratio_drop,
                              max_geomean_slowdown=max_geomean_slowdown, baseline_variant=baseline, strict=strict,
                              allow_unjudged=allow_unjudged)  # fmt: skip
        *baselines, current = files
        code = gate(baselines if len(baselines) > 1 else baselines[0], current, limits, out, err, json_out)
    raise typer.Exit(code)


def quality(options: "QualityOptions") -> None:
    """Train every variant from scratch on the same data and seeds: its quality, with the noise stated."""
    from sqabench.quality.flow import Interrupted, run_quality

    with usage_errors(), interrupted_exits(Interrupted):
        run_quality(options, out, err)


app.command("quality")(command_of(QualityOptions, quality))


@app.command()
def tokenize(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="The corpus, as sqabench quality --data takes it.")],
    tokenizer: Annotated[str, typer.Option(metavar="NAME", help="bpe (pip install 'sqabench[bpe]') or bytes.")] = "bpe",
    vocab: Annotated[int | None, typer.Option(metavar="N", help="The BPE's vocabulary (default 4096).")] = None,
    held_out: Annotated[float, typer.Option(metavar="FRACTION", help="Share of the documents held out.")] = 0.05,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="The tokens file (.tokens). Default: beside DATA, named by its tokenizer."
        ),
    ] = None,  # fmt: skip
) -> None:
    """Split and tokenize a corpus once, into a file that sqabench quality --data reads on a machine without the
    tokenizer (a GPU machine): the same documents held out, the same tokens."""
    from sqabench.quality.tokens import tokens_file

    with usage_errors():
        path, tokens = tokens_file(data, tokenizer, vocab, held_out, out_path)
    count = sum(map(len, tokens.train)), sum(map(len, tokens.held))
    out.print(Text(f"{path}: {len(tokens.train)} training documents ({count[0]:,} tokens) and {len(tokens.held)} "
                   f"held-out ({count[1]:,} tokens), {tokens.tokenizer.name} of {tokens.tokenizer.vocab} tokens"),
              highlight=False)  # fmt: skip


def _terminated(signum, frame) -> None:
    """SIGTERM (what a CI job's timeout sends) ends a command as Ctrl-C does: what finished is kept, the lock is
    let go, and the line says how to go on."""
    raise KeyboardInterrupt


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    app()


if __name__ == "__main__":
    main()
