"""Published peaks of common GPUs (``data/gpu_peaks.csv``, sources in the file). No torch here.

``peaks_for`` matches the name a device reports (``torch.cuda.get_device_name()``), first pattern
first; ``published_gpu`` matches what a user typed, and only when exactly one GPU fits.
"""

from __future__ import annotations

import re

from sqabench.dtypes import get_dtype
from sqabench.errors import ConfigError
from sqabench.flops import Rates
from sqabench.shipped import shipped_rows


def _peak_rows() -> list[dict[str, str]]:
    return shipped_rows("gpu_peaks.csv")


def exp_rate(row: dict[str, str]) -> float | None:
    """SMs x 16 special-function results per clock x the clock: the derived exponential rate."""
    return int(row["sms"]) * 16 * float(row["clock_mhz"]) * 1e6 if row["sms"] and row["clock_mhz"] else None


def _rates_of(row: dict[str, str], dtype: str) -> Rates:
    tflops = row.get(f"{get_dtype(dtype).name}_tflops") or ""
    return Rates(
        matmul_flops=float(tflops) * 1e12 if tflops else None,
        exp_per_s=exp_rate(row),
        bytes_per_s=float(row["bandwidth_gbs"]) * 1e9 if row["bandwidth_gbs"] else None,
    )


def peaks_for(gpu_name: str, dtype: str) -> tuple[str, Rates] | None:
    """(published name, peak rates) of the GPU whose name matches, or None (a CPU, an unlisted GPU)."""
    if not gpu_name:
        return None
    for row in _peak_rows():
        if re.search(row["pattern"], gpu_name, re.IGNORECASE):
            return row["name"], _rates_of(row, dtype)
    return None


def published_gpu(name: str, dtype: str) -> tuple[str, Rates]:
    """The published peaks of the one GPU ``name`` fits ('H100 SXM', 'A100 40GB'...); exit 2 otherwise.

    A name fits a GPU when it is part of the table's name or matches the GPU's pattern. Several fits
    ('h100': the PCIe and the SXM part) or none are usage errors that list the candidates.
    """
    rows = _peak_rows()
    names = ", ".join(r["name"] for r in rows)
    wanted = " ".join(name.lower().replace("-", " ").split())
    if not wanted:
        raise ConfigError(f"--gpu is empty; choose one of: {names}")
    exact = [r for r in rows if r["name"].lower() == wanted]
    fits = exact or [
        r for r in rows
        if wanted in r["name"].lower() or (len(wanted) > 1 and re.search(r["pattern"], name, re.IGNORECASE))
    ]  # fmt: skip
    if not fits:
        raise ConfigError(f"unknown GPU {name!r}; choose one of: {names}")
    if len(fits) > 1:
        raise ConfigError(f"--gpu {name!r} fits {len(fits)} GPUs: {', '.join(r['name'] for r in fits)}; name one")
    row = fits[0]
    rates = _rates_of(row, dtype)
    if not rates.complete:
        raise ConfigError(f"{row['name']}: the table lacks a published {dtype} or exp rate for a floor")
    return row["name"], rates
