"""Results CSVs -> scaling figures (PNG and SVG). Reads only the CSVs; headless (Agg).

Rows are grouped into settings (GPU, dtype, preset, encoder or causal, mode, batch rule); each
setting gets its own panel, so several GPUs or settings are faceted, never mixed in one line.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from sqabench.lengths import format_len

SETTING = ("gpu", "dtype", "preset", "causal", "mode")
FIGURES = ("time", "speedup", "memory", "tflops", "paper")


def paper_table() -> pd.DataFrame:
    """The paper's Table 3 (A100 40GB, bf16, causal, forward step in seconds), indexed by seq_len."""
    text = resources.files("sqabench").joinpath("data/paper_table3.csv")
    with resources.as_file(text) as path:
        return pd.read_csv(path, comment="#").set_index("seq_len")


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["gpu"] = frame["gpu_name"].astype("string").fillna("CPU")
    frame["causal"] = frame["causal"].astype(str).map({"True": "causal", "False": "encoder"})
    frame["theory"] = frame["n_heads"] / frame["n_q_heads"]
    return frame


def setting_title(key: tuple) -> str:
    gpu, dtype, preset, causal, mode = key
    return f"{gpu} · {dtype} · {preset} · {causal} · {mode}"


def _length_axis(ax, lengths) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(lengths)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_len(int(round(x)))))
    ax.set_xlabel("sequence length (tokens)")
    ax.grid(True, which="major", alpha=0.3)


