"""sqabench quality's runs that stop and go on: checkpoints, --resume, Ctrl-C, a run out of memory, a sticky
CUDA error, a second run on one file."""

import csv
import os

import pytest
import torch
from texts import QUICK, TEXT_MODEL, quick, runner

from sqabench.cli import app
from sqabench.errors import ConfigError
from sqabench.quality.tasks import text_task
from sqabench.quality.train import Checkpoint, TrainConfig, train
from sqabench.variants import get_variant


def test_a_run_resumed_from_its_checkpoint_ends_bit_for_bit_as_one_that_never_stopped(corpus, tmp_path):
    task = text_task(corpus, "bytes", None, 32, 0.1, False)
    cfg = TrainConfig(task, TEXT_MODEL, steps=8, batch=4, eval_every=4)
    spec = get_variant("sqa", 4)
    whole = train(cfg, spec, 1)
    checkpoint = Checkpoint(tmp_path / "c.pt", cfg.key(spec, 1), every_s=0.0)

    def stop_at_5(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, spec, 1, on_step=stop_at_5, checkpoint=checkpoint)
    assert torch.load(checkpoint.path, weights_only=False)["step"] == 5
    resumed = train(cfg, spec, 1, checkpoint=checkpoint)
    assert [r["train_loss"] for r in resumed.curve] == [r["train_loss"] for r in whole.curve]
    assert resumed.metrics == whole.metrics
    other = Checkpoint(checkpoint.path, TrainConfig(task, TEXT_MODEL, steps=9, batch=4, eval_every=4).key(spec, 1))
    with pytest.raises(ConfigError, match="another configuration .*steps"):
        train(cfg, spec, 1, checkpoint=other)


