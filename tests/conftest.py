import pytest
import torch

from sqabench.kernels import compile_settings
from sqabench.presets import Preset

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


@pytest.fixture(scope="session", autouse=True)
def _ceilings_cache(tmp_path_factory):
    """One cache of measured ceilings for the whole session, never the user's own."""
    import os

    os.environ["SQABENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("sqabench-cache"))
    yield
