"""What the figures draw: labelled theory lines, error bars, one colour per variant, nothing blank."""

import csv

import matplotlib
import pytest
from matplotlib.colors import to_hex
from typer.testing import CliRunner

from rows import write_run
from sqabench.cli import app
from sqabench.plots import FAMILY_STYLE, build_figures, paper_table
from sqabench.results import COLUMNS, load_results

matplotlib.use("Agg")
runner = CliRunner()


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
    assert set(figures) == {"time", "speedup", "memory", "throughput", "paper"}  # no floor in these rows
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


def test_plot_from_a_real_cpu_run(tmp_path):
    run = tmp_path / "run.csv"
    args = ["run", "--device", "cpu", "--seq", "64,128", "--batch", "1", "--warmup", "0", "--repeats", "2"]
    result = runner.invoke(app, [*args, "--variants", "mha,sqa,xsqa", "--out", str(run)])
    assert result.exit_code == 0, result.output
    figures, notes = build_figures(load_results(run), "mha")
    assert "memory" not in figures and any("memory figure not drawn" in n for n in notes)
    assert figures["throughput"].axes[0].get_ylabel() == "achieved GFLOP/s"
    assert "efficiency" in figures
    result = runner.invoke(app, ["plot", str(run), "--out", str(tmp_path / "plots")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "memory figure not drawn: no GPU memory recorded (a CPU run)" in result.output
    for name in ("time", "speedup", "throughput", "efficiency", "paper"):
        for ext in ("png", "svg"):
            assert (tmp_path / "plots" / f"{name}.{ext}").stat().st_size > 5_000
    assert not (tmp_path / "plots" / "memory.png").exists()


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
