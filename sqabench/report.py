"""Rich tables for people: the variant family, a run's results (one table per setting), the environment.

Every text that comes from data (variant names, errors) goes in as plain ``Text``, never as markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from sqabench.lengths import format_len
from sqabench.results import SETTING_KEY, key_of, normal

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


def format_ms(ms: float) -> str:
    return f"{ms / 1e3:.2f} s" if ms >= 1e4 else f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def format_rate(flops_per_s: float) -> str:
    """FLOP/s in the unit that fits: GFLOP/s on a CPU, TFLOP/s on a GPU."""
    return f"{flops_per_s / 1e12:.3g} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.3g} GFLOP/s"


def setting_title(row: dict) -> str:
    """One line that names a setting: GPU, preset, mask, mode, dtype, requested kernel, batch rule."""
    gpu = normal(row.get("gpu_name")) or f"CPU ({normal(row.get('cpu_model')) or 'unknown'})"
    mask = "causal" if normal(row.get("causal")) == "True" else "encoder"
    return (
        f"{gpu} · {row['preset']} ({normal(row.get('n_layers'))} layers) · "
        f"scope {normal(row.get('scope')) or 'model'} · "
        f"{mask} · {row['mode']} · "
        f"{row['dtype']} · "
        f"kernel {row['kernel_requested']} · {normal(row.get('batch_rule')) or 'batch as recorded'}"
        + (f" · split across {row['world_size']} ranks" if normal(row.get("world_size")) not in ("", "1") else "")
    )


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
    caption = "median ± spread ((max-min)/median of the repeats)" + (", per decode step" if decode else "")
    if baseline:
        allowed = "byte ratio (decode reads)" if decode else "FLOP ratio"
        caption += f"; speed-up over {baseline}, then the {allowed} the cost model allows for the whole step"
    if decode:
        caption += "; memory-bound: the bytes of a step at the measured copy bandwidth"
    table = Table(caption=caption, caption_justify="left")
    table.add_column("variant")
    table.add_column("Hq/Hkv", justify="right")
    for n, b in points:
        table.add_column(f"{format_len(n)} x{b}", justify="right")
    for variant in variants:
        first = next(r for r in rows if str(r["variant"]) == variant)
        window = normal(first["window"])
        heads = f"{first['n_q_heads']}/{first['n_kv_heads']}" + (f"@{window}" if window else "")
        line = [Text(variant), Text(heads)]
        for n, b in points:
            base = cells.get((baseline, n, b)) if baseline else None
            line.append(cell_text(cells.get((variant, n, b)), base, variant == baseline))
        table.add_row(*line)
    return table


def cell_text(row: dict | None, base: dict | None, is_baseline: bool = False) -> Text:
    """Three lines: time ± spread (noisy flagged), speed-up vs FLOP ratio, rate and memory."""
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
    if normal(row.get("noisy")) == "True":
        text.append(" noisy", style="bold yellow")
    if normal(row.get("throttle")):
        text.append(" throttled", style="bold red")
    decode = row.get("mode") == "decode"
    if base is not None and base.get("status") == "ok" and not is_baseline:
        speedup = float(base["time_ms"]) / ms
        # decode is bound by the bytes it reads, a step by its FLOPs: the ratio the cost model allows
        work = "min_bytes" if decode else "flops"
        ratio = float(base[work]) / float(row[work])
        text.append(f"\n{speedup:.2f}x")
        text.append(f" ({'bytes' if decode else 'FLOPs'} {ratio:.2f}x)", style="dim")
    bandwidth = normal(row.get("ceiling_bytes_per_s"))
    if decode and bandwidth:
        detail = f"memory-bound {format_ms(float(row['min_bytes']) / float(bandwidth) * 1e3)}"
    else:
        detail = format_rate(float(row["flops"]) / (ms / 1e3))
    if normal(row.get("peak_mem_bytes")):
        detail += f" · {format_bytes(row['peak_mem_bytes'])}"
    text.append(f"\n{detail}", style="dim")
    return text


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


def floor_table(records: list[dict]) -> Table:
    """Variant x length: the floor, its binding limit, and the other two limits' times."""
    from sqabench.lengths import format_len

    points = list(dict.fromkeys((r["seq_len"], r["batch"]) for r in records))
    table = Table(caption="floor (binding limit); then matmul / exp / memory time, each at its ceiling",
                  caption_justify="left")  # fmt: skip
    table.add_column("variant")
    for n, b in points:
        table.add_column(f"{format_len(n)} x{b}", justify="right")
    for variant in dict.fromkeys(r["variant"] for r in records):
        line = [Text(variant)]
        for n, b in points:
            r = next(x for x in records if x["variant"] == variant and x["seq_len"] == n)
            text = Text(f"{format_ms(r['floor_ms'])} ({r['bound']})")
            text.append(f"\n{_ms(r['matmul'])} / {_ms(r['exp'])} / {_ms(r['memory'])} ms", style="dim")
            line.append(text)
        table.add_row(*line)
    return table


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


FAMILY_COLUMNS = (
    "variant", "n_heads", "n_q_heads", "n_kv_heads", "window", "params", "attn_flops_vs_mha",
    "kv_cache_bytes_per_token", "note",
)  # fmt: skip
FAMILY_HEADERS = ("variant", "H", "Hq", "Hkv", "window", "params", "attn FLOPs\nvs MHA", "KV cache\nB/token", "note")


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