def _panels(frame: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    groups = list(frame.groupby(list(SETTING), sort=True))
    cols = min(2, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 5.2 * rows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=14, fontweight="bold")
    return fig, list(zip(axes.flat, groups))


def _colors(variants) -> dict[str, object]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab20" if len(variants) > 10 else "tab10")
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


def _metric_figure(frame, column, ylabel, title, colors, scale=1.0, log_y=True, mark_oom=True):
    fig, panels = _panels(frame, title)
    for ax, (key, group) in panels:
        for variant, rows in group.groupby("variant", sort=False):
            ok = rows[rows["status"] == "ok"].sort_values("seq_len")
            values = ok[column] * scale
            if values.notna().any():
                ax.plot(ok["seq_len"], values, marker="o", ms=4, lw=1.8, color=colors[variant], label=variant)
            if mark_oom:
                oom = rows[rows["status"] == "oom"]
                for n in oom["seq_len"]:
                    ax.scatter([n], [1.0], marker="x", s=60, color=colors[variant], transform=ax.get_xaxis_transform(),
                               clip_on=False, zorder=5)  # fmt: skip
        if group[column].notna().sum() == 0:
            ax.text(0.5, 0.5, f"no {ylabel.lower()} recorded", transform=ax.transAxes, ha="center", color="grey")
        if log_y and group[column].fillna(0).gt(0).any():
            ax.set_yscale("log")
        _length_axis(ax, group["seq_len"].unique())
        ax.set_ylabel(ylabel)
        ax.set_title(setting_title(key), fontsize=10)
        if (group["status"] == "oom").any():
            ax.scatter([], [], marker="x", color="black", label="out of memory")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def _speedup_figure(frame, baseline, colors):
    fig, panels = _panels(frame, f"Speed-up over {baseline} (dashed: theoretical attention speed-up H/Hq)")
    for ax, (key, group) in panels:
        base = group[(group["variant"] == baseline) & (group["status"] == "ok")].set_index("seq_len")["time_ms"]
        if base.empty:
            ax.text(0.5, 0.5, f"no ok {baseline} rows to compare with", transform=ax.transAxes, ha="center")
        for variant, rows in group.groupby("variant", sort=False):
            ok = rows[(rows["status"] == "ok") & rows["seq_len"].isin(base.index)].sort_values("seq_len")
            if ok.empty:
                continue
            speedup = base.loc[ok["seq_len"]].to_numpy() / ok["time_ms"].to_numpy()
            ax.plot(ok["seq_len"], speedup, marker="o", ms=4, lw=1.8, color=colors[variant], label=variant)
            if variant != baseline and rows["window"].isna().all():
                ax.axhline(rows["theory"].iloc[0], ls="--", lw=1, color=colors[variant], alpha=0.7)
        ax.axhline(1.0, color="black", lw=0.8)
        _length_axis(ax, group["seq_len"].unique())
        ax.set_ylabel(f"speed-up over {baseline} (x)")
        ax.set_title(setting_title(key), fontsize=10)
        ax.legend(fontsize=8, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig


def _paper_figure(frame, colors):
    import matplotlib.pyplot as plt

    paper = paper_table()
    variants = [v for v in paper.columns if v != "mha"]
    settings = list(frame.groupby(list(SETTING), sort=True))
    lengths = list(paper.index)
    fig, axes = plt.subplots(len(settings), len(lengths), figsize=(3.4 * len(lengths), 3.8 * len(settings)),
                             squeeze=False, sharey="row")  # fmt: skip
    fig.suptitle("Speed-up over MHA: this run vs the paper (A100 40GB, bf16, causal; arXiv 2510.01817 Table 3)",
                 fontsize=13, fontweight="bold")  # fmt: skip
    width = 0.4
    for row_axes, (key, group) in zip(axes, settings):
        ok = group[group["status"] == "ok"]
        ours = ok.pivot_table(index="seq_len", columns="variant", values="time_ms", aggfunc="last")
        for ax, n in zip(row_axes, lengths):
            xs = range(len(variants))
            theirs = [paper.loc[n, "mha"] / paper.loc[n, v] for v in variants]
            ax.bar([x - width / 2 for x in xs], theirs, width, color="lightgrey", edgecolor="grey", label="paper A100")
            if n in ours.index and "mha" in ours.columns and pd.notna(ours.loc[n, "mha"]):
                mine = [ours.loc[n, "mha"] / ours.loc[n, v] if v in ours.columns else float("nan") for v in variants]
                ax.bar([x + width / 2 for x in xs], mine, width, color=[colors.get(v, "C0") for v in variants],
                       label="this run")  # fmt: skip
            else:
                ax.text(0.5, 0.9, "not in this run", transform=ax.transAxes, ha="center", color="grey", fontsize=9)
            ax.axhline(1.0, color="black", lw=0.8)
            ax.set_xticks(list(xs), variants, rotation=45, fontsize=8)
            ax.set_title(f"n = {format_len(n)}  ·  {setting_title(key).split(' · ')[0]}", fontsize=9)
        row_axes[0].set_ylabel(f"speed-up over MHA (x)\n{setting_title(key)}", fontsize=8)
        row_axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def make_plots(frame: pd.DataFrame, out_dir: Path, baseline: str | None = "mha") -> tuple[list[Path], list[str]]:
    """Write every figure as PNG and SVG under ``out_dir``; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = _prepare(frame)
    colors = _colors(list(dict.fromkeys(frame["variant"])))
    figures = {
        "time": _metric_figure(frame, "time_ms", "Time per step (ms)", "Time per step vs sequence length (x: out of memory)", colors),
        "speedup": _speedup_figure(frame, baseline, colors),
        "memory": _metric_figure(frame, "peak_mem_bytes", "Peak GPU memory (GiB)", "Peak GPU memory (torch max allocated)", colors, scale=1 / 2**30),
        "tflops": _metric_figure(frame, "tflops", "Achieved TFLOP/s", "Achieved TFLOP/s (cost model FLOPs / median time)", colors, log_y=False),
        "paper": _paper_figure(frame, colors),
    }  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        for ext in ("png", "svg"):
            path = out_dir / f"{name}.{ext}"
            fig.savefig(path, dpi=130 if ext == "png" else None, bbox_inches="tight")
            written.append(path)
        plt.close(fig)
    return written, []
