"""The house: modules in layers, imports pointing down only (function-level imports included), no circle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "sqabench"
# Lowest first; a module may import from its own layer or any lower one. The README's Layout lists the same.
LAYERS = {
    "base": ["errors", "version", "variants", "presets", "dtypes", "lengths", "options", "stats"],
    "cost": ["flops", "cells", "peaks"],
    "model": ["kernels", "attention", "encoder", "decode", "mqar", "tokenizer", "corpus", "tasks"],
    "measure": ["device", "environment", "energy", "verify", "failures", "ceilings", "measure", "profile", "cp",
                "split", "doctor", "training"],  # fmt: skip
    "results": ["results", "report"],
    "run": ["sweep", "estimate", "request", "runner", "display", "reproduce", "quality"],
    "figures and gate": ["plots", "quality_plots", "check"],
    "command line": ["cli", "__main__", "__init__"],
}
RANK = {module: i for i, modules in enumerate(LAYERS.values()) for module in modules}


def imports_of(path: Path) -> set[str]:
    """The sqabench modules ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sqabench"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from sqabench import x
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("sqabench."))
    return found


MODULES = {path.stem: imports_of(path) for path in PACKAGE.glob("*.py")}


def test_every_module_has_a_layer():
    assert set(MODULES) <= set(RANK), f"modules without a layer: {sorted(set(MODULES) - set(RANK))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    upward = [name for name in MODULES[module] if name in RANK and RANK[name] > RANK[module]]
    assert not upward, f"{module} ({list(LAYERS)[RANK[module]]}) imports higher layers: {upward}"


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


def test_the_cost_model_estimate_plots_and_check_load_no_torch():
    code = (
        "import sys, sqabench.estimate, sqabench.check, sqabench.plots, sqabench.flops, sqabench.cells, "
        "sqabench.lengths, sqabench.peaks, sqabench.cli; print('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
