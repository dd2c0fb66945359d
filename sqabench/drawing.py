"""How every figure looks, in both wings: each variant's colour and marker, the panel size, a log axis with
plain labels, and saving a figure as PNG and SVG with no half-written file. matplotlib is imported inside
the functions that draw (Agg, headless); importing this module loads neither it nor torch.

Every variant keeps one colour in every figure, by family: the MHA/GQA/MQA baselines in greys, the SQA
family in blues (darker = fewer query heads), windowed variants in oranges, custom heads in greens.
"""

from __future__ import annotations

from pathlib import Path

from sqabench.files import replacing

FAMILY_STYLE: dict[str, tuple[str, str]] = {  # colour, marker: hues and markers apart within a family
    "mha": ("#1a1a1a", "o"),
    "gqa": ("#666666", "s"),
    "mqa": ("#a6a6a6", "D"),
    "lsqa": ("#6baed6", "v"),
    "ssqa": ("#17becf", "^"),
    "sqa": ("#1f62c4", "o"),
    "xsqa": ("#08306b", "s"),
    "xsmqa": ("#7b4fc4", "D"),
    "swa": ("#fdae6b", "o"),
    "swa-ssqa": ("#f16913", "^"),
    "swa-xsqa": ("#a63603", "s"),
    "base": ("#c51b7d", "*"),  # a model's own attention
}
CUSTOM_COLORS = ("#2ca02c", "#bcbd22", "#8c564b", "#e377c2", "#7f7f00")
CUSTOM_MARKERS = ("P", "X", "h", "p", "<")
PANEL_SIZE = (7.0, 4.6)


def styles(variants) -> dict[str, tuple[str, str]]:
    """(colour, marker) of each variant: the family's own, custom heads from a qualitative set."""
    result, custom = {}, 0
    for variant in variants:
        if variant in FAMILY_STYLE:
            result[variant] = FAMILY_STYLE[variant]
        else:
            result[variant] = (CUSTOM_COLORS[custom % len(CUSTOM_COLORS)], CUSTOM_MARKERS[custom % len(CUSTOM_MARKERS)])
            custom += 1
    return result


def plain_log_axis(ax, axis: str = "y") -> None:
    """Log scale with plain labels (0.5, 2, 300), never 6x10^3; denser ticks over a narrow range."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    ax.autoscale_view()
    low, high = sorted(abs(v) for v in (ax.get_ylim() if axis == "y" else ax.get_xlim()))
    span = high / low if low > 0 else 1e9
    if span < 4:
        subs = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
    else:
        subs = (1.0, 2.0, 3.0, 5.0) if span < 30 else (1.0, 2.0, 5.0)
    if span < 2:  # a range this narrow holds one log tick at best: evenly spaced plain ones instead
        target.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    else:
        target.set_major_locator(LogLocator(base=10, subs=subs, numticks=60))  # never thinned to the decades
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def save_figures(figures: dict, out_dir: Path) -> list[Path]:
    """Each figure as ``<name>.png`` and ``.svg`` under ``out_dir``, each drawn under a scratch name and then
    renamed together: never half a figure, never a PNG without its SVG. Every figure is closed, whatever happens."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
        try:
            with replacing(png) as png_scratch, replacing(svg) as svg_scratch:  # both drawn, then both renamed
                fig.savefig(png_scratch, format="png", dpi=120, bbox_inches="tight")
                fig.savefig(svg_scratch, format="svg", bbox_inches="tight")
            written += [png, svg]
        finally:
            plt.close(fig)
    return written
