"""What `sqabench quality --help` says each default is, against what the code uses when the option is left out:
every option whose default is None (the task's or the device's) states its default in its help, read here and
compared with the plan the code builds. A new such option must be added below, or this test fails."""

import dataclasses
import re
from typing import get_type_hints

import pytest

from sqabench.quality.options import QualityOptions
from sqabench.quality.plan import _dtype, _task, default_budget, resolve_quality


def help_of(name: str) -> str:
    return get_type_hints(QualityOptions, include_extras=True)[name].__metadata__[0].help


def numbers(name: str, pattern: str) -> list[float]:
    match = re.search(pattern, help_of(name))
    assert match, f"--{name.replace('_', '-')}'s help no longer states its default: {help_of(name)!r}"
    return [float(g) for g in match.groups()]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(f"document {i}: " + "the cat sat on the mat. " * (5 + i % 7) for i in range(200)))
    return path


def plans(corpus):
    mqar, _ = resolve_quality(QualityOptions(device="cpu", dry_run=True))
    text, _ = resolve_quality(QualityOptions(device="cpu", dry_run=True, data=str(corpus)))
    return mqar, text


def test_every_stated_default_is_the_one_used(corpus):
    mqar, text = plans(corpus)
    seq = numbers("seq", r"Default: (\d+) for MQAR, (\d+) for text")
    assert seq == [mqar.cfg.task.seq_len, text.cfg.task.seq_len]
    assert numbers("batch", r"Default: (\d+) for MQAR, (\d+) for text") == [mqar.cfg.batch, text.cfg.batch]
    assert numbers("eval_every", r"Default: (\d+) for MQAR, (\d+) for text") == [mqar.cfg.eval_every,
                                                                                 text.cfg.eval_every]  # fmt: skip
    cpu, gpu = numbers("eval_tokens", r"Default: (\d+) on a CPU, (\d+) on a GPU")
    options = QualityOptions(data=str(corpus))
    assert (text.cfg.task.eval_tokens, _task(options, "cuda").eval_tokens) == (cpu, gpu)
    assert numbers("vocab", r"MQAR's \(default (\d+);")[0] == mqar.cfg.task.vocab
    assert numbers("pairs", r"\(default (\d+)\)")[0] == mqar.cfg.task.size.pairs
    assert "bytes (the default" in help_of("tokenizer") and text.cfg.task.tokenizer.name == "bytes"
    (share,) = numbers("held_out", r"\(default ([0-9.]+)\)")
    assert text.cfg.task.held_docs == round(share * 200)
    for name, field in (("d_model", "d_model"), ("layers", "n_layers"), ("heads", "n_heads")):
        assert numbers(name, r"\(default (\d+);")[0] == getattr(mqar.cfg.preset, field), name
    cpu_steps, gpu_minutes = numbers("steps", r"Default: (\d+) on a CPU; on a GPU the steps that fit (\d+) minutes")
    assert mqar.cfg.steps == cpu_steps and default_budget("cuda", False, False) == 60 * gpu_minutes
    assert "Default: --seq / 4" in help_of("window")
    assert {s.window for s in mqar.specs if s.window} == {mqar.cfg.task.seq_len // 4}
    assert "Default: bf16 on a GPU, fp32 on a CPU" in help_of("dtype")
    assert (_dtype(None, "cuda"), _dtype(None, "cpu"), mqar.cfg.dtype) == ("bf16", "fp32", "fp32")
    assert "Default: mha" in help_of("baseline") and mqar.baseline == "mha"
    assert "Default: results/quality-<device>-<time>.csv" in help_of("out")
    assert re.fullmatch(r"results/quality-cpu-.+-\d{8}-\d{6}\.csv", str(mqar.path))
    from sqabench.quality.summary import MQAR_MARGIN, paper_gap

    gap, mqar_margin = numbers("margin", r"default (\d+\.\d+)%.*default (\d+\.\d+)\)")
    assert (round(100 * paper_gap()[0], 1), MQAR_MARGIN) == (float(gap), float(mqar_margin))


def test_no_option_defaults_to_none_without_its_stated_default_checked():
    checked = {"seq", "batch", "eval_every", "eval_tokens", "vocab", "pairs", "tokenizer", "held_out", "d_model",
               "layers", "heads", "steps", "window", "dtype", "baseline", "out", "margin"}  # fmt: skip
    left = {
        "data",
        "preset",
        "tokens",
        "budget",
        "pilot",
        "also_against",
        "confirm",
        "shard",
        "gpus",
    }  # no default: absent unless given
    none = {f.name for f in dataclasses.fields(QualityOptions) if f.default is None}
    assert none == checked | left, f"state and check the default of: {sorted(none - checked - left)}"


def test_seq_takes_a_size_as_run_does_and_reproduce_says_what_its_seq_is():
    from typer.testing import CliRunner

    from sqabench.cli import app

    plan, _ = resolve_quality(QualityOptions(device="cpu", dry_run=True, seq="0.25k", vocab=300))
    assert plan.cfg.task.seq_len == 256  # 250, the power of two within 3%: the rule of run's --seq

    def helped(target: str) -> str:
        return " ".join(CliRunner().invoke(app, ["reproduce", target, "--help"], env={"COLUMNS": "200"}).output.split())

    assert "paper: the lengths" in helped("paper") and "quality: the context, one length" in helped("quality")


def test_the_data_help_names_every_format_the_reader_takes(tmp_path):
    """Each form --data's help names reads (one document each way); and the help names the compressed and
    tokenized forms, which a user would otherwise not guess."""
    import gzip
    import json

    from sqabench.quality.corpus import read_documents

    said = help_of("data")
    for form in (".txt", "folder", ".jsonl", ".parquet", ".txt.gz", ".jsonl.gz", ".tokens"):
        assert form in said, form
    docs = [f"document {i} about a cat." for i in range(4)]
    (tmp_path / "a.txt").write_text("\n\n".join(docs))
    (tmp_path / "folder").mkdir()
    for i, doc in enumerate(docs):
        (tmp_path / "folder" / f"{i}.txt").write_text(doc)
    lines = "".join(json.dumps({"text": doc}) + "\n" for doc in docs)
    (tmp_path / "a.jsonl").write_text(lines)
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress("\n\n".join(docs).encode()))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    for name in ("a.txt", "folder", "a.jsonl", "b.txt.gz", "b.jsonl.gz"):
        assert read_documents(tmp_path / name) == docs, name


@pytest.mark.parametrize("args, said", [
    (["--margin", "10"], "did you mean 10%?"), (["--margin", "nan"], "'nan' is not a limit"),
    (["--margin", "0"], "must lie above 0 and below 1"), (["--also-against", "foo"], "not among the variants"),
    (["--confirm", "/nonexistent.csv"], "no such file"), (["--gpus", "0"], "--gpus 0 must be >= 1"),
    (["--shard", "5/4"], "1 <= K <= N"),
])  # fmt: skip
def test_the_statistics_options_refuse_bad_input_in_one_line(args, said):
    from texts import QUICK, runner

    from sqabench.cli import app

    result = runner.invoke(app, [*QUICK, "--dry-run", *args])
    assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    if args[0] in ("--margin", "--also-against", "--confirm"):
        from pathlib import Path

        mqar = Path(__file__).parent.parent / "results" / "cpu-amd-epyc-quality-mqar.csv"
        shown = runner.invoke(app, ["report", str(mqar), *args])
        assert shown.exit_code == 2 and said in shown.output and "Traceback" not in shown.output
