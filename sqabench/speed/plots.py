"""Results CSVs -> figures (PNG and SVG). Reads only the CSVs; headless (Agg); no torch. Colours and saving:
``sqabench.drawing``.

Rows are grouped into settings (``SETTING_KEY``: GPU, preset, layers, dtype, mode, mask, requested
kernel, batch rule); each setting gets its own panel, so two settings never share a line. Every
variant keeps one colour in every figure, by family: the MHA/GQA/MQA baselines in greys, the SQA
family in blues (darker = fewer query heads), windowed variants in oranges, custom heads in
greens. Every plotted median carries min/max error bars; out-of-memory cells are marked inside
the frame; legends sit outside the axes, where they hide nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sqabench.drawing import PANEL_SIZE, plain_log_axis, save_figures, styles
from sqabench.flops import memory_ms
from sqabench.shipped import shipped_rows
from sqabench.speed.results import SETTING_KEY, duplicate_notes, latest, setting_title
from sqabench.units import format_len

PART_COLORS = {"attention_ms": "#1f62c4", "matmul_ms": "#7f7f7f", "other_ms": "#fdae6b", "idle_ms": "#e0e0e0"}
PAPER_SETTING = {
    "gpu": "NVIDIA A100 40GB", "dtype": "bf16", "causal": "causal", "mode": "fwd", "preset": "paper", "scope": "model",
    "layers": "8",
}  # fmt: skip


def paper_table() -> pd.DataFrame:
    """The paper's Table 3 (A100 40GB, bf16, causal, forward step in seconds), indexed by seq_len."""
    frame = pd.DataFrame(shipped_rows("paper_table3.csv")).astype(float)
    return frame.astype({"seq_len": int}).set_index("seq_len")


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    frame = latest(frame, also=("source", "gpu_name")).copy()
    frame["gpu"] = frame["gpu_name"].astype("string").fillna("CPU")
    frame["mask"] = frame["causal"].astype(str).map({"True": "causal", "False": "encoder"})
    frame["theory"] = frame["n_heads"] / frame["n_q_heads"]
    frame["on_gpu"] = frame["gpu_name"].notna()
    frame["is_noisy"] = frame["noisy"].astype(str) == "True"
    return frame


def panel_title(rows: pd.DataFrame) -> str:
    return setting_title(rows.iloc[0])


def settings(frame: pd.DataFrame) -> list[pd.DataFrame]:
    keys = [c for c in SETTING_KEY if c in frame.columns]
    return [group for _, group in frame.groupby(keys, sort=True, dropna=False)]


def _axes_grid(count: int, title: str):
    import matplotlib.pyplot as plt

    cols = 1 if count <= 3 else 2  # one column keeps each panel wide enough to read
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_SIZE[0] * cols + 2.2, PANEL_SIZE[1] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    return fig, list(axes.flat[:count])


def _length_axis(ax, lengths) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    lengths = sorted(set(int(n) for n in lengths))
    ax.xaxis.set_major_locator(FixedLocator(lengths))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_len(int(round(x)))))
    if len(lengths) == 1:
        ax.set_xlim(lengths[0] / 1.6, lengths[0] * 1.6)
    else:
        ax.set_xlim(lengths[0] / 1.25, lengths[-1] * 1.25)
    ax.set_xlabel("sequence length (tokens)")
    ax.grid(True, which="major", alpha=0.3)


def _legend(ax, title: str | None = None) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, title=title,
                  title_fontsize=8)  # fmt: skip


def _finish(ax, group: pd.DataFrame, ylabel: str, margin: float | None = 0.15) -> None:
    """What every panel ends with: headroom, the length axis, labels, its setting as title, the legend."""
    if margin is not None:
        ax.margins(y=margin)
    _length_axis(ax, group["seq_len"])
    ax.set_ylabel(ylabel)
    ax.set_title(panel_title(group), fontsize=9)
    _legend(ax)


DODGE = 1.035  # neighbouring variants at one length sit this factor apart on the (log) length axis


def _dodge(x, i: int, count: int):
    """``x`` moved a little for the ``i``-th of ``count`` variants, so that error bars at one length never stack
    on one another; the tick stays at the length itself."""
    return pd.Series(x).to_numpy() * DODGE ** (i - (count - 1) / 2)


