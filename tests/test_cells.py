"""A cell's settings are declared once (``cells.Settings``): the cell key, the CSV's columns and a row's identity
come from the declaration, so a new setting reaches all of them by being declared."""

import dataclasses
import subprocess
import sys

import factories
from sqabench.speed.cells import Settings, key_columns, setting, setting_columns
from sqabench.speed.results import CELL_KEY, COLUMNS, SETTING_KEY


@dataclasses.dataclass(frozen=True)
class WithTf32(Settings):
    tf32: str = setting("off")  # a key setting
    spin: int = setting(0, key=False)  # a column, not a key
    hidden: bool = setting(False, key=False, column=None)  # neither


def test_the_key_and_the_columns_are_the_declared_settings():
    assert key_columns() == ("causal", "mode", "scope", "dtype", "device", "kernel_requested", "new_tokens",
                             "cuda_graphs", "world_size", "compile", "cache")  # fmt: skip
    assert set(setting_columns()) - set(key_columns()) == {
        "warmup",
        "timer",
        "repeats",
        "target_noise",
    }  # recorded, never paired on
    assert set(key_columns()) <= set(CELL_KEY) and set(key_columns()) <= set(SETTING_KEY)
    assert set(setting_columns()) <= set(COLUMNS)
    assert "breakdown" not in COLUMNS and "trace" not in COLUMNS


def test_a_new_setting_appears_in_the_key_and_in_a_rows_identity():
    assert key_columns(WithTf32)[-1] == "tf32" and "spin" not in key_columns(WithTf32)
    assert setting_columns(WithTf32)[-2:] == ("tf32", "spin") and "hidden" not in setting_columns(WithTf32)
    (cell,) = factories.cells("sqa", [64])
    cell = dataclasses.replace(cell, settings=WithTf32(**dataclasses.asdict(cell.settings), tf32="on", spin=3))
    identity = cell.identity()
    assert (identity["tf32"], identity["spin"]) == ("on", 3) and "hidden" not in identity
    assert identity["kernel_requested"] == "auto" and identity["new_tokens"] == ""  # spelled as the CSV does
    assert cell.but(tf32="off").identity()["tf32"] == "off"


def test_a_new_setting_appears_in_the_csv_a_run_writes(tmp_path):
    """Declared in a fresh process before the results schema is read: the file's header and its row carry it,
    and the cell key (resume, the gate) pairs on it."""
    code = f"""
import dataclasses, sqabench.speed.cells as cells
@dataclasses.dataclass(frozen=True)
class Settings(cells.Settings):
    tf32: str = cells.setting("off")
cells.Settings = Settings
from sqabench.speed.results import CELL_KEY, COLUMNS, key_of, read_rows, results_writer
from sqabench.speed.cells import plan
from sqabench.presets import PRESETS
from sqabench.variants import parse_variants
(cell,) = plan(parse_variants("sqa"), PRESETS["paper"], [64], Settings(tf32="on"), tokens=64)
row = {{**cell.identity(), "run_id": "run", "status": "skipped", "error": "not measured here"}}
results_writer(__import__("pathlib").Path({str(tmp_path / "r.csv")!r})).write(row)
(back,) = read_rows(__import__("pathlib").Path({str(tmp_path / "r.csv")!r}))
print("tf32" in COLUMNS, "tf32" in CELL_KEY, back["tf32"], key_of(back)[-1], "torch" in __import__("sys").modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True", "on", "on", "False"], done.stderr[-2000:]
