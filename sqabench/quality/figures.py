"""A quality CSV (``sqabench quality``) -> figures: the held-out curves and the speed-quality trade.

``quality-curves``: the judged metric (text: val loss on real tokens; MQAR: accuracy) against the training
step, per variant, the mean over seeds as a line and the seeds' range as a band. ``quality-trade``: each
variant's final metric, mean with its 95% t interval over seeds, against its median training step time and
against its training FLOPs; the variants no other beats on both axes (means) are ringed, and a note says that
intervals that overlap are not a ranking. For text, the paper's Table 1 (val loss against seconds a batch, one
seed, pads scored, an L40S) is drawn in a panel of its own: its axes are not ours.
"""

from __future__ import annotations

import math
from pathlib import Path

from sqabench.drawing import PANEL_SIZE, plain_log_axis, save_figures, styles
from sqabench.errors import ConfigError
from sqabench.quality.rows import read_run
from sqabench.quality.summary import summarise
from sqabench.shipped import shipped_rows
from sqabench.units import plural
from sqabench.variants import pick_baseline

LABELS = {"val_loss": "val loss (nats a token, real tokens only)", "val_accuracy": "held-out accuracy"}
NAMES = {"val_loss": "val loss", "val_accuracy": "accuracy"}  # the measure, in a title that says "held-out"


