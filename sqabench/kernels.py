"""Attention kernels: small modules chosen once, when the model is built, each with one ``forward(q, k, v)``.

Shapes: ``q`` is (B, Hq, N, Dh); ``k`` and ``v`` are (B, Hkv, S, Dh); each key/value head serves
Hq / Hkv query heads. A kernel owns its mask (window, causal) and applies it to the positions
of q and k; decode passes ``valid`` instead, the (S,) slots of a KV cache that hold keys.

- ``eager``: the readable reference and the correctness spec (explicit K/V repeat, fp32 softmax);
- ``sdpa`` / ``sdpa-<backend>``: ``F.scaled_dot_product_attention(enable_gqa=True)``, with the
  backend pinned through ``sdpa_kernel`` so that a backend that cannot run a case fails loudly;
- ``flex``: ``flex_attention`` compiled once, with block masks from a compiled
  ``create_block_mask``, cached per (seq_len, window, causal, device) and built outside
  ``inference_mode`` (so that a mask first built by a forward cell can serve a train cell).

Mask semantics (``visible``): encoder, query i sees key j iff |i-j| <= window; causal, iff
0 <= i-j <= window; without a window every key (encoder) or every earlier key (causal).
Whatever wraps a kernel (context parallelism, the KV cache) wraps this module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from sqabench.errors import ConfigError
from sqabench.variants import VariantSpec

SDPA_BACKENDS: dict[str, SDPBackend] = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
KERNELS: tuple[str, ...] = ("eager", "sdpa", *(f"sdpa-{b}" for b in SDPA_BACKENDS), "flex")
CHOICES: tuple[str, ...] = ("auto", *KERNELS, "best")  # what --kernel accepts
_NO_BACKEND = ("No viable backend", "No available kernel")
CPU_FLEX_BLOCK = 128  # on a CPU, flex's key length is padded to its block (see FlexKernel)
ATTENTION_RANGE = "sqabench.attention"  # the profiler range around every kernel call (--breakdown)


class KernelUnsupported(RuntimeError):
    """The chosen kernel cannot run this case (dtype, head size, mask, device...)."""


def validate_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {kernel!r}; choose one of: {', '.join(CHOICES)}")
    return kernel


def resolve_kernel(spec: VariantSpec, kernel: str) -> str:
    """The kernel that runs ``spec``: ``auto`` is PyTorch's SDPA choice for full attention, flex for windows."""
    if kernel == "auto":
        return "flex" if spec.window is not None else "sdpa"
    return validate_kernel(kernel)


def decode_kernel(kernel: str) -> str:
    """The kernel of a decode step: ``auto`` is sdpa (a windowed cache is a ring: no window mask needed)."""
    return "sdpa" if kernel == "auto" else validate_kernel(kernel)


# --- masks -------------------------------------------------------------------------------------


def visible(q_idx: torch.Tensor, kv_idx: torch.Tensor, window: int | None, causal: bool) -> torch.Tensor:
    """Whether query ``q_idx`` may attend to key ``kv_idx``: the one definition of every mask."""
    diff = q_idx - kv_idx
    if causal:
        return (diff >= 0) & (diff <= window) if window is not None else diff >= 0
    if window is not None:
        return diff.abs() <= window
    return diff == diff  # all true, as a tensor (flex traces this)


def mask_name(window: int | None, causal: bool) -> str:
    """What a mask computes, as its function is named: ``full``, ``causal``, ``sliding_window_128``..."""
    if window is None:
        return "causal" if causal else "full"
    return f"{'causal_' if causal else ''}sliding_window_{window}"


def mask_mod(window: int | None, causal: bool):
    """The flex ``mask_mod`` of ``visible``, named for what it computes (traces and compile logs read)."""

    def mod(b, h, q_idx, kv_idx):
        return visible(q_idx, kv_idx, window, causal)

    mod.__name__ = mod.__qualname__ = mask_name(window, causal)
    return mod


def dense_mask(seq_len: int, window: int | None, causal: bool, device: torch.device) -> torch.Tensor | None:
    """The (N, N) boolean mask, or None for full bidirectional attention."""
    if window is None and not causal:
        return None
    idx = torch.arange(seq_len, device=device)
    return visible(idx[:, None], idx[None, :], window, causal)


