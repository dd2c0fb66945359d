"""The house: a shared base below two wings, imports pointing down only (function-level imports included), the
wings apart, no circle.

Three rooms: the shared base (layers base, cost, model, measure: the flat modules of ``sqabench/``), the speed
wing (``sqabench/speed/``) and the quality wing (``sqabench/quality/``). The shared layers import neither wing;
each wing imports downwards within itself and the shared layers, never the other wing. Only the command line
sees both. The README's Layout lists the same.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "sqabench"
SHARED = {
    "base": ["errors", "version", "variants", "presets", "dtypes", "units", "options", "files", "shipped", "drawing"],
    "cost": ["flops"],
    "model": ["kernels", "attention", "encoder", "decode"],
    "measure": ["device", "settle", "environment", "verify", "failures"],
}
SPEED = {
    "speed base": ["speed", "speed.options", "speed.cells", "speed.peaks"],
    "speed measuring": ["speed.energy", "speed.ceilings", "speed.profile", "speed.measure", "speed.cp", "speed.split",
                        "speed.doctor"],
    "speed results": ["speed.results", "speed.report"],
    "speed run": ["speed.sweep", "speed.estimate", "speed.request", "speed.runner", "speed.display"],
    "speed figures and gate": ["speed.plots", "speed.check"],
    "speed protocols": ["speed.reproduce"],
}  # fmt: skip
QUALITY = {
    "quality base": ["quality", "quality.options", "quality.stats", "quality.rows"],
    "quality data": ["quality.mqar", "quality.corpus", "quality.tokenizer", "quality.tokens", "quality.tasks"],
    "quality training": ["quality.train"],
    "quality plan": ["quality.plan", "quality.resume", "quality.budget", "quality.summary", "quality.confirm"],
    "quality output": ["quality.tables", "quality.progress", "quality.figures", "quality.report"],
    "quality flow": ["quality.flow", "quality.reproduce", "quality.ranks"],
}
TOP = {"command line": ["cli", "__main__", "__init__"]}
# Lowest first. The shared layers take ranks 0..3; each wing counts up from there on its own.
RANK = {m: i for i, ms in enumerate(SHARED.values()) for m in ms}
RANK |= {m: len(SHARED) + i for i, ms in enumerate(SPEED.values()) for m in ms}
RANK |= {m: len(SHARED) + i for i, ms in enumerate(QUALITY.values()) for m in ms}
RANK |= {m: 100 for ms in TOP.values() for m in ms}
WING = {m: "speed" for ms in SPEED.values() for m in ms} | {m: "quality" for ms in QUALITY.values() for m in ms}
LAYER = {m: name for layers in (SHARED, SPEED, QUALITY, TOP) for name, ms in layers.items() for m in ms}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def imports_of(source: str) -> set[str]:
    """The sqabench modules ``source`` imports, anywhere in it (``quality.plan`` for sqabench.quality.plan)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqabench":
            module = node.module.removeprefix("sqabench").removeprefix(".")
            for alias in node.names:  # `from sqabench.quality import tokenizer` names a module
                candidate = f"{module}.{alias.name}" if module else alias.name
                found.add(candidate if candidate in RANK else module)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("sqabench.") for a in node.names if a.name.startswith("sqabench."))
    return found - {""}


MODULES = {module_name(path): imports_of(path.read_text()) for path in PACKAGE.rglob("*.py")}


def problems(module: str, imported: set[str]) -> list[str]:
    """What breaks the house in ``module`` importing ``imported``: an import up a layer, or across the wings."""
    found = []
    for name in sorted(imported & set(RANK)):
        if WING.get(name) and WING.get(module) and WING[name] != WING[module]:
            found.append(f"{module} ({WING[module]} wing) imports {name} ({WING[name]} wing)")
        elif RANK[name] > RANK[module]:
            found.append(f"{module} ({LAYER[module]}) imports {name} ({LAYER[name]}), a higher layer")
    return found


def test_every_module_has_a_layer():
    assert set(MODULES) <= set(RANK), f"modules without a layer: {sorted(set(MODULES) - set(RANK))}"
    assert set(RANK) - {"__main__", "__init__"} <= set(MODULES), "a layer names a module that is gone"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_and_the_wings_stay_apart(module):
    assert not problems(module, MODULES[module])


@pytest.mark.parametrize(
    "module, source, says",
    [("quality.flow", "def f():\n    from sqabench.speed.runner import execute\n",
      "quality wing) imports speed.runner (speed"),
     ("quality.plan", "from sqabench.speed.request import parse_duration\n", "imports speed.request (speed wing)"),
     ("quality.summary", "import sqabench.speed.sweep\n", "imports speed.sweep (speed wing)"),
     ("quality.flow", "from sqabench.speed import cells\n", "imports speed.cells (speed wing)"),
     ("speed.runner", "from sqabench.quality import flow\n", "imports quality.flow (quality wing)"),
     ("speed.measure", "from sqabench.quality.train import train\n", "imports quality.train (quality wing)"),
     ("failures", "from sqabench.speed.cells import Outcome\n", "imports speed.cells (speed base), a higher"),
     ("variants", "def f():\n    from sqabench.speed.results import COLUMNS\n",
      "imports speed.results (speed results), a higher"),
     ("speed.cells", "from sqabench.speed.results import COLUMNS\n", "imports speed.results (speed results), a hi"),
     ("quality.rows", "from sqabench.quality.flow import run_quality\n", "imports quality.flow (quality flow)")],
)  # fmt: skip
def test_a_deliberate_break_of_the_rule_is_caught(module, source, says):
    (found,) = problems(module, imports_of(source))
    assert says in found


def test_no_import_circle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for name in MODULES.get(module, ()):
            if state.get(name) == "open":
                raise AssertionError(f"import circle: {' -> '.join(path + [name])}")
            if name not in state:
                visit(name, path + [name])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_what_needs_no_torch_loads_none():
    """The cost model, the estimate, plots, the gate, the command line's import and the quality wing's rows,
    statistics and summary (what ``sqabench report`` reads) never load torch."""
    code = (
        "import sys, sqabench.speed.estimate, sqabench.speed.check, sqabench.speed.plots, sqabench.flops, sqabench.speed.cells, "
        "sqabench.units, sqabench.speed.peaks, sqabench.files, sqabench.shipped, sqabench.drawing, sqabench.cli, "
        "sqabench.quality.rows, sqabench.quality.summary, sqabench.quality.tables, sqabench.quality.report, "
        "sqabench.speed.report; print('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_no_assert_holds_its_condition_in_its_message():
    """``assert a, b and c`` checks a alone: b and c are its message. No test may be written so."""
    found = []
    for path in Path(__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assert) and isinstance(node.msg, (ast.BoolOp, ast.Compare, ast.UnaryOp)):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:100]}")
    assert not found, found
