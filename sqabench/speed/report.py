"""Rich tables for people: the variant family, a run's results (one table per setting), the environment.

Every text that comes from data (variant names, errors) goes in as plain ``Text``, never as markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from sqabench.flops import amdahl, memory_ms
from sqabench.speed.results import SETTING_KEY, key_of, normal, setting_title, shared_words
from sqabench.units import format_len, format_ms
from sqabench.variants import heads_label

if TYPE_CHECKING:
    from sqabench.presets import Preset
    from sqabench.variants import VariantSpec


def records_table(
    title: str, records: Sequence[dict], columns: Sequence[str], headers: Sequence[str] | None = None
) -> Table:
    table = Table(title=title, title_justify="left")
    for column, header in zip(columns, headers or columns):
        left = column in ("variant", "field", "value", "note")
        table.add_column(header, justify="left" if left else "right", no_wrap=column in ("variant", "params"))
    for record in records:
        table.add_row(*(Text(normal(record[column]) or "-") for column in columns))
    return table


def format_bytes(value: object) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if number < 1024 or unit == "GiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    raise AssertionError("unreachable")


def format_rate(flops_per_s: float) -> str:
    """FLOP/s in the unit that fits: GFLOP/s on a CPU, TFLOP/s on a GPU."""
    return f"{flops_per_s / 1e12:.3g} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.3g} GFLOP/s"


def by_setting(rows: Iterable[dict]) -> dict[tuple[str, ...], list[dict]]:
    """Rows grouped by setting; within one, the last row of each cell (a resume may repeat a cell)."""
    groups: dict[tuple[str, ...], dict[tuple[str, ...], dict]] = {}
    for row in rows:
        groups.setdefault(key_of(row, SETTING_KEY), {})[key_of(row)] = row
    return {setting: list(cells.values()) for setting, cells in groups.items()}


def results_tables(rows: Iterable[dict], baseline: str | None) -> list[tuple[str, Table]]:
    """(title, table) per setting: variant x (length, batch), never two settings in one table."""
    return [(setting_title(group[0]), results_table(group, baseline)) for group in by_setting(rows).values()]


def results_table(rows: list[dict], baseline: str | None) -> Table:
    """Median time with its spread; speed-up over ``baseline`` beside the whole-step FLOP ratio."""
    points = sorted({(int(r["seq_len"]), int(r["batch"])) for r in rows})
    variants = list(dict.fromkeys(str(r["variant"]) for r in rows))
    cells = {(str(r["variant"]), int(r["seq_len"]), int(r["batch"])): r for r in rows}
    decode = rows[0].get("mode") == "decode"
    caption = f"median ±{SPREAD_MEANS}" + (", per decode step (a repeat is a pass of T tokens)" if decode else "")
    if baseline:
        allowed = "byte ratio (decode reads)" if decode else "FLOP ratio"
        caption += f"; speed-up over {baseline}, then the {allowed} the cost model allows for the whole step"
    if any(normal(r.get("attention_share")) for r in rows):
        caption += (f"; --breakdown: attention's share of a profiled step, and the whole-step speed-up over "
                    f"{baseline} that the attention time alone explains (Amdahl)")  # fmt: skip
    if decode:
        caption += "; memory-bound: the bytes of a step at the measured copy bandwidth"
    table = Table(caption=caption, caption_justify="left")
    table.add_column("variant")
    table.add_column("Hq/Hkv", justify="right")
    for n, b in points:
        table.add_column(f"{format_len(n)} x{b}", justify="right")
    for variant in variants:
        first = next(r for r in rows if str(r["variant"]) == variant)
        heads = heads_label(normal(first["n_q_heads"]), normal(first["n_kv_heads"]), normal(first["window"]))
        line = [Text(variant), Text(heads)]
        for n, b in points:
            base = cells.get((baseline, n, b)) if baseline else None
            line.append(cell_text(cells.get((variant, n, b)), base, variant == baseline))
        table.add_row(*line)
    return table


LAUNCH_BOUND = 2.0  # a decode step this many times its memory-bound prediction is bound by its launches
# What the ± of a table means, said the same way wherever a spread is printed (tables, check --json).
SPREAD_MEANS = " spread: (max - min) / median of the repeats, the full range (not half of it)"


def cell_text(row: dict | None, base: dict | None, is_baseline: bool = False) -> Text:
    """Three lines: time ± spread (noisy, throttled, a wrong floor flagged), speed-up vs FLOP ratio (another
    run's baseline said), rate and memory (decode: the memory-bound prediction, launch-bound flagged)."""
    if row is None:
        return Text("")
    status = row["status"]
    if status == "oom":
        return Text("OOM", style="bold red")
    if status != "ok":
        return Text(status, style="yellow")
    ms = float(row["time_ms"])
    text = Text(format_ms(ms))
    spread = normal(row.get("spread"))
    if spread:
        text.append(f" ±{float(spread):.0%}", style="dim")
    elif normal(row.get("repeats")) == "1":
        text.append(" (1 repeat: no spread)", style="dim")
    if normal(row.get("noisy")) == "True":
        text.append(" noisy", style="bold yellow")
    if normal(row.get("throttle")):
        text.append(" throttled", style="bold red")
    if normal(row.get("efficiency")) and float(row["efficiency"]) > 1:
        text.append(f" efficiency {float(row['efficiency']):.2f} > 1: floor wrong", style="bold red")
    decode = row.get("mode") == "decode"
    if base is not None and base.get("status") == "ok" and not is_baseline:
        speedup = float(base["time_ms"]) / ms
        # decode is bound by the bytes it reads, a step by its FLOPs: the ratio the cost model allows
        work = "min_bytes" if decode else "flops"
        ratio = float(base[work]) / float(row[work])
        text.append(f"\n{speedup:.2f}x")
        text.append(f" ({'bytes' if decode else 'FLOPs'} {ratio:.2f}x)", style="dim")
        if normal(base.get("run_id")) != normal(row.get("run_id")):
            text.append(" vs another run", style="yellow")
    bandwidth = normal(row.get("ceiling_bytes_per_s"))
    if decode and bandwidth:
        predicted = memory_ms(float(row["min_bytes"]), float(bandwidth))
        detail = f"memory-bound {format_ms(predicted)}"
        if ms > LAUNCH_BOUND * predicted:  # a GPU's step waits on kernel launches; a CPU's on operator dispatch
            what = "launch-bound" if normal(row.get("device")).startswith("cuda") else "overhead-bound"
            detail += f" · {what} ({ms / predicted:.1f}x it)"
    else:
        detail = format_rate(float(row["flops"]) / (ms / 1e3))
    if normal(row.get("peak_mem_bytes")):
        detail += f" · {format_bytes(row['peak_mem_bytes'])}"
    if normal(row.get("kernel_requested")) == "best":
        detail += f" · best: {normal(row.get('kernel'))}"
    text.append(f"\n{detail}", style="dim")
    if normal(row.get("attention_share")):
        text.append(f"\nattention {float(row['attention_share']):.0%} of a step", style="dim")
        if base is not None and not is_baseline and normal(base.get("attention_ms")):
            explained = amdahl(breakdown_ms(base), float(base["attention_ms"]), float(row["attention_ms"]))
            text.append(f" · explains {explained:.2f}x", style="dim")
    return text


def breakdown_ms(row: dict) -> float:
    """The profiled step's wall time: its four parts together."""
    return sum(float(row[c]) for c in ("attention_ms", "matmul_ms", "other_ms", "idle_ms"))


def format_time(ms: float | None) -> str:
    """Milliseconds to 4 significant digits (whole ones from 1000 up), '-' when missing."""
    return "-" if ms is None else f"{ms:.0f}" if ms >= 1000 else f"{ms:.4g}"


def ratio_text(verdict) -> str:
    """A check verdict's time ratio with its central 90% interval."""
    if verdict.ratio is None:
        return "-"
    return f"{verdict.ratio:.3f} [{verdict.ratio_low:.3f}, {verdict.ratio_high:.3f}]"


def verdict_text(verdict) -> str:
    if verdict.problems:
        return "FAIL: " + "; ".join(verdict.problems)
    if verdict.unjudged:
        return "NOT JUDGED: " + "; ".join(verdict.unjudged + verdict.notes)
    return "ok" + (f" ({'; '.join(verdict.notes)})" if verdict.notes else "")


def short_name(verdict, shared: list[str]) -> str:
    """A verdict's cell name without the words every cell of the report shares (printed once)."""
    return " ".join(word for word in verdict.words if word not in shared) or verdict.cell


def check_table(report, baseline_path, current_path) -> Table:
    """``sqabench check``'s verdicts: each cell's times, ratio with its interval, and verdict; what every
    cell shares is said once, in the caption."""
    shared = shared_words([v.words for v in report.cells])
    table = Table(title=f"sqabench check: {baseline_path} (baseline) vs {current_path}", title_justify="left",
                  caption=f"every cell: {' '.join(shared)}" if shared else None, caption_justify="left")  # fmt: skip
    for column in ("cell", "baseline ms", "current ms", "ratio [90% interval]", "verdict"):
        table.add_column(column, justify="left" if column in ("cell", "verdict") else "right")
    for v in report.cells:
        table.add_row(
            Text(short_name(v, shared)), format_time(v.baseline_ms), format_time(v.current_ms), ratio_text(v),
            Text(verdict_text(v)), style="bold red" if not v.ok else "yellow" if v.unjudged else "",
        )  # fmt: skip
    return table


STATUS_STYLE = {"ok": "green", "info": "", "unsupported": "yellow", "wrong": "bold red", "skipped": "dim",
                "failed": "bold red"}  # fmt: skip


def doctor_tables(checks) -> list[Table]:
    """``sqabench doctor``'s checks, a table per section (the kernels as a case x kernel matrix); the default
    sweep's needs marked."""
    tables = []
    for section in dict.fromkeys(c.section for c in checks):
        if section == "kernels":
            tables.append(_kernel_matrix([c for c in checks if c.section == section]))
            continue
        table = Table(title=section, title_justify="left")
        for column in ("check", "status", "detail"):
            table.add_column(column, overflow="fold")
        for c in (c for c in checks if c.section == section):
            status = Text(c.status + (" (needed)" if c.needed else ""), style=STATUS_STYLE.get(c.status, ""))
            table.add_row(Text(c.name), status, Text(c.detail))
        tables.append(table)
    return tables


def _kernel_matrix(checks) -> Table:
    """Case x kernel: ok, unsupported, WRONG (details: ``--json``); the backend SDPA picks beside each case."""
    cells: dict[str, dict[str, object]] = {}
    for c in checks:
        case, _, kernel = c.name.rpartition(": ")
        cells.setdefault(case or c.name, {})[kernel if case else ""] = c
    kernels = list(dict.fromkeys(k for row in cells.values() for k in row if k and k != "sdpa picks"))
    table = Table(title="kernels: ok = forward (on a GPU, and backward) within the dtype's tolerance of fp64; "
                  "no = unsupported", title_justify="left",
                  caption="paper: d_head 16; wide: d_head 128; *: the default sweep needs it; reasons: --json",
                  caption_justify="left")  # fmt: skip
    for column in ("case", "picks", *kernels):
        table.add_column(column.removeprefix("sdpa-") if column != "sdpa" else column, overflow="fold")
    for case, row in cells.items():
        picks = row["sdpa picks"].detail.removeprefix("sdpa-") if "sdpa picks" in row else ""
        line = [Text(case), Text(picks)]
        for kernel in kernels:
            c = row.get(kernel)
            if c is None:
                line.append(Text("-", style="dim"))
                continue
            word = {"wrong": "WRONG", "unsupported": "no"}.get(c.status, c.status)
            if c.status == "ok" and c.detail.startswith("ran "):
                word = c.detail.split(",")[0].removeprefix("ran ")
            line.append(Text(word + ("*" if c.needed else ""), style=STATUS_STYLE.get(c.status, "")))
        lone = row.get("")
        if lone is not None:  # a check without a kernel, e.g. what was skipped
            line = [Text(case), Text(f"{lone.status}: {lone.detail}", style="dim")] + [Text("")] * len(kernels)
        table.add_row(*line)
    return table


def reproduce_tables(ours: dict, paper: dict, verdicts: list[dict], on_gpu: bool) -> list[tuple[str, Table]]:
    """``sqabench reproduce paper``: seconds per step and speed-ups over MHA and GQA, ours beside the paper's
    at each length both have; then each headline claim and whether this run reproduces it."""
    tables = []
    where = "this GPU" if on_gpu else "this CPU (lengths that fit, fp32: not the paper's setting)"
    for n in sorted(ours):
        table = Table(caption="s: seconds per forward step; x mha, x gqa: speed-up over them", caption_justify="left")
        theirs = paper.get(n, {})
        for column in ("variant", "ours s", "paper s", "ours x mha", "paper x mha", "ours x gqa", "paper x gqa"):
            table.add_column(column, justify="left" if column == "variant" else "right")
        for variant, seconds in ours[n].items():
            line = [Text(variant), f"{seconds:.4g}", f"{theirs[variant]:.4g}" if variant in theirs else "-"]
            for base in ("mha", "gqa"):
                line.append(f"{ours[n][base] / seconds:.2f}" if base in ours[n] else "-")
                line.append(f"{theirs[base] / theirs[variant]:.2f}" if variant in theirs else "-")
            table.add_row(*line)
        title = f"{format_len(n)}: ours on {where}" + ("" if theirs else " (the paper has no such length)")
        tables.append((title, table))
    claims = Table(caption="at the longest length measured, beside the paper's ratio at that length (200k where "
                   "Table 3 lacks it); reproduced: ours reaches 90% of it (\"close to\": within 10%)",
                   caption_justify="left")  # fmt: skip
    for column in ("claim", "at", "ours", "paper", "verdict"):
        claims.add_column(column, justify="left" if column in ("claim", "verdict") else "right")
    for v in verdicts:
        ours_text = "-" if v["ours"] is None else f"{v['ours']:.2f}x"
        by = f" ({v['by']:.0%} of the paper's)" if v.get("by") else ""
        judged = f"; {v['judged']}" if v.get("judged") else ""
        claims.add_row(Text(v["claim"]), format_len(v["at"]) if v["at"] else "-", ours_text, f"{v['paper']:.2f}x",
                       Text(v["verdict"] + by + judged))  # fmt: skip
    tables.append(("the paper's headline claims", claims))
    return tables


def ceilings_table(ceilings, published) -> Table:
    """Each rate: measured, published peak (a listed GPU), their ratio, and how it was measured."""
    name, peak = published if published else ("", None)
    table = Table(caption=f"peak: {name}, published (sources in sqabench/data/gpu_peaks.csv)" if name else None)
    for column in ("limit", "measured", "published peak", "measured / peak", "method"):
        table.add_column(column, justify="left" if column in ("limit", "method") else "right")
    units = {"matmul": ("matmul_flops", format_rate), "exp": ("exp_per_s", lambda v: f"{v / 1e9:.3g} G/s"),
             "memory": ("bytes_per_s", lambda v: f"{v / 1e9:.3g} GB/s")}  # fmt: skip
    for limit, (field, fmt) in units.items():
        value = getattr(ceilings.rates, field)
        top = getattr(peak, field) if peak else None
        table.add_row(
            limit, fmt(value), fmt(top) if top else "-", f"{value / top:.0%}" if top else "-",
            Text(ceilings.methods.get(limit, "")),
        )  # fmt: skip
    return table


def floor_table(cells, rates) -> Table:
    """Variant x length: each cell's floor on ``rates``, its binding limit, and every limit's time."""
    points = list(dict.fromkeys((c.seq_len, c.batch) for c in cells))
    floors = {(c.spec.name, c.seq_len): c.floor(rates) for c in cells}
    limits = list(dict.fromkeys(limit for f in floors.values() for limit in f.terms_ms))
    table = Table(caption=f"floor (binding limit); then {' / '.join(limits)} time, each at its ceiling",
                  caption_justify="left")  # fmt: skip
    table.add_column("variant")
    for n, b in points:
        table.add_column(f"{format_len(n)} x{b}", justify="right")
    for variant in dict.fromkeys(c.spec.name for c in cells):
        line = [Text(variant)]
        for n, _ in points:
            f = floors[(variant, n)]
            text = Text(f"{format_ms(f.floor_ms)} ({f.bound})")
            text.append("\n" + " / ".join(_ms(f.terms_ms[limit]) for limit in limits) + " ms", style="dim")
            line.append(text)
        table.add_row(*line)
    return table


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


FAMILY_COLUMNS = (
    "variant", "n_heads", "n_q_heads", "n_kv_heads", "window", "params", "attn_flops_vs_mha",
    "kv_cache_bytes_per_token", "note",
)  # fmt: skip
FAMILY_HEADERS = (
    "variant",
    "H",
    "Hq",
    "Hkv",
    "window",
    "params",
    "attn FLOPs vs\nMHA, same mask",
    "KV cache\nB/token",
    "note",
)


def family_records(specs: Iterable["VariantSpec"], preset: "Preset") -> list[dict]:
    """One record per variant, with the cost model's parameters and bf16 KV cache per token."""
    from sqabench.flops import encoder_params, kv_cache_bytes_per_token

    return [
        {
            "variant": s.name,
            "n_heads": s.n_heads,
            "n_q_heads": s.n_q_heads,
            "n_kv_heads": s.n_kv_heads,
            "window": s.window,
            "params": encoder_params(s, preset),
            "attn_flops_vs_mha": round(s.attn_flops_vs_mha, 4),
            "kv_cache_bytes_per_token": kv_cache_bytes_per_token(s, preset),
            "note": s.note,
        }
        for s in specs
    ]


def report_results(path, baseline: str | None, console) -> list[str]:
    """``sqabench report`` on a results CSV (of any sqabench version): its tables, one per setting, as its run
    printed them; returns notes (the columns an older file lacks, shown as -, never invented)."""
    from sqabench.files import header_of
    from sqabench.speed.results import COLUMNS, load_results, resolve_baseline

    frame = load_results(path)
    missing = [column for column in COLUMNS if column not in header_of(path)]
    chosen = resolve_baseline(frame, baseline)
    rows = frame.to_dict("records")
    for title, table in results_tables(rows, chosen):
        console.print(Text(title, style="bold"), soft_wrap=True, highlight=False)
        console.print(table)
    notes = [f"{path} was written by an older sqabench: it lacks {', '.join(missing[:8])}"
             f"{' and more' if len(missing) > 8 else ''} (shown as -)"] if missing else []  # fmt: skip
    failed = [r for r in rows if normal(r.get("status")) not in ("ok", "")]
    notes += [f"{normal(r['variant'])} @ {normal(r['seq_len'])}: {normal(r['status'])} ({normal(r.get('error'))})"
              for r in failed]  # fmt: skip
    return notes
