"""The data files shipped inside the package (``sqabench/data``): the paper's tables, GPU peaks, model
configs. One loader for all of them. No torch here.

A shipped CSV may start with ``#`` lines that say where its numbers come from; they are skipped.
"""

from __future__ import annotations

import csv
from importlib import resources


def shipped_text(name: str) -> str:
    """The text of ``sqabench/data/<name>``."""
    return resources.files("sqabench").joinpath(f"data/{name}").read_text()


def shipped_rows(name: str) -> list[dict[str, str]]:
    """The rows of the shipped CSV ``sqabench/data/<name>``, its ``#`` comment lines left out."""
    lines = [line for line in shipped_text(name).splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def shipped_names(folder: str, suffix: str) -> list[str]:
    """The names of the files ending in ``suffix`` under ``sqabench/data/<folder>``, sorted."""
    entries = resources.files("sqabench").joinpath(f"data/{folder}").iterdir()
    return sorted(entry.name for entry in entries if entry.name.endswith(suffix))
