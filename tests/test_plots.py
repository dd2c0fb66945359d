"""What the figures draw: labelled theory lines, error bars, one colour per variant, nothing blank."""

import csv
import os
from pathlib import Path

import matplotlib
import pytest
from matplotlib.colors import to_hex
from typer.testing import CliRunner

from rows import write_run
from sqabench.cli import app
from sqabench.drawing import FAMILY_STYLE, styles
from sqabench.speed.plots import build_figures, paper_table
from sqabench.speed.results import COLUMNS, load_results, resolve_baseline, results_writer

matplotlib.use("Agg")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def gpu_figures(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plots")
    frame = load_results(
        [write_run(tmp / "a.csv", status={("mha", 32768): "oom"}), write_run(tmp / "b.csv", gpu="NVIDIA A100")]
    )
    figures, notes = build_figures(frame, "mha")
    yield figures, notes
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def lines_by_label(fig) -> dict[str, str]:
    """Colour of each labelled line or error-bar series, over all panels."""
    found = {}
    for ax in fig.axes:
        for container in ax.containers:
            label = container.get_label()
            if label and not label.startswith("_"):
                found[label] = to_hex(container.lines[0].get_color())
        for line in ax.get_lines():
            label = line.get_label()
            if label and not label.startswith("_"):
                found.setdefault(label, to_hex(line.get_color()))
    return found


def test_paper_table_matches_the_issue():
    table = paper_table()
    assert list(table.index) == [1024, 4096, 32768, 131072, 200000]
    assert list(table.columns) == ["xsqa", "sqa", "ssqa", "swa", "mqa", "gqa", "mha"]
    assert table.loc[1024, "xsqa"] == 0.0570 and table.loc[1024, "mha"] == 0.0869
    assert table.loc[32768, "swa"] == 0.1871 and table.loc[131072, "sqa"] == 0.6308
    assert table.loc[200000, "xsqa"] == 0.8194 and table.loc[200000, "mha"] == 2.8734
    assert table.loc[4096, "gqa"] == 0.1027 and table.loc[200000, "ssqa"] == 1.4824


def test_two_gpus_are_two_panels_of_every_figure(gpu_figures):
    figures, _ = gpu_figures
    assert set(figures) == {"time", "speedup", "memory", "attention_memory", "throughput", "paper"}  # no floor
    for name, fig in figures.items():
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        assert len(titles) == 2, name
        assert any("H100" in t for t in titles) and any("A100" in t for t in titles)


def test_theory_lines_are_labelled_and_explained(gpu_figures):
    figures, _ = gpu_figures
    texts = [t.get_text() for ax in figures["speedup"].axes for t in ax.texts]
    assert any(t.startswith("H/Hq = 4 (xsqa)") and "attention only" in t for t in texts)
    assert any(t.startswith("H/Hq = 2 (sqa)") for t in texts)
    assert "FLOP ratio (cost model)" in lines_by_label(figures["speedup"])
    assert "theoretical speed-up of attention alone" in figures["speedup"]._suptitle.get_text()


def test_every_median_has_min_max_error_bars(gpu_figures):
    figures, _ = gpu_figures
    for name in ("time", "speedup", "throughput"):
        ax = figures[name].axes[0]
        assert ax.containers, name
        assert all(container.has_yerr for container in ax.containers), name


def test_a_variant_has_one_colour_in_every_figure(gpu_figures):
    figures, _ = gpu_figures
    time, speedup = lines_by_label(figures["time"]), lines_by_label(figures["speedup"])
    for variant in ("gqa", "sqa", "xsqa"):
        assert time[variant] == speedup[variant] == FAMILY_STYLE[variant][0]
    assert lines_by_label(figures["paper"])["sqa"] == FAMILY_STYLE["sqa"][0]


def test_families_read_at_a_glance():
    def rgb(name):
        return matplotlib.colors.to_rgb(FAMILY_STYLE[name][0])

    for name in ("mha", "gqa", "mqa"):  # greys
        r, g, b = rgb(name)
        assert max(r, g, b) - min(r, g, b) < 0.05
    for name in ("sqa", "ssqa", "xsqa", "xsmqa", "lsqa"):  # blues
        r, g, b = rgb(name)
        assert b > r and b > g
    for name in ("swa", "swa-ssqa", "swa-xsqa"):  # oranges
        r, g, b = rgb(name)
        assert r > g > b


def test_oom_is_marked_inside_the_frame_and_legends_sit_outside(gpu_figures):
    figures, _ = gpu_figures
    (ax,) = [ax for ax in figures["time"].axes if "H100" in ax.get_title()]
    marks = [line for line in ax.get_lines() if line.get_marker() == "x" and len(line.get_xdata())]
    assert marks and all(0 < line.get_ydata()[0] < 1 for line in marks)  # axes fraction, below the top edge
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1


def test_gpu_rows_in_tflops_and_a_not_like_with_like_paper_panel_says_so(gpu_figures):
    figures, _ = gpu_figures
    assert figures["throughput"].axes[0].get_ylabel() == "achieved TFLOP/s"
    title = figures["paper"].axes[0].get_title()
    assert "not like with like" in title and "causal: encoder (paper: causal)" in title


def test_plain_tick_labels_on_log_axes(gpu_figures):
    figures, _ = gpu_figures
    formatter = figures["time"].axes[0].yaxis.get_major_formatter()
    assert formatter(6000, 0) == "6000" and formatter(0.5, 0) == "0.5"


def test_plot_from_a_real_cpu_run(real_run, tmp_path):
    run, _ = real_run
    figures, notes = build_figures(load_results(run), "mha")
    assert "memory" not in figures and any("memory figure not drawn" in n for n in notes)
    assert figures["throughput"].axes[0].get_ylabel() == "achieved GFLOP/s"
    assert "efficiency" in figures and "breakdown" in figures
    result = runner.invoke(app, ["plot", str(run), "--out", str(tmp_path / "plots")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "memory figure not drawn: no GPU memory recorded (a CPU run)" in result.output
    for name in ("time", "speedup", "throughput", "efficiency", "paper"):
        for ext in ("png", "svg"):
            assert (tmp_path / "plots" / f"{name}.{ext}").stat().st_size > 5_000
    assert not (tmp_path / "plots" / "memory.png").exists()


def test_plot_without_a_csv_draws_the_newest_results_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["plot"])
    assert result.exit_code == 2 and result.output.strip() == (
        "error: no results CSV given and none in results/; run `sqabench run` first, or name CSVs"
    )
    (tmp_path / "results").mkdir()
    old = write_run(tmp_path / "results" / "b-old.csv", gpu="NVIDIA A100")
    new = write_run(tmp_path / "results" / "a-new.csv")
    os.utime(old, (1e9, 1e9))  # written long before: the name does not decide
    result = runner.invoke(app, ["plot", "--out", "figs"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"plotting {Path('results', new.name)}, the newest results file" in result.output
    assert "H100" in " ".join((tmp_path / "figs" / "speedup.svg").read_text().split()) and (
        "A100" not in (tmp_path / "figs" / "speedup.svg").read_text()
    )


def test_unknown_baseline_exits_2(tmp_path):
    run = write_run(tmp_path / "r.csv")
    result = runner.invoke(app, ["plot", str(run), "--baseline", "mhaa", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "variants there: mha, gqa, sqa, xsqa" in result.output
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("content", ["", "variant,seq_len\nmha,1k\n", "\x00\x01\x02"])
def test_bad_csv_exits_2(tmp_path, content):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    result = runner.invoke(app, ["plot", str(bad), "--out", str(tmp_path / "plots")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "plots").exists()


def test_header_only_csv_exits_2(tmp_path):
    path = tmp_path / "empty.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerow(COLUMNS)
    result = runner.invoke(app, ["plot", str(path)])
    assert result.exit_code == 2 and "has no rows" in result.output


def titles(fig) -> str:
    return fig._suptitle.get_text() + " ".join(ax.get_title() for ax in fig.axes)


def labels(fig) -> set[str]:
    return {text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()}


def test_oom_and_noise_are_in_the_title_only_when_the_data_has_them(tmp_path):
    clean, _ = build_figures(load_results(write_run(tmp_path / "a.csv")), "mha")
    assert "out of memory" not in titles(clean["time"]) and "noisy" not in titles(clean["time"])
    noisy = {("sqa", 1024): [0.7, 1.3, 1.0]}
    marked, _ = build_figures(load_results(write_run(tmp_path / "b.csv", status={("mha", 32768): "oom"},
                                                     samples=noisy)), "mha")  # fmt: skip
    assert "x: out of memory" in titles(marked["time"]) and "hollow: noisy" in titles(marked["time"])
    for name in ("time", "speedup"):
        assert "hollow: noisy (spread > 10%)" in labels(marked[name]), name
        hollow = [c for ax in marked[name].axes for c in ax.collections
                  if len(c.get_offsets()) and (c.get_facecolor()[:, :3] == 1).all()]  # fmt: skip
        assert hollow, name


def test_the_efficiency_axis_fits_the_data_and_marks_a_wrong_floor(tmp_path):
    from test_report import rows_for

    from sqabench.flops import Rates

    rows = rows_for("mha,sqa", rates=Rates(1e15, 1e13, 5e13))  # efficiencies of a few percent
    path = tmp_path / "r.csv"
    writer = results_writer(path)
    for row in rows:
        writer.write(row)
    figures, _ = build_figures(load_results(path), "mha")
    ax = figures["efficiency"].axes[0]
    top = max(float(r["efficiency"]) for r in rows)
    assert top < 0.2 and ax.get_ylim()[1] == pytest.approx(top * 1.15)  # not a fixed 0-1 axis
    (unrated,) = rows_for("mha")
    wrong = rows_for("mha", rates=Rates(1e15, int(unrated["exps"]) / 0.012, 1e15))  # efficiency 1.2: a bug
    path = tmp_path / "wrong.csv"
    results_writer(path).write(wrong[0])
    figures, notes = build_figures(load_results(path), "mha")
    assert "above 1: the floor is wrong (a bug, not a result)" in labels(figures["efficiency"])
    assert any("1 cells above 1, marked as errors" in note for note in notes)


def test_a_decode_speedup_figure_promises_only_what_it_draws(tmp_path):
    figures, _ = build_figures(load_results(write_run(tmp_path / "d.csv", mode="decode")), "gqa")
    title = figures["speedup"]._suptitle.get_text()
    assert "byte ratio of a decode step" in title and "FLOP ratio" not in title and "H/Hq" not in title
    assert not any(t.get_text().startswith("H/Hq") for ax in figures["speedup"].axes for t in ax.texts)


def test_an_error_only_file_draws_no_empty_time_figure(tmp_path):
    statuses = {(v, n): "error" for v in ("mha", "gqa", "sqa", "xsqa") for n in (1024, 32768)}
    figures, notes = build_figures(load_results(write_run(tmp_path / "e.csv", status=statuses)), "mha")
    assert "time" not in figures and any("time figure not drawn: no ok rows" in n for n in notes)


def test_the_paper_figure_has_error_bars_and_names_a_layer_difference(tmp_path):
    from test_report import rows_for

    path = tmp_path / "p.csv"
    writer = results_writer(path)
    for row in rows_for("mha,sqa,xsqa"):
        writer.write({**row, "n_layers": 2})
    figures, _ = build_figures(load_results(path), "mha")
    ax = figures["paper"].axes[0]
    assert ax.containers and all(c.has_yerr for c in ax.containers)
    assert "layers: 2 (paper: 8)" in ax.get_title()


def test_colours_within_a_family_and_custom_heads_are_far_apart():
    from itertools import combinations

    style = styles([*FAMILY_STYLE, "6/2", "4/4@256", "12/3"])
    for a, b in combinations(style, 2):
        ra, rb = matplotlib.colors.to_rgb(style[a][0]), matplotlib.colors.to_rgb(style[b][0])
        distance = sum((x - y) ** 2 for x, y in zip(ra, rb)) ** 0.5
        assert distance > 0.17 or style[a][1] != style[b][1], (a, b)  # apart in colour, else in marker
    for pair in (("xsqa", "xsmqa"), ("sqa", "ssqa"), ("sqa", "lsqa"), ("ssqa", "lsqa"), ("base", "6/2")):
        ra, rb = (matplotlib.colors.to_rgb(style[name][0]) for name in pair)
        assert sum((x - y) ** 2 for x, y in zip(ra, rb)) ** 0.5 > 0.25, pair


def test_an_interrupted_plot_leaves_no_half_figure(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from sqabench.speed.plots import make_plots

    real = Figure.savefig

    def interrupted_at_svg(self, path, *args, **kwargs):
        if kwargs.get("format") == "svg":
            raise KeyboardInterrupt
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", interrupted_at_svg)
    with pytest.raises(KeyboardInterrupt):
        make_plots(load_results(write_run(tmp_path / "r.csv")), tmp_path / "plots", "mha")
    assert list((tmp_path / "plots").iterdir()) == []  # no PNG without its SVG, no draft left


def test_plot_reuses_the_runs_baseline(tmp_path):
    path = write_run(tmp_path / "d.csv", mode="decode")
    from sqabench.speed.results import read_rows

    rows = read_rows(path)
    rewritten = tmp_path / "gqa-baseline.csv"
    writer = results_writer(rewritten)
    for row in rows:
        writer.write({**row, "baseline": "gqa"})  # as `sqabench run --mode decode --baseline gqa` records it
    figures, _ = build_figures(load_results(rewritten), resolve_baseline(load_results(rewritten), None))
    assert figures["speedup"]._suptitle.get_text().startswith("Speed-up over gqa")


@pytest.mark.parametrize("out", ["/proc/sqabench-plots", "/sys/sqabench-plots"])
def test_plot_into_a_place_that_cannot_be_written_is_one_line(tmp_path, out):
    result = runner.invoke(app, ["plot", str(write_run(tmp_path / "r.csv")), "--out", out])
    assert result.exit_code == 2 and "cannot write figures there" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def _one_length(tmp_path, noisy: bool = False):
    """A run at one length (1k: the 32k cells dropped), every variant's cell noisy when asked (60% spread)."""
    wide = [0.7, 1.3, 0.8, 1.2, 1.0, 0.75, 1.25, 0.9, 1.1, 1.0]
    samples = {(v, 1024): wide for v in ("mha", "gqa", "sqa", "xsqa")} if noisy else None
    drop = [(v, 32768) for v in ("mha", "gqa", "sqa", "xsqa")]
    return load_results(write_run(tmp_path / "one.csv", drop=drop, samples=samples))


def test_error_bars_at_one_length_sit_apart_and_the_tick_stays_at_the_length(tmp_path):
    figures, _ = build_figures(_one_length(tmp_path), "mha")
    for name in ("time", "speedup", "throughput"):
        ax = figures[name].axes[0]
        xs = sorted({round(float(x), 3) for line in ax.get_lines() for x in line.get_xdata() if float(x) > 10})
        assert len(xs) >= 3 and all(0.94 * 1024 < x < 1.06 * 1024 for x in xs), (name, xs)  # apart, near 1k
        assert [float(t) for t in ax.get_xticks()] == [1024.0]


def test_noisy_cells_are_hollow_in_the_throughput_and_efficiency_figures_too(tmp_path):
    from matplotlib.collections import PathCollection
    from test_report import rows_for

    from sqabench.flops import Rates

    figures, _ = build_figures(_one_length(tmp_path, noisy=True), "mha")
    path = tmp_path / "floors.csv"  # rows with a floor (efficiency), one repeat far from the others: noisy
    writer = results_writer(path)
    for row in rows_for("mha,sqa", times=(10.0, 13.0, 7.0), rates=Rates(1e15, 1e13, 5e13)):
        writer.write(row)
    figures["efficiency"] = build_figures(load_results(path), "mha")[0]["efficiency"]
    for name in ("time", "throughput", "efficiency"):
        ax = figures[name].axes[0]
        hollow = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())
                  and tuple(c.get_facecolors()[0][:3]) == (1.0, 1.0, 1.0)]  # fmt: skip
        assert hollow, name
        assert "hollow: noisy (spread > 10%)" in [t.get_text() for t in ax.get_legend().get_texts()], name


def test_a_legend_names_only_what_its_panel_draws(tmp_path):
    """A decode panel without the baseline draws no ratio: its legend must not list one."""
    frame = load_results(
        [
            write_run(tmp_path / "f.csv"),
            write_run(tmp_path / "d.csv", mode="decode", drop=[("mha", 1024), ("mha", 32768)]),
        ]
    )
    figures, _ = build_figures(frame, "mha")
    for ax in figures["speedup"].axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
        drew_ratio = any(line.get_linestyle() == ":" and len(line.get_xdata()) for line in ax.get_lines())
        assert any("ratio (cost model)" in label for label in labels) == drew_ratio


def test_a_narrow_log_range_still_has_several_labelled_ticks():
    import matplotlib.pyplot as plt

    from sqabench.drawing import plain_log_axis

    fig, ax = plt.subplots()
    ax.plot([0.97, 1.0, 1.08], [1, 2, 3], "o")
    plain_log_axis(ax, "x")
    fig.canvas.draw()
    low, high = ax.get_xlim()
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]
    assert len(shown) >= 3, shown


def test_the_h_over_hq_labels_sit_above_the_lines(gpu_figures):
    figures, _ = gpu_figures
    ax = figures["speedup"].axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith("H/Hq")]
    assert labels and all(t.get_zorder() > max(line.get_zorder() for line in ax.get_lines()) for t in labels)
    assert all(t.get_bbox_patch().get_alpha() in (None, 1) for t in labels)  # opaque: no line shows through