def _err(median: pd.Series, low: pd.Series, high: pd.Series):
    """Asymmetric error bars (below, above) from min and max; never negative."""
    return [(median - low).clip(lower=0).to_numpy(), (high - median).clip(lower=0).to_numpy()]


def _mark_oom(ax, rows: pd.DataFrame, colour: str, marker_row: int) -> bool:
    """An x per out-of-memory cell, inside the top of the frame (stacked per variant)."""
    oom = rows[rows["status"] == "oom"]
    for n in oom["seq_len"]:
        ax.plot([n], [0.97 - 0.035 * marker_row], marker="x", ms=8, mew=2, color=colour, ls="none",
                transform=ax.get_xaxis_transform(), clip_on=False, zorder=5)  # fmt: skip
    return not oom.empty


def _time_unit(values: pd.Series) -> tuple[float, str]:
    return (1e-3, "s") if values.max() >= 2000 else (1.0, "ms")


NOISY_LABEL = "hollow: noisy (spread > 10%)"


def _mark_noisy(ax, x, y, noisy: pd.Series, colour: str, marker: str) -> bool:
    """Hollow markers over the noisy points: a median not worth quoting."""
    mask = noisy.to_numpy(dtype=bool)
    if mask.any():
        ax.scatter(pd.Series(x).to_numpy()[mask], pd.Series(y).to_numpy()[mask], marker=marker, s=60,
                   facecolors="white", edgecolors=colour, linewidths=1.6, zorder=6)  # fmt: skip
    return bool(mask.any())


def _legend_marks(ax, oom: bool = False, noisy: bool = False) -> None:
    if oom:
        ax.plot([], [], marker="x", color="black", ls="none", label="out of memory")
    if noisy:
        ax.scatter([], [], marker="o", facecolors="white", edgecolors="black", label=NOISY_LABEL)


def _time_figure(frame, style):
    ok_times = frame.loc[frame["status"] == "ok", "time_ms"]
    if ok_times.empty:
        return None
    groups = settings(frame)
    marks = ["bars: min to max of the repeats"]
    if (frame["status"] == "oom").any():
        marks.append("x: out of memory")
    if frame["is_noisy"].any():
        marks.append(NOISY_LABEL)
    fig, axes = _axes_grid(len(groups), f"Time per step\n(median; {'; '.join(marks)})")
    scale, unit = _time_unit(ok_times)  # one unit for every panel
    for ax, group in zip(axes, groups):
        any_oom = any_noisy = False
        count = group["variant"].nunique()
        for i, (variant, rows) in enumerate(group.groupby("variant", sort=False)):
            colour, marker = style[variant]
            good = rows[rows["status"] == "ok"].sort_values("seq_len")
            if not good.empty:
                median = good["time_ms"] * scale
                spread = _err(median, good["time_ms_min"] * scale, good["time_ms_max"] * scale)
                x = _dodge(good["seq_len"], i, count)
                ax.errorbar(x, median, yerr=spread, color=colour, marker=marker, ms=5, lw=1.8, capsize=3,
                            label=variant)  # fmt: skip
                any_noisy |= _mark_noisy(ax, x, median, good["is_noisy"], colour, marker)
            any_oom |= _mark_oom(ax, rows, colour, i)
        _legend_marks(ax, any_oom, any_noisy)
        plain_log_axis(ax)
        _finish(ax, group, f"time per step ({unit})")
    fig.tight_layout()
    return fig


CROSS_RUN_LABEL = "ringed: a ratio of rows from different runs"