def test_resume_keeps_finished_runs_and_refuses_other_options(corpus, tmp_path, monkeypatch):
    out = tmp_path / "q.csv"
    first = runner.invoke(app, [*QUICK, "--data", str(corpus), "--seeds", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output
    import sqabench.quality.train as quality

    trained = []
    real = quality.train
    monkeypatch.setattr(quality, "train", lambda cfg, spec, seed, **kw: trained.append((spec.name, seed)) or
                        real(cfg, spec, seed, **kw))  # fmt: skip
    again = runner.invoke(app, [*QUICK, "--data", str(corpus), "--seeds", "2", "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert trained == [("mha", 1), ("sqa", 1)]  # seed 0's runs were kept, not trained again
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["seed"]) for r in rows] == [("mha", "0"), ("sqa", "0"), ("mha", "1"), ("sqa", "1")]
    curves = list(csv.DictReader(out.with_name("q-curves.csv").open()))
    assert len(curves) == 8 and len({c["run_id"] for c in curves}) == 1
    before = out.read_text()
    other = runner.invoke(app, [*quick("--steps", "6"), "--data", str(corpus), "--seeds", "2", "--out", str(out),
                                "--resume"])  # fmt: skip
    assert other.exit_code == 2 and "trained with other options" in " ".join(other.output.split())
    assert out.read_text() == before


def test_ctrl_c_keeps_the_finished_runs_and_the_checkpoint_and_says_how_to_go_on(corpus, tmp_path, monkeypatch):
    import sqabench.quality.train as quality

    out = tmp_path / "q.csv"
    real, calls = quality.train, []

    def second_run_interrupted(cfg, spec, seed, on_step=lambda step: None, **kw):
        calls.append(spec.name)

        def stop(step):
            on_step(step)
            if len(calls) == 2 and step == 3:
                raise KeyboardInterrupt

        return real(cfg, spec, seed, on_step=stop, **kw)

    monkeypatch.setattr(quality, "train", second_run_interrupted)
    args = [*quick("--checkpoint-every", "0.000001"), "--data", str(corpus), "--seeds", "1", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    text = " ".join(result.output.split())
    assert "interrupted: 1 finished run kept" in text and f"--resume --out {out}" in text
    assert [r["variant"] for r in csv.DictReader(out.open())] == ["mha"]
    (checkpoint,) = (tmp_path / "q-checkpoints").iterdir()
    assert checkpoint.name == "sqa-seed0.pt" and torch.load(checkpoint, weights_only=False)["step"] == 3
    monkeypatch.setattr(quality, "train", real)
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["variant"] for r in csv.DictReader(out.open())] == ["mha", "sqa"]
    assert not (tmp_path / "q-checkpoints").exists()  # removed once the rows are written
    steps = [int(c["step"]) for c in csv.DictReader(out.with_name("q-curves.csv").open()) if c["variant"] == "sqa"]
    assert steps == [2, 4]  # the checkpoint's point once, then the rest: no point twice


def test_a_run_out_of_memory_is_a_row_of_its_own_and_the_next_goes_on(tmp_path, monkeypatch):
    import sqabench.quality.train as quality

    real = quality.train

    def short_of_memory(cfg, spec, seed, **kw):
        if spec.name == "mha":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(cfg, spec, seed, **kw)

    monkeypatch.setattr(quality, "train", short_of_memory)
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,sqa,gqa"), "--seeds", "2", "--out", str(out)],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["status"]) for r in rows] == [("mha", "oom"), ("sqa", "ok"), ("gqa", "ok")] * 2
    assert "out of memory" in rows[0]["error"] and rows[0]["val_loss"] == ""
    assert "mha seed 0: oom" in " ".join(result.output.split())
    assert "no baseline run to pair with" in result.output  # sqa has no mha run to be paired with
    # --resume: a dry run rewrites nothing, even where a real resume would (a curve point of a run that did
    # not finish, the oom rows), and a variant its probe cannot time is refused in one line; a resume that
    # would not train mha refuses its rows; a real one trains the oom runs again and leaves no failed row
    curves = out.with_name("q-curves.csv")
    with curves.open("a") as handle:
        handle.write(curves.read_text().splitlines()[1].replace(",sqa,0,", ",mha,0,") + "\n")
    before = (out.read_bytes(), curves.read_bytes())
    args = [*quick("--variants", "mha,sqa,gqa"), "--seeds", "2", "--out", str(out), "--resume"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 2 and (out.read_bytes(), curves.read_bytes()) == before, dry.output
    assert "the probe of mha failed (oom: CUDA out of memory" in " ".join(dry.output.split())
    assert isinstance(dry.exception, SystemExit) and "Traceback" not in dry.output  # one line, no traceback
    monkeypatch.setattr(quality, "train", lambda cfg, spec, seed, **kw: real(cfg, spec, seed, **kw))
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0 and (out.read_bytes(), curves.read_bytes()) == before, dry.output
    narrow = runner.invoke(app, [*quick("--variants", "sqa,gqa"), "--seeds", "2", "--baseline", "sqa", "--out",
                                 str(out), "--resume"])  # fmt: skip
    assert narrow.exit_code == 2 and "holds mha seed 0, which these options do not train" in narrow.output
    assert (out.read_bytes(), curves.read_bytes()) == before
    monkeypatch.setattr(quality, "train", real)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    rows = list(csv.DictReader(out.open()))
    assert sorted((r["variant"], r["seed"], r["status"]) for r in rows) == sorted(
        (v, s, "ok") for v in ("mha", "sqa", "gqa") for s in ("0", "1")
    )


def test_a_refused_resume_changes_no_file(corpus, tmp_path):
    """An unfinished run's curve points are dropped by --resume only once every row and checkpoint is accepted:
    a checkpoint of a run these options do not train refuses the resume and leaves the curves as they were."""
    out = tmp_path / "q.csv"
    assert runner.invoke(app, [*QUICK, "--data", str(corpus), "--seeds", "1", "--out", str(out)]).exit_code == 0
    curves = out.with_name("q-curves.csv")
    with curves.open("a") as handle:  # a point of a run that did not finish (seed 1's mha)
        handle.write(curves.read_text().splitlines()[1].replace(",mha,0,", ",mha,1,") + "\n")
    before = curves.read_text()
    (tmp_path / "q-checkpoints").mkdir()
    (tmp_path / "q-checkpoints" / "nope-seed0.pt").write_bytes(b"")
    result = runner.invoke(app, [*QUICK, "--data", str(corpus), "--seeds", "2", "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "do not train" in result.output, result.output
    assert curves.read_text() == before


def test_a_second_run_on_one_file_is_refused_before_it_touches_anything(tmp_path):
    """Two `quality --resume` on one --out: while the first holds the file's lock, the second exits 2, naming
    it, and no file changes (a resume would otherwise rewrite the curves)."""
    from sqabench.files import RunLock

    out = tmp_path / "q.csv"
    first = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with RunLock(out):  # the first run, still writing
        second = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "2", "--out", str(out), "--resume"])
    assert second.exit_code == 2 and "is being written by another sqabench run" in second.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_sticky_cuda_error_stops_the_runs_and_says_how_to_continue(tmp_path, monkeypatch):
    import sqabench.quality.train as quality

    real, trained = quality.train, []

    def broken_gpu(cfg, spec, seed, **kw):
        trained.append((spec.name, seed))
        if spec.name == "sqa":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(cfg, spec, seed, **kw)

    monkeypatch.setattr(quality, "train", broken_gpu)
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,sqa,gqa"), "--seeds", "2", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert trained == [("mha", 0), ("sqa", 0)]  # gqa and seed 1 never start on a GPU left unusable
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["status"]) for r in rows] == [("mha", "ok"), ("sqa", "error")]
    text = " ".join(result.output.split())
    assert "a sticky CUDA error fails every later run" in text and f"--resume --out {out}" in text
    assert "Traceback" not in result.output and not (tmp_path / "q.csv.lock").exists()


def test_resume_on_a_missing_file_starts_it_as_run_does(tmp_path):
    """One rule for --resume on a file that does not exist yet, in `run` and `quality`: start it afresh, saying
    so (a CI loop that always passes --resume works from its first call)."""
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "1", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert f"--resume: {out} does not exist yet; starting it afresh" in " ".join(result.output.split())
    assert [r["variant"] for r in csv.DictReader(out.open())] == ["mha", "sqa"]


def test_resume_after_the_curves_were_deleted_says_which_runs_lost_them(corpus, tmp_path):
    out = tmp_path / "q.csv"
    first = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output
    (tmp_path / "q-curves.csv").unlink()
    again = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "2", "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert "holds no curve of mha seed 0, sqa seed 0" in " ".join(again.output.split())


@pytest.mark.slow
def test_sigterm_ends_a_quality_run_as_ctrl_c_does(corpus, tmp_path):
    """A CI job's timeout sends SIGTERM: the process says what it kept and how to go on, and lets go of the lock
    (it once printed nothing and left the lock). Sent once the first evaluation is on disk: no clock involved."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "q.csv"
    args = [*quick("--steps", "400", "--eval-every", "2"), "--data", str(corpus), "--seeds", "1", "--out", str(out)]
    child = subprocess.Popen([sys.executable, "-m", "sqabench", *args], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    curves = tmp_path / "q-curves.csv"
    deadline = time.monotonic() + 240  # a bound on a hung child, never a measure of speed
    while not (curves.exists() and len(curves.read_text().splitlines()) >= 2):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    text = " ".join(err.split())
    assert "interrupted:" in text and f"--resume --out {out}" in text
    assert not list(tmp_path.glob("*.lock")), list(tmp_path.iterdir())


def test_a_run_that_diverges_is_a_row_of_its_own_and_the_summary_goes_on(tmp_path, monkeypatch):
    """A NaN held-out loss once crashed the end-of-run summary (statistics.stdev on NaN): the run is now
    "diverged", its metrics empty, the error naming what was not finite, and the tables print the rest."""
    import dataclasses

    import sqabench.quality.train as quality

    real = quality.train

    def diverging(cfg, spec, seed, **kw):
        result = real(cfg, spec, seed, **kw)
        if spec.name == "sqa" and seed == 1:
            return dataclasses.replace(result, metrics={**result.metrics, "val_loss": float("nan")})
        return result

    monkeypatch.setattr(quality, "train", diverging)
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick(), "--seeds", "2", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {(r["variant"], r["seed"]): r for r in csv.DictReader(out.open())}
    diverged = rows[("sqa", "1")]
    assert diverged["status"] == "diverged" and diverged["val_loss"] == "" and "val_loss=nan" in diverged["error"]
    assert {r["status"] for k, r in rows.items() if k != ("sqa", "1")} == {"ok"}
    text = " ".join(result.output.split())
    assert "sqa seed 1: diverged" in text and "diff vs mha" in text  # the summary printed, the run named
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0  # the file reads back


def test_two_finished_rows_of_one_variant_and_seed_are_refused_naming_them():
    from sqabench.quality.summary import finished_runs

    rows = [{"variant": "sqa", "seed": "0", "status": "ok", "run_id": "a"},
            {"variant": "sqa", "seed": "0", "status": "ok", "run_id": "b"}]  # fmt: skip
    with pytest.raises(ConfigError, match=r"sqa seed 0 has two finished rows \(runs a, b\)"):
        finished_runs(rows)