def quality_figures(rows: list[dict], curves: list[dict], baseline: str) -> tuple[dict, list[str]]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    notes = []
    summaries = summarise(rows, baseline)
    metric = summaries[0].metric
    higher = metric == "val_accuracy"
    style = styles([s.variant for s in summaries])
    figures = {}
    ok = {(r["variant"], r["seed"]) for r in rows if r["status"] == "ok"}
    points = [c for c in curves if (c["variant"], c["seed"]) in ok]
    if points:
        fig, ax = plt.subplots(figsize=PANEL_SIZE)
        for s in summaries:
            by_step: dict[int, list[float]] = {}
            for c in points:
                if c["variant"] == s.variant:
                    by_step.setdefault(int(c["step"]), []).append(float(c[metric]))
            steps = sorted(by_step)
            colour, marker = style[s.variant]
            mean = [sum(by_step[t]) / len(by_step[t]) for t in steps]
            ax.plot(steps, mean, color=colour, marker=marker, markersize=3, label=f"{s.variant} ({s.heads})")
            ax.fill_between(steps, [min(by_step[t]) for t in steps], [max(by_step[t]) for t in steps], color=colour,
                            alpha=0.15, linewidth=0)  # fmt: skip
        ax.set_xlabel("training step")
        evaluated = sorted({int(c["step"]) for c in points})
        if len(evaluated) <= 8:  # few evaluations (one, say): a tick at each, never a fraction of a step
            ax.set_xticks(evaluated)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(LABELS[metric])
        seeds = summaries[0].seeds
        ax.set_title(f"held-out {NAMES[metric]}: mean over {plural(seeds, 'seed')}, band = the "
                     "seeds' range", fontsize=10)  # fmt: skip
        if not higher:
            ax.set_yscale("log")
            plain_log_axis(ax, "y")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        figures["quality-curves"] = fig
    else:
        notes.append("quality-curves not drawn: no curves file beside the CSV")
    text = metric == "val_loss"
    panels = 3 if text else 2
    step_range = {}  # each variant's step time over its seeds: min, max
    for r in rows:
        if r["status"] == "ok":
            low, high = step_range.get(r["variant"], (float("inf"), 0.0))
            step_range[r["variant"]] = (min(low, float(r["step_ms"])), max(high, float(r["step_ms"])))
    fig, axes = plt.subplots(1, panels, figsize=(PANEL_SIZE[0] * panels * 0.62, PANEL_SIZE[1] + 0.6))
    for ax, (x_of, xlabel, ranged) in zip(
        axes,
        (
            (lambda s: s.step_ms, "median training step (ms)", True),
            (lambda s: s.train_flops, "training FLOPs (cost model)", False),
        ),
    ):
        front = _front([(x_of(s), s.value.mean) for s in summaries], higher)
        for s, best in zip(summaries, front):
            colour, marker = style[s.variant]
            low = s.value.mean - s.value.low if s.value.low is not None else 0
            high = s.value.high - s.value.mean if s.value.high is not None else 0
            x = x_of(s)
            xerr = [[x - step_range[s.variant][0]], [step_range[s.variant][1] - x]] if ranged else None
            ax.errorbar([x], [s.value.mean], yerr=[[low], [high]], xerr=xerr, color=colour, marker=marker,
                        capsize=3, linestyle="none", label=f"{s.variant} ({s.heads})")  # fmt: skip
            if best:
                ax.scatter([x], [s.value.mean], s=180, facecolors="none", edgecolors="#d62728", linewidths=1.2)
        if ranged:
            ax.set_xlabel(xlabel)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        else:  # FLOPs: the power of ten said once, in the label, never as an offset over it
            power = int(math.floor(math.log10(max(x_of(s) for s in summaries))))
            ax.set_xlabel(f"{xlabel}, x 10^{power}")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _, power=power: f"{v / 10**power:.3g}"))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_ylabel(LABELS[metric])
        ax.grid(alpha=0.3)
    axes[0].set_title("mean and 95% interval over seeds (x bars: the seeds' step times); ringed: no variant is "
                      "both faster and better\n(by the means: overlapping intervals are no ranking)", fontsize=8,
                      loc="left")  # fmt: skip
    seeds = summaries[0].seeds
    fig.suptitle(f"Quality against cost: held-out {NAMES[metric]} after training, {plural(seeds, 'seed')} a "
                 "variant", fontsize=11, fontweight="bold")  # fmt: skip
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if text:
        ax = axes[2]
        for row in (r for r in shipped_rows("paper_quality.csv") if r["setting"] == "dense"):
            colour, marker = styles([row["variant"]])[row["variant"]]
            ax.scatter([float(row["s_per_batch"])], [float(row["val_loss"])], color=colour, marker=marker)
            ax.annotate(row["variant"], (float(row["s_per_batch"]), float(row["val_loss"])), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.set_xlabel("paper: seconds a batch (L40S, batch 128 x 1024)")
        ax.set_ylabel("paper: val loss (one seed, pads scored)")
        ax.set_title("the paper's Table 1 (its own axes: not comparable to ours)", fontsize=8, loc="left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    figures["quality-trade"] = fig
    return figures, notes


def _front(points: list[tuple[float, float]], higher: bool) -> list[bool]:
    """Which points no other beats on both axes: less x, and more y (``higher``) or less y."""

    def beats(a, b) -> bool:
        better_y = a[1] >= b[1] if higher else a[1] <= b[1]
        return a[0] <= b[0] and better_y and a != b

    return [not any(beats(other, p) for other in points) for p in points]


def plot_quality(csvs: list[Path], out_dir: Path, baseline: str | None) -> tuple[list[Path], list[str]]:
    """``sqabench plot`` on a quality CSV (or its curves file), or on the shards of one run (``--shard``'s files,
    read as ``report`` reads them): the curves and the trade figure under ``out_dir``; (the files written, notes
    on what was left out)."""
    import matplotlib

    runs = [read_run(path) for path in csvs]
    rows, curves, path = runs[0]
    shard_notes: list[str] = []
    if len(runs) > 1:
        from sqabench.quality.report import merged_rows

        rows, shard_notes = merged_rows([found for _, _, found in runs])
        curves = [point for _, points, _ in runs for point in points]
    names = list(dict.fromkeys(r["variant"] for r in rows if r["status"] == "ok"))
    chosen = pick_baseline(baseline, names, f"is not among the variants of {path}") or names[0]
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a directory")
    matplotlib.use("Agg")
    figures, notes = quality_figures(rows, curves, chosen)
    notes = shard_notes + notes
    try:
        written = save_figures(figures, out_dir)
    except OSError as error:
        raise ConfigError(f"--out {out_dir}: cannot write figures there: {error.strerror or error}") from None
    return written, notes