def _speedup_figure(frame, baseline, style, notes):
    groups = settings(frame)
    decode_any = (frame["mode"] == "decode").any()
    step_any = (frame["mode"] != "decode").any()
    ratios = [r for r, shown in (("whole-step FLOP ratio", step_any), ("byte ratio of a decode step", decode_any))
              if shown]  # fmt: skip
    theory_drawn = step_any and (frame.loc[frame["mode"] != "decode", "theory"] != 1).any()
    lines = [f"solid: measured (bars: min/max); dotted: {' or '.join(ratios)} (cost model)"]
    if theory_drawn:
        lines.append("grey dashed: H/Hq, the theoretical speed-up of attention alone")
    fig, axes = _axes_grid(len(groups), f"Speed-up over {baseline}\n" + ";\n".join(lines))
    crossed_total = 0
    for ax, group in zip(axes, groups):
        ok = group[group["status"] == "ok"]
        decode = (group["mode"] == "decode").any()
        base = ok[ok["variant"] == baseline].set_index("seq_len")
        if base.empty:
            ax.text(0.5, 0.5, f"no ok {baseline} rows in this setting", transform=ax.transAxes, ha="center")
        any_noisy = any_crossed = any_ratio = False
        drawn = [v for v in ok["variant"].unique() if v != baseline]
        for variant, rows in ok.groupby("variant", sort=False):
            rows = rows[rows["seq_len"].isin(base.index)].sort_values("seq_len")
            if rows.empty or variant == baseline:
                continue
            colour, marker = style[variant]
            b = base.loc[rows["seq_len"]]
            speedup = b["time_ms"].to_numpy() / rows["time_ms"].to_numpy()
            low = b["time_ms_min"].to_numpy() / rows["time_ms_max"].to_numpy()
            high = b["time_ms_max"].to_numpy() / rows["time_ms_min"].to_numpy()
            x = _dodge(rows["seq_len"], drawn.index(variant), len(drawn))
            ax.errorbar(x, speedup, yerr=[(speedup - low).clip(0), (high - speedup).clip(0)],
                        color=colour, marker=marker, ms=5, lw=1.8, capsize=3, label=variant)  # fmt: skip
            noisy = pd.Series(b["is_noisy"].to_numpy() | rows["is_noisy"].to_numpy())
            any_noisy |= _mark_noisy(ax, x, speedup, noisy, colour, marker)
            crossed = b["run_id"].astype(str).to_numpy() != rows["run_id"].astype(str).to_numpy()
            if crossed.any():
                any_crossed = True
                crossed_total += int(crossed.sum())
                ax.scatter(x[crossed], speedup[crossed], s=180, facecolors="none", edgecolors="#d62728",
                           linewidths=1.5, zorder=7)  # fmt: skip
            work = "min_bytes" if decode else "flops"  # decode is bound by what it reads
            ax.plot(
                x, b[work].to_numpy() / rows[work].to_numpy(), ls=":", lw=1.6, color=colour, marker="_", markersize=14
            )  # a dash marks the ratio where one length draws no line
            any_ratio = True
        theory = ok[(ok["variant"] != baseline) & ok["window"].isna()].groupby("theory")["variant"].unique()
        if decode:
            theory = theory.iloc[0:0]  # H/Hq speaks of FLOPs: not of a step bound by the cache it reads
        for value, names in theory.items():
            if value == 1:
                continue
            ax.axhline(value, ls="--", lw=1.0, color="#888888", zorder=0)
            ax.annotate(
                f"H/Hq = {_fraction(value)} ({', '.join(names)}): attention only",
                xy=(0.99, value),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=7,
                color="#444444",
                zorder=10,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"},
            )  # above the lines
        ax.axhline(1.0, color="black", lw=0.8)
        if any_ratio:  # the legend names only what the panel draws
            ax.plot(
                [],
                [],
                ls=":",
                marker="_",
                markersize=14,
                color="black",
                label=f"{'byte' if decode else 'FLOP'} ratio (cost model)",
            )
        _legend_marks(ax, noisy=any_noisy)
        if any_crossed:
            ax.scatter([], [], s=120, facecolors="none", edgecolors="#d62728", label=CROSS_RUN_LABEL)
        plain_log_axis(ax)  # ratios: 2x up and 2x down are the same distance
        _finish(ax, group, f"speed-up over {baseline} (x, log scale)", 0.12)
    if crossed_total:
        notes.append(f"speed-up figure: {crossed_total} ratios pair rows of different runs (ringed in red): "
                     "their load and state may differ")  # fmt: skip
    fig.tight_layout()
    return fig


