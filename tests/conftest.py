import os
from importlib.metadata import version
from pathlib import Path

# Before torch loads (here and in every process a test starts, which inherits this environment): one intra-op
# thread, so that a test never spins threads against another process on a shared 2-core machine; and a
# compile cache the tests own, kept between runs and keyed by the torch version, never the user's.
# A terminal's COLUMNS (exported by some shells, and by pytest-xdist's workers) would fix the width of the command
# line's consoles when sqabench is imported; a test that wants a width says so itself (CliRunner's env).
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
TEST_CACHE = Path(os.environ.get("SQABENCH_TEST_CACHE") or Path(__file__).parent.parent / ".test-cache")
COMPILE_CACHE = TEST_CACHE / f"torch-{version('torch')}"
os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(COMPILE_CACHE / "inductor")
os.environ["TRITON_CACHE_DIR"] = str(COMPILE_CACHE / "triton")

import pytest  # noqa: E402
import torch  # noqa: E402

from sqabench.kernels import compile_settings  # noqa: E402
from sqabench.presets import Preset  # noqa: E402

torch.set_num_threads(1)

# The paper's head geometry (H 16, d_head 16) in a model small enough for a CPU test.
TINY = Preset("tiny", d_model=256, n_layers=2, n_heads=16, d_ff=96, vocab_size=101)
SEQ = 200  # not a multiple of flex's 128-token blocks
WINDOW = 48  # crosses a block boundary


def no_gpu() -> bool:
    """What a CPU test sees of CUDA: nothing, even on a GPU machine."""
    return False


@pytest.fixture(autouse=True)
def _cpu_tests_stay_on_the_cpu(request, monkeypatch):
    """A test not marked ``gpu`` runs on the CPU wherever the suite runs: `sqabench run` without
    --device, ``auto`` devices and defaults resolve to the CPU, as in CI."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(torch.cuda, "is_available", no_gpu)
    yield


@pytest.fixture(scope="session", autouse=True)
def _compile_room():
    with compile_settings():
        yield


@pytest.fixture
def tiny() -> Preset:
    return TINY


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Norm-wise relative error, NaN-safe (NaN gives inf, which never passes)."""
    err = (out.double() - ref.double()).norm() / ref.double().norm()
    return float(err) if torch.isfinite(err) else float("inf")


# What every test but the ceilings' own reads as this machine's ceilings: about twice what one thread of a
# server CPU measures (so that a floor stays below a step and an efficiency below 1, while estimates stay
# those of a CPU), and known at once (measuring takes about 10 s, and a quick probe under load could ask
# for it again mid-test).
STUB_RATES = {"matmul_flops": 2e11, "exp_per_s": 1e10, "bytes_per_s": 8e10}


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory) -> Path:
    """sqabench's cache folder for the session. Its ``stubbed`` half is seeded with STUB_RATES for this CPU, so
    that the processes tests start (which no monkeypatch reaches) read them too, and never measure."""
    import json
    from dataclasses import asdict

    import sqabench.speed.ceilings as ceilings
    from sqabench.environment import environment
    from sqabench.flops import Rates

    root = tmp_path_factory.mktemp("sqabench-cache")
    env = environment(torch.device("cpu"))
    entry = {"rates": asdict(Rates(**STUB_RATES)), "methods": {}, "measured_at": ceilings._now(), "measurements": 1}
    (root / "stubbed").mkdir()
    seeded = {ceilings.cache_key(env, dtype): entry for dtype in ("fp32", "bf16", "fp16")}
    (root / "stubbed" / "ceilings.json").write_text(json.dumps(seeded))
    os.environ["SQABENCH_CACHE_DIR"] = str(root / "stubbed")  # session fixtures' processes too
    return root


@pytest.fixture(scope="session", autouse=True)
def _session_cache_first(_session_cache):
    """The session's cache folder is set before any other fixture of the session runs."""


@pytest.fixture(autouse=True)
def _ceilings(request, monkeypatch, _session_cache):
    """sqabench's cache folder is the session's, never the user's own. Ceilings are stubbed (STUB_RATES) in
    every test but those marked ``real_ceilings``, which measure them (in a folder of their own)."""
    if request.node.get_closest_marker("real_ceilings") is not None:
        monkeypatch.setenv("SQABENCH_CACHE_DIR", str(_session_cache / "measured"))
        yield
        return
    import sqabench.speed.ceilings as ceilings
    from sqabench.flops import Rates

    def measured(device, dtype, budget_s=1.0):
        methods = {limit: "stubbed by the tests' conftest" for limit in ("matmul", "exp", "memory")}
        return ceilings.Ceilings("", Rates(**STUB_RATES), methods, ceilings._now())

    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(_session_cache / "stubbed"))
    monkeypatch.setattr(ceilings, "measure_ceilings", measured)
    monkeypatch.setattr(ceilings, "probe", lambda device, dtype: Rates(**STUB_RATES))
    yield


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, _session_cache):
    """One real `sqabench run` on this CPU, shared by the tests that read a real run's file (its schema and
    values, the floor columns, the figures, the breakdown): the paper preset at 64 and 128 tokens, four
    variants (custom heads among them), 3 repeats, --breakdown. (path, what it printed)."""
    from typer.testing import CliRunner

    from sqabench.cli import app

    out = tmp_path_factory.mktemp("real-run") / "real.csv"
    args = ["run", "--device", "cpu", "--seq", "64,128", "--batch", "1", "--warmup", "0", "--repeats", "3",
            "--variants", "mha,sqa,xsqa,6/2", "--breakdown", "--out", str(out)]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", no_gpu)
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A small text corpus (``texts.documents``) as a .txt file, with a cache folder of the test's own."""
    from texts import documents

    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(documents()) + "\n")
    return path
