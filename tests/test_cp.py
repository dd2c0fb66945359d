"""Context parallelism on the CPU: two gloo ranks started by torch.distributed.run."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sqabench.cli import app
from sqabench.flops import split_cost, step_cost, visible_pairs_rows
from sqabench.presets import PRESETS
from sqabench.speed.split import combine
from sqabench.variants import get_variant

HERE = Path(__file__).parent
runner = CliRunner()


def run(args, timeout=900):
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "COLUMNS": "200"}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE)


@pytest.mark.slow
def test_the_split_model_equals_one_process():
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    result = run([*launcher, str(HERE / "cp_worker.py")])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the two ranks share one pipe: their lines may interleave, each stays whole
    checks = re.findall(r"rank [01] [\w-]+ causal=(?:True|False) rel_err=\S+?e-\d\d", result.stdout)
    assert len(checks) == 4  # 2 ranks x (sqa causal, swa-xsqa encoder)


@pytest.mark.slow
def test_a_split_sweep_writes_one_row_per_cell_from_rank_0_and_ctrl_c_keeps_them(tmp_path):
    """A split sweep of two variants at 256 tokens (shapes cp_worker.py compiled: a warm cache), then 4k,
    interrupted as a terminal's Ctrl-C does (SIGINT to the whole foreground group: sqabench, torch's launcher
    and the ranks) once the 256 cells are written: rank 0 alone writes and prints (each line once), every row
    holds the split's own costs, and the interruption exits 130 with no launcher traceback, the finished rows
    kept and the line that says how to resume."""
    import signal

    out = tmp_path / "cp.csv"
    args = ["run", "--cp", "2", "--device", "cpu", "--seq", "256,4k", "--batch", "1", "--variants", "sqa,swa-xsqa",
            "--warmup", "0", "--repeats", "2", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "COLUMNS": "200"}
    child = subprocess.Popen([sys.executable, "-m", "sqabench", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env,
                             cwd=HERE)  # fmt: skip
    seen = []
    for line in child.stdout:
        seen.append(line)
        if line.startswith("swa-xsqa 256 x1:"):  # the last 256 cell; 4k's come next (a compile each: seconds)
            break
    os.killpg(child.pid, signal.SIGINT)
    text = "".join(seen) + child.communicate(timeout=180)[0]
    assert child.returncode == 130, text
    assert "Traceback" not in text and "SignalException" not in text and "ChildFailedError" not in text, text
    assert f"interrupted: 2 finished rows kept in {out}; continue with --resume --out {out}" in text
    assert "sqabench run --cp 2: starting 2 ranks" in text
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines if " 256 x1: " in line] == ["sqa 256 x1", "swa-xsqa 256 x1"]
    assert not (tmp_path / "cp.csv.lock").exists()
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    cells = [(r["variant"], r["seq_len"], r["status"]) for r in rows]
    assert cells == [("sqa", "256", "ok"), ("swa-xsqa", "256", "ok")]
    for row in rows:
        assert (row["world_size"], row["cp_backend"], row["cp_path"], row["local_len"]) == ("2", "gloo", "flex", "128")
        assert float(row["verify_rel_err"]) < 1e-4 and len(row["samples_ms"].split(";")) == 2
        spec, p = get_variant(row["variant"]), PRESETS["paper"]
        # written out: rank 1 of 2 holds tokens 128..255 and sees the keys its mask lets through
        q, kv = spec.n_q_heads * p.head_dim, spec.n_kv_heads * p.head_dim
        matmuls = p.n_layers * 2 * 128 * (p.d_model * (2 * q + 2 * kv) + 3 * p.d_model * p.d_ff)
        matmuls += 2 * 128 * p.d_model * p.vocab_size
        pairs = max(sum(1 for i in range(r * 128, (r + 1) * 128) for j in range(256)
                        if spec.window is None or abs(i - j) <= spec.window) for r in range(2))  # fmt: skip
        attention = p.n_layers * 4 * spec.n_q_heads * p.head_dim * pairs
        received = p.n_layers * 2 * kv * 128 * 4  # K and V of the other rank's 128 tokens, fp32
        assert (int(row["rank_flops"]), int(row["comm_bytes"])) == (matmuls + attention, received)
        assert float(row["ceiling_link_bytes_per_s"]) > 0 and row["bound"] in ("matmul", "exp", "memory", "comm")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cp", "0"], "--cp 0 must be >= 1"),
        (["--cp", "2", "--seq", "300"], "length 300 is not a multiple of 256 (2 ranks x flex's 128-token block)"),
        (["--cp", "2", "--mode", "train"], "--cp runs --mode fwd only"),
        (["--cp", "2", "--kernel", "sdpa"], "--kernel auto or flex, not sdpa"),
        (["--cp", "2", "--scope", "block"], "--scope block does not apply"),
    ],
)
def test_cp_bad_input(tmp_path, args, message):
    out = tmp_path / "r.csv"
    argv = ["run", "--device", "cpu", *([] if "--seq" in args else ["--seq", "256"]), *args, "--out", str(out)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and message in result.output and not out.exists()


def test_more_ranks_than_gpus(monkeypatch):
    from sqabench.errors import ConfigError
    from sqabench.speed.cp import check_request

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="--cp 2 needs 2 GPUs on one node; this one has 1"):
        check_request(2, [256], torch.device("cuda"), "fwd", "model", "auto")


def test_inside_a_torchrun_job_the_sizes_must_agree(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "4")
    result = runner.invoke(app, ["run", "--device", "cpu", "--cp", "2", "--seq", "1024", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--cp 2 but this torchrun job has WORLD_SIZE=4" in result.output


def test_per_rank_cost_of_a_causal_split():
    spec, p = get_variant("sqa"), PRESETS["paper"]
    whole = step_cost(spec, p, 1, 1024, True, "fwd", "bf16")
    rank, comm = split_cost(spec, p, 1, 1024, True, "bf16", 4)
    # the last share sees the most keys; the shares' pairs add up to the whole
    assert sum(visible_pairs_rows(1024, r * 256, (r + 1) * 256, None, True) for r in range(4)) == 1024 * 1025 // 2
    assert rank.attention_flops == p.n_layers * 4 * 8 * 16 * visible_pairs_rows(1024, 768, 1024, None, True)
    assert rank.attention_flops > whole.attention_flops / 4
    assert comm == p.n_layers * 2 * 4 * 16 * 768 * 2  # K and V of the other three shares, bf16


def test_the_worst_rank_decides_the_row():
    ok = {"status": "ok", "error": "", "kernel": "cp-flex", "verify": 1e-7, "compile_ms": 5.0,
          "samples": [2.0, 3.0], "peak": [100, 400]}  # fmt: skip
    slow = {**ok, "samples": [4.0, 1.0], "compile_ms": 9.0, "verify": 2e-7, "peak": [300, 200]}
    outcome = combine([ok, slow])
    assert outcome.status == "ok" and outcome.timing.samples_ms == (4.0, 3.0) and outcome.timing.compile_ms == 9.0
    assert outcome.verify_rel_err == 2e-7
    assert outcome.peak == (300, 400)  # each the largest over the ranks: rank 1's allocated, rank 0's reserved
    cpu = {**ok, "peak": [None, None]}
    assert combine([cpu, {**cpu}]).peak == (None, None)
    oom = {"status": "oom", "error": "CUDA out of memory", "samples": None}
    timeout = {"status": "error", "error": "RuntimeError: timed out", "samples": None}
    failed = combine([timeout, oom])
    assert (failed.status, failed.error, failed.fatal) == ("oom", "rank 1: CUDA out of memory", True)


def test_a_rank_takes_its_own_gpu_before_touching_cuda(monkeypatch):
    """Under torchrun each rank sets its device from LOCAL_RANK first: otherwise every rank validates its
    dtype and reads the environment on GPU 0 (N contexts there)."""
    from sqabench.device import resolve_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1) and chosen == [1]
    monkeypatch.setenv("WORLD_SIZE", "1")  # not a job: the current device, untouched
    assert resolve_device("auto") == torch.device("cuda") and chosen == [1]


def test_each_rank_takes_its_share_and_its_positions():
    """What a real run's step uses (split.py): Group.local slices the tokens, Group.positions rotates them."""
    from sqabench.speed.cp import Group

    tokens = torch.arange(2 * 512).view(2, 512)
    shares = [Group(rank, 4, "gloo", torch.device("cpu"), None, None) for rank in range(4)]
    assert [g.shard(512) for g in shares] == [(0, 128), (128, 256), (256, 384), (384, 512)]
    for g in shares:
        start = g.rank * 128
        assert torch.equal(g.local(tokens, dim=1), tokens[:, start : start + 128])
        assert g.positions(512).tolist() == list(range(start, start + 128))


