"""Rich tables for people: the variant family, a run's results, the environment."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from sqabench.sweep import format_len

if TYPE_CHECKING:
    from sqabench.presets import Preset
    from sqabench.variants import VariantSpec


def records_table(
    title: str, records: Sequence[dict], columns: Sequence[str], headers: Sequence[str] | None = None
) -> Table:
    table = Table(title=title, title_justify="left")
    for column, header in zip(columns, headers or columns):
        left = column in ("variant", "field", "value")
        table.add_column(header, justify="left" if left else "right", no_wrap=column in ("variant", "params"))
    for record in records:
        table.add_row(*(str(record[column]) for column in columns))
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


def results_table(rows: Iterable[dict], baseline: str, title: str) -> Table:
    """Variant x sequence length: median time (speed-up over ``baseline``), TFLOP/s and peak memory."""
    rows = list(rows)
    lengths = sorted({int(r["seq_len"]) for r in rows})
    variants = list(dict.fromkeys(str(r["variant"]) for r in rows))
    cells = {(str(r["variant"]), int(r["seq_len"])): r for r in rows}
    table = Table(title=title, title_justify="left", caption=f"speed-up over {baseline} in parentheses")
    table.add_column("variant")
    table.add_column("Hq/Hkv", justify="right")
    for n in lengths:
        table.add_column(format_len(n), justify="right")
    for variant in variants:
        first = next(r for r in rows if str(r["variant"]) == variant)
        heads = f"{first['n_q_heads']}/{first['n_kv_heads']}" + (f"@{first['window']}" if first["window"] != "" else "")
        line = [variant, heads]
        for n in lengths:
            row = cells.get((variant, n))
            line.append(_cell_text(row, cells.get((baseline, n))))
        table.add_row(*line)
    return table


def _cell_text(row: dict | None, base: dict | None) -> str:
    if row is None:
        return ""
    status = row["status"]
    if status == "oom":
        return "[bold red]OOM[/]"
    if status != "ok":
        return f"[yellow]{status}[/]"
    ms = float(row["time_ms"])
    speedup = ""
    if base is not None and base.get("status") == "ok":
        speedup = f" ({float(base['time_ms']) / ms:.2f}x)"
    memory = format_bytes(row["peak_mem_bytes"]) if row.get("peak_mem_bytes") not in ("", None) else ""
    detail = f"{float(row['tflops']):.3g} TF/s" + (f" · {memory}" if memory else "")
    return f"{format_ms(ms)}{speedup}\n[dim]{detail}[/]"


FAMILY_COLUMNS = (
    "variant", "n_heads", "n_q_heads", "n_kv_heads", "window", "params", "attn_flops_vs_mha",
    "kv_cache_bytes_per_token",
)  # fmt: skip
FAMILY_HEADERS = ("variant", "H", "Hq", "Hkv", "window", "params", "attn FLOPs\nvs MHA", "KV cache\nB/token")


def family_records(specs: Iterable["VariantSpec"], preset: "Preset") -> list[dict]:
    """One record per variant, with the cost model's parameters and bf16 KV cache per token."""
    from sqabench.flops import encoder_params, kv_cache_bytes_per_token

    return [
        {
            "variant": s.name,
            "n_heads": s.n_heads,
            "n_q_heads": s.n_q_heads,
            "n_kv_heads": s.n_kv_heads,
            "window": "" if s.window is None else s.window,
            "params": encoder_params(s, preset),
            "attn_flops_vs_mha": round(s.attn_flops_vs_mha, 4),
            "kv_cache_bytes_per_token": kv_cache_bytes_per_token(s, preset),
        }
        for s in specs
    ]
