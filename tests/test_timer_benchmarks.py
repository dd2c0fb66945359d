"""benchmarks/timer_agreement.py and timer_noise.py run and print their tables (their numbers are this machine's
and its load's: a benchmark's to record, never a test's to hold)."""

from pathlib import Path

from factories import load_benchmark

HERE = Path(__file__).parent


def load(name: str):
    return load_benchmark(name)


def test_the_timer_agreement_prints_each_cells_two_times_and_their_ratio(capsys):
    args = ["--seq", "64", "--variants", "mha", "--repeats", "3", "--min-run-time", "0.01", "--device", "cpu"]
    assert load("timer_agreement").main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "sqabench ms" in lines[1] and "torch Timer ms" in lines[1]
    ours, theirs, ratio = map(float, lines[2].split()[2:5])
    assert lines[2].startswith("mha n=64") and abs(ratio - theirs / ours) < 2e-3


def test_the_timer_noise_prints_within_and_between_run_variation(capsys, monkeypatch):
    """Each cell's coefficient of variation within each run (the median over runs) and between the runs'
    medians, by hand on canned runs (the fresh processes themselves are `sqabench run`'s, tested elsewhere)."""
    script = load("timer_noise")
    runs = iter([[{"variant": "mha", "seq_len": "64", "samples_ms": "9;10;11", "time_ms": "10"}],
                 [{"variant": "mha", "seq_len": "64", "samples_ms": "18;20;22", "time_ms": "20"}]])  # fmt: skip
    monkeypatch.setattr(script, "one_run", lambda out, args: next(runs))
    assert script.main(["--runs", "2", "--seq", "64", "--variants", "mha", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 fresh processes x 3 repeats" in out and "within-run CV" in out
    (line,) = [line for line in out.splitlines() if line.startswith("mha n=64")]
    within = 1 / 10  # sd of 9, 10, 11 is 1 (and of 18, 20, 22 is 2 over a mean of 20): 10% each
    between = (50**0.5) / 15  # medians 10 and 20: sd 7.07 over a mean of 15
    assert line.split()[-3:] == ["15", f"{within:.1%}", f"{between:.1%}"]