@functools.cache
def compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@functools.cache
def _compiled_block_mask():
    from torch.nn.attention.flex_attention import create_block_mask

    return torch.compile(create_block_mask, dynamic=False)


@functools.lru_cache(maxsize=16)
def block_mask(seq_len: int, window: int | None, causal: bool, device: str):
    """The flex block mask for this case, built once by the compiled ``create_block_mask``.

    Built outside ``inference_mode`` whatever the caller's mode: a mask made of inference tensors,
    cached by a forward cell, would fail a later train cell ("Inference tensors cannot be saved for
    backward").
    """
    with torch.inference_mode(False), torch.no_grad():
        return _compiled_block_mask()(mask_mod(window, causal), None, None, seq_len, seq_len, device=device)


@contextmanager
def compile_settings(recompile_limit: int = 256) -> Iterator[None]:
    """Room for one compiled flex kernel and block mask per case, and a loud failure past it.

    Every (heads, length, mask) case compiles its own kernel; past dynamo's default limit of 8 it
    would silently fall back to the unfused flex, which materialises the scores. Entered by a run,
    not at import, so that importing sqabench changes no global torch setting.
    """
    import torch._dynamo.config as dynamo_config

    wanted = {
        "recompile_limit": recompile_limit,
        "accumulated_recompile_limit": max(recompile_limit, getattr(dynamo_config, "accumulated_recompile_limit", 0)),
        "fail_on_recompile_limit_hit": True,
    }
    with dynamo_config.patch({key: value for key, value in wanted.items() if hasattr(dynamo_config, key)}):
        yield


def sdpa_choice(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool
) -> str:
    """The backend PyTorch's own dispatcher picks for unpinned SDPA on these inputs, e.g. ``flash``."""
    try:
        choice = torch._fused_sdp_choice(  # private, but the dispatcher's own answer
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, enable_gqa=True
        )
    except (AttributeError, TypeError, RuntimeError):
        return "auto"
    names = {int(backend.value): name for name, backend in SDPA_BACKENDS.items()}
    return names.get(int(choice), "auto")


# --- the kernels -------------------------------------------------------------------------------


class Kernel(nn.Module):
    """(B, Hq, N, Dh), (B, Hkv, S, Dh) x2 -> (B, Hq, N, Dh); ``valid`` (S,): a cache's filled slots.

    Every call runs inside the profiler range ``ATTENTION_RANGE``, so that a profile attributes what the
    kernel launches to attention whatever backend ran (inside a compiled model, kernel names decide).
    """

    name = ""

    def __init__(self, window: int | None = None, causal: bool = False) -> None:
        super().__init__()
        self.window, self.causal = window, causal

    def __call__(self, *args, **kwargs):
        # Only while a profiler records (a timed step pays nothing), and never inside a compiled region.
        if torch.compiler.is_compiling() or not getattr(torch.autograd.profiler, "_is_profiler_enabled", True):
            return super().__call__(*args, **kwargs)
        with torch.profiler.record_function(ATTENTION_RANGE):
            return super().__call__(*args, **kwargs)

    def ran(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor | None = None) -> str:
        """The name of what runs on these inputs (for unpinned SDPA: the backend the dispatcher picks)."""
        return self.name

    def allocated_slots(self, slots: int, device: torch.device) -> int:
        """Slots a KV cache must allocate for this kernel to read ``slots`` of them."""
        return slots

    def extra_repr(self) -> str:
        return f"{mask_name(self.window, self.causal)}"


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, Hkv, N, Dh) -> (B, Hkv * groups, N, Dh), query head h reading kv head h // groups."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