def test_the_link_rate_is_what_each_rank_receives_in_its_fastest_all_gather(monkeypatch):
    """(world - 1) shares of 16 MiB received per all-gather, at the fastest repeat: load only slows one."""
    import types

    from sqabench.speed import cp

    monkeypatch.setattr(cp.dist, "all_gather", lambda gathered, local: None)
    monkeypatch.setattr(cp.dist, "barrier", lambda: None)
    monkeypatch.setattr(cp, "time_repeats", lambda step, device, repeats, before_each=None: (5.0, 1.0, 3.0))
    group = types.SimpleNamespace(world=4, device=torch.device("cpu"))
    assert cp.link_rate(group) == pytest.approx(3 * 16 * 2**20 / 1e-3)


def test_a_ctrl_c_that_python_drops_in_a_finalizer_still_stops_the_rank(monkeypatch):
    """A SIGINT landing in a finalizer (a compiler's weakref callback) is dropped by Python with a traceback on
    stderr, and the rank would go on: the rank's handler remembers it, that traceback is not printed, and the
    next phase of a cell raises it again."""
    import signal

    import sqabench.speed.cp as cp

    monkeypatch.setenv(cp.LAUNCHED, "1")
    printed = []  # what Python's own hook would print on stderr
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: printed.append(type(unraisable.exc_value)))
    monkeypatch.setattr(cp, "_interrupted", False)
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert cp.interruptible()
        cp.stop_if_interrupted()  # nothing heard yet: nothing raised

        class Finalized:
            def __del__(self):
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # the handler, as a signal runs it

        class Broken:
            def __del__(self):
                raise ValueError("a finalizer's own bug")

        Finalized()  # dropped at once: its __del__ raises inside a finalizer
        Broken()
        assert printed == [ValueError]  # the interrupt is not printed; anything else still is
        with pytest.raises(KeyboardInterrupt):
            cp.stop_if_interrupted()
    finally:
        signal.signal(signal.SIGINT, previous)
