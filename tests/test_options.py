"""sqabench run's options are written once: the command's signature and a --cp rank's arguments come from them."""

from typer.testing import CliRunner

import sqabench.cli as cli
from sqabench.options import flag_of, option_infos
from sqabench.speed.options import RunOptions

runner = CliRunner()


def parsed(args: list[str], monkeypatch) -> RunOptions:
    """The RunOptions `sqabench run ARGS` builds, caught before anything runs."""
    seen = []
    monkeypatch.setattr(cli, "run", lambda options: seen.append(options))
    app = cli.typer.Typer()
    app.command("run")(cli.command_of(RunOptions, cli.run))
    app.command("other")(lambda: None)
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_every_field_is_an_option_of_run():
    help_text = runner.invoke(cli.app, ["run", "--help"], env={"COLUMNS": "200"}).output
    for name, info in option_infos(RunOptions).items():
        for flag in flag_of(name, info).split("/"):
            assert flag in help_text, flag


def test_argv_gives_back_the_same_options(monkeypatch):
    given = RunOptions(seq="1k,4k", variants="sqa,6/2", preset="wide", device="cpu", dtype="bf16", mode="train",
                       causal=True, window=64, kernel="flex", tokens=4096, batch=3, warmup=0, repeats="2",
                       out="r.csv", resume=True, baseline="gqa", layers=2, scope="block", cp=2,
                       cp_timeout=30.0)  # fmt: skip
    assert parsed(given.argv(), monkeypatch) == given
    decode = RunOptions(mode="decode", new_tokens=8, cuda_graphs=True)
    assert parsed(decode.argv(), monkeypatch) == decode
    assert parsed(RunOptions(cuda_graphs=False).argv(), monkeypatch).cuda_graphs is False  # --no-cuda-graphs
    extras = RunOptions(breakdown=True, trace_dir="t", compile=True, compile_mode="max-autotune", budget="10m",
                        dry_run=True, yes=True)  # fmt: skip
    assert parsed(extras.argv(), monkeypatch) == extras
    assert RunOptions().argv() == ["--variants", "all", "--preset", "paper", "--device", "auto", "--dtype", "auto",
                                   "--mode", "fwd", "--kernel", "auto", "--scope", "model",
                                   "--compile-mode", "default", "--runs", "1", "--timer", "events"]  # fmt: skip


def test_a_cp_launch_passes_the_parsed_options(monkeypatch, tmp_path):
    import sqabench.speed.cp as cp

    started = []
    monkeypatch.setattr(cp, "launch", lambda world, argv: started.append((world, argv)) or 0)
    out = tmp_path / "r.csv"
    result = runner.invoke(cli.app, ["run", "--cp", "2", "--device", "CPU", "--seq", "256", "--variants", "SQA",
                                     "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    ((world, argv),) = started
    assert world == 2 and argv[0] == "run"
    again = parsed(argv[1:], monkeypatch)
    assert again == RunOptions(seq="256", variants="SQA", device="CPU", out=str(out), cp=2)
