"""The setup tests repeat, written once: a sweep's cells (``cells``), a results file's rows (``rows_of``), and a
command run as a user types it (``invoke``). Each builds what the real code builds, from the real functions."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from conftest import TINY
from sqabench.cli import app
from sqabench.presets import Preset
from sqabench.speed.cells import Cell, Settings, plan
from sqabench.variants import parse_variants

WIDE = {"COLUMNS": "250"}  # a terminal wide enough that no table is squeezed
CPU_SETTINGS = dict(dtype="fp32", mode="fwd", causal=False, kernel="auto", device="cpu", warmup=0, repeats=2)


def cells(names: str = "mha,sqa,xsqa", lengths=(64,), preset: Preset = TINY, *, tokens: int = 64,
          batch: int | None = None, window: int | None = None, **settings) -> list[Cell]:  # fmt: skip
    """``plan``'s cells of ``names`` x ``lengths`` on ``preset``: a brief fp32 forward on the CPU unless
    ``settings`` (any ``Settings`` field) say otherwise."""
    specs = parse_variants(names) if window is None else parse_variants(names, window=window)
    return plan(specs, preset, lengths, Settings(**{**CPU_SETTINGS, **settings}), tokens=tokens, batch=batch)


def rows_of(path: Path) -> list[dict]:
    """The rows of a CSV as the csv module reads them: every value a string, as written."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def invoke(args: list[str], env: dict | None = None, **kwargs):
    """``sqabench ARGS`` through Typer's runner, on a wide terminal."""
    return CliRunner().invoke(app, [str(arg) for arg in args], env={**WIDE, **(env or {})}, **kwargs)


def load_benchmark(name: str):
    """A script of ``benchmarks/`` as a module (they are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