def _fraction(value: float) -> str:
    from fractions import Fraction

    f = Fraction(value).limit_denominator(16)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _metric_figure(frame, style, column, unit, title, log_y=True, per_time=None):
    """A per-variant line of ``column`` (or, with ``per_time``, work / time, with min/max error bars).

    ``unit`` is (scale, axis label), or a function of a setting's ok rows that returns one.
    """
    groups = [g for g in settings(frame) if g[column if per_time is None else "time_ms"].notna().any()]
    if not groups:
        return None
    fig, axes = _axes_grid(len(groups), title)
    for ax, group in zip(axes, groups):
        ok = group[group["status"] == "ok"]
        unit_scale, label = unit(ok) if callable(unit) else unit
        any_oom = any_noisy = False
        count = group["variant"].nunique()
        for i, (variant, rows) in enumerate(group.groupby("variant", sort=False)):
            colour, marker = style[variant]
            any_oom |= _mark_oom(ax, rows, colour, i)
            rows = rows[rows["status"] == "ok"].sort_values("seq_len")
            if per_time is None:
                values = rows[column] * unit_scale
                ax.plot(rows["seq_len"], values, color=colour, marker=marker, ms=5, lw=1.8, label=variant)
            else:
                work = rows[per_time]
                value = work / (rows["time_ms"] / 1e3) * unit_scale
                low = work / (rows["time_ms_max"] / 1e3) * unit_scale
                high = work / (rows["time_ms_min"] / 1e3) * unit_scale
                x = _dodge(rows["seq_len"], i, count)
                ax.errorbar(x, value, yerr=_err(value, low, high), color=colour, marker=marker, ms=5, lw=1.8,
                            capsize=3, label=variant)  # fmt: skip
                any_noisy |= _mark_noisy(ax, x, value, rows["is_noisy"], colour, marker)
        _legend_marks(ax, any_oom, any_noisy)
        if log_y:
            plain_log_axis(ax)
        _finish(ax, group, label)
    fig.tight_layout()
    return fig


def _rate_unit(rows: pd.DataFrame) -> tuple[float, str]:
    """TFLOP/s on a GPU, GFLOP/s on a CPU."""
    return (1e-12, "achieved TFLOP/s") if rows["on_gpu"].any() else (1e-9, "achieved GFLOP/s")


BOUND_MARKERS = {"matmul": "o", "exp": "^", "memory": "s", "comm": "P"}
WRONG_FLOOR_LABEL = "above 1: the floor is wrong (a bug, not a result)"


def _efficiency_figure(frame, style, notes):
    groups = [g for g in settings(frame) if g["efficiency"].notna().any()]
    if not groups:
        return None
    fig, axes = _axes_grid(
        len(groups),
        "Efficiency: the cost model's floor / median time\n(marker: the limit that binds; bars: min/max; "
        "the axis fits the data)",
    )
    wrong_total = 0
    for ax, group in zip(axes, groups):
        ok = group[(group["status"] == "ok") & group["efficiency"].notna()]
        any_noisy = False
        count = ok["variant"].nunique()
        for i, (variant, rows) in enumerate(ok.groupby("variant", sort=False)):
            rows = rows.sort_values("seq_len")
            colour, _ = style[variant]
            floor = rows["floor_ms"]
            eff, low, high = floor / rows["time_ms"], floor / rows["time_ms_max"], floor / rows["time_ms_min"]
            x = pd.Series(_dodge(rows["seq_len"], i, count), index=rows.index)
            ax.errorbar(x, eff, yerr=_err(eff, low, high), color=colour, lw=1.5, capsize=3, label=variant)
            for bound, points in rows.groupby("bound"):
                quiet = ~points["is_noisy"].astype(bool)
                ax.scatter(x[points.index][quiet], (floor[points.index] / points["time_ms"])[quiet], color=colour,
                           marker=BOUND_MARKERS.get(bound, "o"), s=40, zorder=4, edgecolor="white")  # fmt: skip
                any_noisy |= _mark_noisy(ax, x[points.index], floor[points.index] / points["time_ms"],
                                         points["is_noisy"], colour, BOUND_MARKERS.get(bound, "o"))  # fmt: skip
        for bound, marker in BOUND_MARKERS.items():
            if (ok["bound"] == bound).any():
                ax.scatter([], [], marker=marker, color="grey", label=f"{bound}-bound")
        _legend_marks(ax, noisy=any_noisy)
        wrong = ok[ok["efficiency"] > 1]
        top = float(ok["efficiency"].max()) if not ok.empty else 1.0
        if not wrong.empty:
            wrong_total += len(wrong)
            ax.scatter(wrong["seq_len"], wrong["efficiency"], marker="X", s=140, color="#d62728", zorder=7,
                       label=WRONG_FLOOR_LABEL)  # fmt: skip
            ax.axhline(1.0, color="#d62728", lw=1.0, ls="--")
        ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)  # fitted: low efficiencies stay readable
        _finish(ax, group, "efficiency (floor / time)", None)
    if wrong_total:
        notes.append(f"efficiency figure: {wrong_total} cells above 1, marked as errors: their floor is wrong")
    fig.tight_layout()
    return fig


