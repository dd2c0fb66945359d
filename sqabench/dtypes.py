"""The one dtype table: names on the command line, torch dtypes, bytes per element, tolerances.

Pure data; torch is imported only when a torch dtype is asked for, so that the cost model, the
results reader and the plots never load torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqabench.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DType:
    name: str  # as the command line and the CSV spell it
    torch_name: str  # attribute of the torch module
    bytes: int
    tolerance: float  # norm-wise relative error allowed against the fp64 reference

    @property
    def torch(self) -> "torch.dtype":
        import torch

        return getattr(torch, self.torch_name)


DTYPES: dict[str, DType] = {
    "bf16": DType("bf16", "bfloat16", 2, 2e-2),
    "fp16": DType("fp16", "float16", 2, 5e-3),
    "fp32": DType("fp32", "float32", 4, 1e-4),
}
FP64 = DType("fp64", "float64", 8, 1e-10)  # the reference's own precision, never benchmarked


def get_dtype(name: str) -> DType:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; choose one of: auto, {', '.join(DTYPES)}") from None


def by_torch(dtype: "torch.dtype") -> DType:
    """The table's entry for a torch dtype (fp64 included)."""
    for entry in (*DTYPES.values(), FP64):
        if entry.torch == dtype:
            return entry
    raise ConfigError(f"dtype {dtype} is not one of: {', '.join(DTYPES)}")
