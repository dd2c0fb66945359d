"""Expected failures of a measured or trained step, as a small value: out of memory, a case the kernel cannot
run, an error.

Out of memory (at run time or while compiling, on the GPU or the host) is ``oom``; a case the
kernel cannot run (``NotImplementedError`` and the like, also when the compiler wraps it)
``skipped``; any other runtime failure ``error``. A sticky CUDA error (illegal memory access,
launch failure, ECC) poisons every later cell: ``Failure.sticky`` tells the sweep (or the training loop) to
stop. Each wing turns a ``Failure`` into its own record (the speed wing's ``Outcome``, the quality wing's row).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from sqabench.kernels import KernelUnsupported
from sqabench.verify import KernelVerifyFailed

STICKY_CUDA = (
    "illegal memory access", "unspecified launch failure", "uncorrectable ECC", "device-side assert",
    "misaligned address", "illegal instruction", "CUDA error: an illegal",
)  # fmt: skip
HOST_OOM = ("can't allocate memory", "DefaultCPUAllocator: not enough memory", "std::bad_alloc")


@dataclass(frozen=True)
class Failure:
    """What an expected failure becomes: ``oom``, ``skipped`` or ``error``, its first line, and whether it leaves
    the device unusable for every later step (a sticky CUDA error)."""

    status: str
    error: str

    @property
    def sticky(self) -> bool:
        return self.status == "error" and any(marker.lower() in self.error.lower() for marker in STICKY_CUDA)


def _recompile_limit_error() -> type[BaseException]:
    try:
        from torch._dynamo.exc import FailOnRecompileLimitHit  # derives from Exception, not RuntimeError
    except ImportError:
        return RuntimeError
    return FailOnRecompileLimitHit


MEASURE_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, MemoryError, _recompile_limit_error())


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: causes, contexts, the compiler's inner exceptions."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "inner_exception", None)]


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def classify(err: BaseException) -> Failure:
    """What an expected failure is: ``oom``, ``skipped`` or ``error``."""
    chain = list(_chain(err))
    message = first_line(err)
    gpu_oom = next((e for e in chain if isinstance(e, torch.OutOfMemoryError)), None)
    if gpu_oom is not None:
        return Failure(status="oom", error=first_line(gpu_oom))
    if any(isinstance(e, MemoryError) for e in chain):
        return Failure(status="oom", error=f"host memory: {message}")
    host = next((e for e in chain if any(marker in str(e) for marker in HOST_OOM)), None)
    if host is not None:  # the CPU allocator raises RuntimeError, not MemoryError
        return Failure(status="oom", error=f"host memory: {first_line(host)}")
    unsupported = next(
        (e for e in chain if isinstance(e, (KernelUnsupported, NotImplementedError)) or _says_not_implemented(e)),
        None,
    )
    if unsupported is not None and not isinstance(err, KernelVerifyFailed):
        return Failure(status="skipped", error=first_line(unsupported))
    return Failure(status="error", error=f"{type(err).__name__}: {message}")


def _says_not_implemented(err: BaseException) -> bool:
    """Inductor's ``LoweringException`` carries a wrapped ``NotImplementedError`` only in its text."""
    return str(err).startswith("NotImplementedError:")
