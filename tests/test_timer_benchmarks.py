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


def test_the_timer_noise_prints_within_and_between_run_variation(capsys):
    assert load("timer_noise").main(["--runs", "2", "--seq", "64", "--variants", "mha", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 fresh processes x 3 repeats" in out and "within-run CV" in out and "mha n=64" in out