def _breakdown_figure(frame):
    """Per setting and length, one stacked bar per variant: attention, matmul, other kernels, idle."""
    rows = frame[(frame["status"] == "ok") & frame["attention_ms"].notna()]
    panels = [(group, n, at) for group in settings(rows) for n, at in group.groupby("seq_len", sort=True)]
    if not panels:
        return None
    fig, axes = _axes_grid(
        len(panels),
        "Where a step's time goes: one profiled step after the timed repeats (--breakdown)\n"
        "attention, matmul (projections, feed-forward, head), other kernels, idle (launches, Python, syncs)",
    )
    for ax, (group, n, at) in zip(axes, panels):
        at = at.drop_duplicates("variant", keep="last")
        bottom = pd.Series(0.0, index=at.index)
        for column, colour in PART_COLORS.items():
            ax.bar(at["variant"], at[column], bottom=bottom, color=colour, edgecolor="white",
                   label=column.removesuffix("_ms"))  # fmt: skip
            bottom = bottom + at[column]
        for x, (total, share) in enumerate(zip(bottom, at["attention_share"])):
            ax.annotate(f"{share:.0%}", (x, total), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")  # fmt: skip
        ax.set_ylabel("milliseconds of the profiled step")
        shape = f"{format_len(int(n))} x{int(at['batch'].iloc[0])}"
        ax.set_title(f"{panel_title(group)}\n{shape} (label: attention's share)", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30)
        ax.margins(y=0.12)
        _legend(ax)
    fig.tight_layout()
    return fig


def _differences(group: pd.DataFrame) -> list[str]:
    """How this setting differs from the paper's (A100, bf16, causal decoder, forward, paper model, 8 layers)."""
    r = group.iloc[0]
    found = {"gpu": r["gpu"], "dtype": r["dtype"], "causal": r["mask"], "mode": r["mode"], "preset": r["preset"],
             "scope": "model" if pd.isna(r.get("scope")) else r["scope"],
             "layers": "" if pd.isna(r.get("n_layers")) else str(int(r["n_layers"]))}  # fmt: skip
    return [f"{key}: {found[key]} (paper: {value})" for key, value in PAPER_SETTING.items()
            if str(found[key]) != value and not (key == "gpu" and "A100" in str(found[key]))]  # fmt: skip


def _paper_figure(frame, style, notes):
    paper = paper_table()
    variants = [v for v in paper.columns if v != "mha"]
    panels = []
    for group in settings(frame):
        if (group["mode"] == "decode").any():
            notes.append(f"paper figure: decode is not in the paper's Table 3 ({panel_title(group)})")
            continue
        ok = group[group["status"] == "ok"]
        ours = {column: ok.pivot_table(index="seq_len", columns="variant", values=column, aggfunc="last")
                for column in ("time_ms", "time_ms_min", "time_ms_max")}  # fmt: skip
        if "mha" not in ours["time_ms"].columns or not set(variants) & set(ours["time_ms"].columns):
            notes.append(f"paper figure: no mha and paper variants to compare in {panel_title(group)}")
            continue
        panels.append((group, ours))
    if not panels:
        return None
    fig, axes = _axes_grid(
        len(panels),
        "Speed-up over MHA: this run (solid; bars: min/max of the repeats)\n"
        "beside the paper's A100 (dashed, hollow; arXiv 2510.01817 Table 3, one number per cell)",
    )
    for ax, (group, ours) in zip(axes, panels):
        median, fastest, slowest = ours["time_ms"], ours["time_ms_min"], ours["time_ms_max"]
        for variant in [v for v in variants if v in median.columns]:
            colour, marker = style[variant]
            theirs = paper["mha"] / paper[variant]
            ax.plot(paper.index, theirs, ls="--", lw=1.2, marker=marker, mfc="white", color=colour)
            mine = (median["mha"] / median[variant]).dropna()
            low = (fastest["mha"] / slowest[variant]).reindex(mine.index)
            high = (slowest["mha"] / fastest[variant]).reindex(mine.index)
            ax.errorbar(mine.index, mine, yerr=_err(mine, low, high), lw=2.0, marker=marker, color=colour,
                        capsize=3, label=variant)  # fmt: skip
        ax.plot([], [], ls="--", marker="o", mfc="white", color="grey", label="paper (A100)")
        ax.axhline(1.0, color="black", lw=0.8)
        plain_log_axis(ax)
        ax.margins(y=0.12)
        _length_axis(ax, list(paper.index) + list(median.index))
        ax.set_ylabel("speed-up over MHA (x, log scale)")
        differences = _differences(group)
        title = panel_title(group)
        if differences:
            title += "\nnot like with like: " + "; ".join(differences)
        ax.set_title(title, fontsize=9, color="#a50f15" if differences else "black")
        _legend(ax)
    fig.tight_layout()
    return fig


def _decode_figure(frame, style):
    """Time per decode step against context, beside the memory-bound prediction (bytes / bandwidth)."""
    groups = [g for g in settings(frame) if (g["mode"] == "decode").any()]
    if not groups:
        return None
    fig, axes = _axes_grid(
        len(groups),
        "Decode: time per step (one new token per sequence) against context length\n"
        "solid: measured (bars: min/max); dashed: memory-bound prediction, the step's bytes at the copy bandwidth",
    )
    for ax, group in zip(axes, groups):
        any_oom = False
        count = group["variant"].nunique()
        for i, (variant, rows) in enumerate(group.groupby("variant", sort=False)):
            colour, marker = style[variant]
            any_oom |= _mark_oom(ax, rows, colour, i)
            ok = rows[rows["status"] == "ok"].sort_values("seq_len")
            if ok.empty:
                continue
            ax.errorbar(_dodge(ok["seq_len"], i, count), ok["time_ms"], color=colour, marker=marker, ms=5,
                        yerr=_err(ok["time_ms"], ok["time_ms_min"], ok["time_ms_max"]), lw=1.8, capsize=3,
                        label=variant)  # fmt: skip
            predicted = memory_ms(ok["min_bytes"], ok["ceiling_bytes_per_s"])
            if predicted.notna().any():
                ax.plot(ok["seq_len"], predicted, ls="--", lw=1.2, color=colour)
        ax.plot([], [], ls="--", color="black", label="memory-bound prediction")
        if any_oom:
            ax.plot([], [], marker="x", color="black", ls="none", label="out of memory")
        plain_log_axis(ax)
        _finish(ax, group, "time per decode step (ms)")
        ax.set_xlabel("context length (tokens)")
    fig.tight_layout()
    return fig


def _prefill_decode_figure(frame, style, reference="gqa"):
    """Each variant's speed-up over GQA in prefill (x) against its speed-up over GQA in decode (y)."""
    groups = [g for g in settings(frame) if (g["mode"] == "decode").any()]
    panels = []
    for group in groups:
        ok = group[(group["status"] == "ok") & group["prefill_ms"].notna()]
        if (ok["variant"] == reference).any():
            panels.append(ok)
    if not panels:
        return None
    fig, axes = _axes_grid(
        len(panels),
        f"Speed-up over {reference} in prefill (x) and in decode (y), per context length\n"
        "(right of 1: faster prefill; above 1: faster decode)",
    )
    for ax, ok in zip(axes, panels):
        base = ok[ok["variant"] == reference].set_index("seq_len")
        for variant, rows in ok.groupby("variant", sort=False):
            rows = rows[rows["seq_len"].isin(base.index)].sort_values("seq_len")
            if rows.empty:
                continue
            colour, marker = style[variant]
            b = base.loc[rows["seq_len"]]
            x = b["prefill_ms"].to_numpy() / rows["prefill_ms"].to_numpy()
            y = b["time_ms"].to_numpy() / rows["time_ms"].to_numpy()
            ax.plot(x, y, color=colour, marker=marker, ms=6, lw=1.0, label=variant)
            ax.annotate(format_len(int(rows["seq_len"].iloc[-1])), (x[-1], y[-1]), fontsize=7, color=colour,
                        xytext=(4, 2), textcoords="offset points")  # fmt: skip
        ax.axhline(1.0, color="black", lw=0.8)
        ax.axvline(1.0, color="black", lw=0.8)
        plain_log_axis(ax, "x")
        plain_log_axis(ax, "y")
        ax.margins(0.15)
        ax.set_xlabel(f"prefill: speed-up over {reference} (x, log scale)")
        ax.set_ylabel(f"decode: speed-up over {reference} (x, log scale)")
        ax.set_title(panel_title(ok) + " (points: context lengths; the last labelled)", fontsize=9)
        ax.grid(True, alpha=0.3)
        _legend(ax)
    fig.tight_layout()
    return fig


def build_figures(frame: pd.DataFrame, baseline: str | None) -> tuple[dict[str, object], list[str]]:
    """Every figure that has something to show, by name, and notes on the ones left out."""
    notes: list[str] = duplicate_notes(frame)
    frame = _prepare(frame)
    style = styles(list(dict.fromkeys(frame["variant"])))
    figures: dict[str, object] = {"time": _time_figure(frame, style)}
    if figures["time"] is None:
        notes.append("time figure not drawn: no ok rows (every cell failed: see the status and error columns)")
    if baseline is not None:
        figures["speedup"] = _speedup_figure(frame, baseline, style, notes)
    else:
        notes.append("speed-up figure not drawn: no mha rows (name a variant with --baseline)")
    memory = _metric_figure(frame, style, "peak_mem_bytes", (1 / 2**30, "peak GPU memory (GiB)"),
                            "Peak GPU memory (torch max allocated over the timed calls)")  # fmt: skip
    if memory is None:
        notes.append("memory figure not drawn: no GPU memory recorded (a CPU run)")
    else:
        figures["memory"] = memory
        figures["attention_memory"] = _metric_figure(
            frame, style, "attn_mem_bytes", (1 / 2**30, "attention memory (GiB)"),
            "The attention's own memory at each cell's shape\n(one layer's op: q, k, v, output, workspace; "
            "decode: the KV cache)",
        )  # fmt: skip
    figures["throughput"] = _metric_figure(
        frame, style, "flops", _rate_unit, "Achieved throughput: cost-model FLOPs / time (bars from min/max)",
        per_time="flops", log_y=False,
    )  # fmt: skip
    efficiency = _efficiency_figure(frame, style, notes)
    if efficiency is None:
        notes.append("efficiency figure not drawn: no floor recorded (rows from before ceilings existed)")
    else:
        figures["efficiency"] = efficiency
    breakdown = _breakdown_figure(frame)
    if breakdown is not None:
        figures["breakdown"] = breakdown
    paper = _paper_figure(frame, style, notes)
    if paper is not None:
        figures["paper"] = paper
    if (frame["mode"] == "decode").any():
        figures["decode"] = _decode_figure(frame, style)
        figures["prefill_vs_decode"] = _prefill_decode_figure(frame, style)
        if figures["prefill_vs_decode"] is None:
            notes.append("prefill-vs-decode figure not drawn: no ok gqa decode rows to compare with")
    return {name: fig for name, fig in figures.items() if fig is not None}, notes


def make_plots(frame: pd.DataFrame, out_dir: Path, baseline: str | None = "mha") -> tuple[list[Path], list[str]]:
    """Write every figure as PNG and SVG under ``out_dir``; return the paths written and the notes."""
    import matplotlib

    matplotlib.use("Agg")
    figures, notes = build_figures(frame, baseline)
    return save_figures(figures, out_dir), notes