class EagerKernel(Kernel):
    """The reference: materialised K/V repeat, scores and softmax in fp32 (or fp64 for fp64 input)."""

    name = "eager"

    def forward(self, q, k, v, valid=None):
        groups = q.shape[1] // k.shape[1]
        compute = torch.promote_types(q.dtype, torch.float32)
        k_full = repeat_kv(k, groups).to(compute)  # (B, Hq, S, Dh)
        v_full = repeat_kv(v, groups).to(compute)
        scores = q.to(compute) @ k_full.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, Hq, N, S)
        mask = valid if valid is not None else dense_mask(q.shape[-2], self.window, self.causal, q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return (scores.softmax(dim=-1) @ v_full).to(q.dtype)  # (B, Hq, N, Dh)


class SdpaKernel(Kernel):
    """SDPA with native GQA; ``backend`` pins one (None lets PyTorch choose).

    A window needs an explicit (N, N) mask, which only some backends accept; full causal uses
    ``is_causal``; decode a boolean mask over the cache's slots. A pinned backend that cannot run
    the case raises ``KernelUnsupported``.
    """

    def __init__(self, window: int | None = None, causal: bool = False, backend: str | None = None) -> None:
        super().__init__(window, causal)
        self.backend = backend
        self.name = f"sdpa-{backend}" if backend else "sdpa"

    def _mask(self, q: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor | None, bool]:
        """(attn_mask, is_causal) for these inputs."""
        if valid is not None:
            if self.backend == "flash":
                raise KernelUnsupported("sdpa-flash cannot decode over a cache: it takes no mask; use sdpa or flex")
            return valid.view(1, 1, 1, -1), False
        if self.window is not None:
            return dense_mask(q.shape[-2], self.window, self.causal, q.device), False
        return None, self.causal

    def forward(self, q, k, v, valid=None):
        mask, is_causal = self._mask(q, valid)
        pin = sdpa_kernel([SDPA_BACKENDS[self.backend]]) if self.backend else nullcontext()
        try:
            with pin:
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=True)
        except RuntimeError as err:
            if any(marker in str(err) for marker in _NO_BACKEND):
                raise KernelUnsupported(f"{self.name} cannot run this case: {str(err).splitlines()[0]}") from err
            raise

    def ran(self, q, k, v, valid=None) -> str:
        if self.backend:
            return self.name
        return f"sdpa-{sdpa_choice(q, k, v, *self._mask(q, valid))}"


class FlexKernel(Kernel):
    """Compiled FlexAttention; full bidirectional attention runs without a block mask on a GPU.

    On a CPU it always gets one: without it, torch's CPU flex kernel reads past the end of k and v
    when the length is not a multiple of its block, and NaNs leak into the output (seen with
    torch 2.13 at N = 200, inputs in the (B, N, H, Dh) layout; the fp64 verification caught it).
    ``mask`` replaces the kernel's own block mask (context parallelism hands each rank its shard's).
    Decode runs flex's decoding path, the cache's valid slots as a ``score_mod``.
    """

    name = "flex"

    def __init__(self, window: int | None = None, causal: bool = False, mask=None) -> None:
        super().__init__(window, causal)
        self.mask = mask
        self._valid: torch.Tensor | None = None  # the tensor the score_mod below reads
        self._score_mod = None

    def allocated_slots(self, slots: int, device: torch.device) -> int:
        if device.type == "cpu":  # padding slots are never valid
            return -(-slots // CPU_FLEX_BLOCK) * CPU_FLEX_BLOCK
        return slots

    def forward(self, q, k, v, valid=None):
        if q.dtype == torch.float64:
            raise KernelUnsupported("flex runs compiled kernels, which do not take fp64")
        kwargs = {}
        if valid is not None:
            kwargs["score_mod"] = self._valid_slots(valid)
        elif self.mask is not None:
            kwargs["block_mask"] = self.mask
        elif self.window is not None or self.causal or q.device.type == "cpu":
            kwargs["block_mask"] = block_mask(q.shape[-2], self.window, self.causal, str(q.device))
        try:
            return compiled_flex()(q, k, v, enable_gqa=True, **kwargs)
        except NotImplementedError as err:  # e.g. no backward on CPU
            raise KernelUnsupported(f"flex cannot run this case: {str(err).splitlines()[0]}") from err

    def _valid_slots(self, valid: torch.Tensor):
        if self._valid is not valid:

            def valid_slots(score, b, h, q_idx, kv_idx):
                return torch.where(valid[kv_idx], score, -float("inf"))

            self._valid, self._score_mod = valid, valid_slots
        return self._score_mod


def build_kernel(name: str, window: int | None = None, causal: bool = False) -> Kernel:
    """The kernel module ``name`` (not ``auto``: see ``resolve_kernel``) for this mask."""
    name = validate_kernel(name)
    if name == "eager":
        return EagerKernel(window, causal)
    if name == "flex":
        return FlexKernel(window, causal)
    return SdpaKernel(window, causal, backend=name[5:] or None)
