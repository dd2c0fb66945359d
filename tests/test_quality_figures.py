"""sqabench quality's figures: the curves and the trade figure, drawn from the CSV."""

from texts import QUICK, runner

from sqabench.cli import app


def test_plot_tells_a_quality_csv_by_its_columns_and_draws_curves_and_trade(corpus, tmp_path):
    out = tmp_path / "q.csv"
    assert runner.invoke(app, [*QUICK, "--data", str(corpus), "--out", str(out)]).exit_code == 0
    for given in (out, tmp_path / "q-curves.csv"):  # the CSV, or its curves file
        folder = tmp_path / f"plots-{given.stem}"
        result = runner.invoke(app, ["plot", str(given), "--out", str(folder)])
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in folder.iterdir()) == ["quality-curves.png", "quality-curves.svg",
                                                              "quality-trade.png", "quality-trade.svg"]  # fmt: skip
    bad = runner.invoke(app, ["plot", str(out), "--baseline", "gqa", "--out", str(tmp_path / "p")])
    assert bad.exit_code == 2 and "gqa" in bad.output and not (tmp_path / "p").exists()


def test_the_trade_figure_rings_only_variants_no_other_beats_on_both_axes():
    from sqabench.quality.figures import _front

    # (step ms, loss): b is faster and better than c; a is slowest and best; d is fastest and worst
    points = [(10.0, 1.0), (5.0, 1.2), (6.0, 1.3), (2.0, 2.0)]
    assert _front(points, higher=False) == [True, True, False, True]
    assert _front([(1.0, 0.5), (2.0, 0.9)], higher=True) == [True, True]
    assert _front([(1.0, 0.9), (2.0, 0.5)], higher=True) == [True, False]


def test_the_trade_figure_rings_the_variant_that_is_faster_and_better_never_the_one_beaten(tmp_path):
    """Hand-made text rows: b is faster and lower in loss than c; the figure rings b (and a, the slowest but
    best; and d, the fastest), never c, on the step-time panel."""
    import matplotlib

    matplotlib.use("Agg")
    from sqabench.quality.figures import quality_figures

    points = {"a": (10.0, 1.0), "b": (5.0, 1.2), "c": (6.0, 1.3), "d": (2.0, 2.0)}
    rows = [{"task": "text", "variant": v, "seed": s, "val_loss": loss + 0.01 * s, "val_accuracy": 0.5, "step_ms": ms,
             "solved": "", "steps_to_90": "", "n_q_heads": 4, "n_kv_heads": 4, "window": "", "status": "ok",
             "steps": 10, "train_flops": 1e9 * ms} for v, (ms, loss) in points.items() for s in range(3)]  # fmt: skip
    figures, _ = quality_figures(rows, [], "a")
    panel = figures["quality-trade"].axes[0]
    from matplotlib.collections import PathCollection

    ringed = {tuple(map(float, xy)) for c in panel.collections if isinstance(c, PathCollection)
              for xy in c.get_offsets()}  # the rings: the only scatter of the panel  # fmt: skip
    assert {round(x, 1) for x, _ in ringed} == {10.0, 5.0, 2.0}


def test_the_quality_figures_titles_ticks_and_bars(tmp_path):
    """The curves' title names the measure once; one evaluation point gives whole step ticks; the trade figure has
    a title, the seeds' step-time range as x bars, and its FLOPs axis says its power of ten in the label."""
    import matplotlib

    matplotlib.use("Agg")
    from sqabench.quality.figures import quality_figures

    rows = [{"task": "mqar", "variant": v, "seed": s, "val_loss": 1.0, "val_accuracy": acc + 0.01 * s,
             "step_ms": ms * (1 + 0.5 * s), "solved": "", "steps_to_90": "", "n_q_heads": 4, "n_kv_heads": 4,
             "window": "", "status": "ok", "steps": 3, "train_flops": 3.1e11 * ms / 10}
            for v, acc, ms in (("mha", 0.5, 10.0), ("sqa", 0.4, 6.0)) for s in range(2)]  # fmt: skip
    curves = [{"variant": r["variant"], "seed": r["seed"], "step": "3", "val_accuracy": r["val_accuracy"],
               "val_loss": 1.0} for r in rows]  # fmt: skip
    figures, _ = quality_figures(rows, curves, "mha")
    ax = figures["quality-curves"].axes[0]
    assert ax.get_title().startswith("held-out accuracy: mean over 2 seeds")
    figures["quality-curves"].canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    trade = figures["quality-trade"]
    assert trade._suptitle.get_text().startswith("Quality against cost: held-out accuracy")
    steps_panel, flops_panel = trade.axes[:2]
    bars = [c for c in steps_panel.collections if c.__class__.__name__ == "LineCollection"]
    widths = sorted(round(float(abs(seg[1][0] - seg[0][0])), 3) for c in bars for seg in c.get_segments()
                    if abs(seg[1][1] - seg[0][1]) < 1e-12)  # horizontal segments: the x bars  # fmt: skip
    assert widths == [3.0, 5.0]  # sqa's seeds 6 and 9 ms, mha's 10 and 15 ms
    assert flops_panel.get_xlabel() == "training FLOPs (cost model), x 10^11"
