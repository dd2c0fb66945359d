"""The SQA attention layer (Filipek 2025, arXiv 2510.01817, section 3.2) and its kernels.

Shapes: ``q`` is (B, Hq, N, Dh); ``k`` and ``v`` are (B, Hkv, N, Dh); each key/value head serves
Hq / Hkv query heads. Every kernel sits behind one signature, ``attend(q, k, v, ...)``:

- ``eager``: the readable reference and the correctness spec (explicit K/V repeat, fp32 softmax);
- ``sdpa`` / ``sdpa-<backend>``: ``F.scaled_dot_product_attention(enable_gqa=True)``, with the
  backend pinned through ``sdpa_kernel`` so that a backend that cannot run a case fails loudly;
- ``flex``: ``flex_attention`` compiled once, with block masks from a compiled
  ``create_block_mask``, cached per (seq_len, window, causal, device).

Mask semantics (``visible``): encoder, query i sees key j iff |i-j| <= window; causal, iff
0 <= i-j <= window; without a window every key (encoder) or every earlier key (causal).
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
_NO_BACKEND = ("No viable backend", "No available kernel")


class KernelUnsupported(RuntimeError):
    """The chosen kernel cannot run this case (dtype, head size, mask, device...)."""


def validate_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {kernel!r}; choose one of: {', '.join(KERNELS)}")
    return kernel


# --- masks -------------------------------------------------------------------------------------


def visible(q_idx: torch.Tensor, kv_idx: torch.Tensor, window: int | None, causal: bool) -> torch.Tensor:
    """Whether query ``q_idx`` may attend to key ``kv_idx``: the one definition of every mask."""
    diff = q_idx - kv_idx
    if causal:
        return (diff >= 0) & (diff <= window) if window is not None else diff >= 0
    if window is not None:
        return diff.abs() <= window
    return diff == diff  # all true, as a tensor (flex traces this)


def dense_mask(seq_len: int, window: int | None, causal: bool, device: torch.device) -> torch.Tensor | None:
    """The (N, N) boolean mask, or None for full bidirectional attention."""
    if window is None and not causal:
        return None
    idx = torch.arange(seq_len, device=device)
    return visible(idx[:, None], idx[None, :], window, causal)


# --- kernels -----------------------------------------------------------------------------------


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, Hkv, N, Dh) -> (B, Hkv * groups, N, Dh), query head h reading kv head h // groups."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def eager_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None, causal: bool = False
) -> torch.Tensor:
    """The reference: materialised K/V repeat, scores and softmax in fp32 (or fp64 for fp64 input)."""
    groups = q.shape[1] // k.shape[1]
    compute = torch.promote_types(q.dtype, torch.float32)
    k_full = repeat_kv(k, groups).to(compute)  # (B, Hq, N, Dh)
    v_full = repeat_kv(v, groups).to(compute)
    scores = q.to(compute) @ k_full.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, Hq, N, N)
    mask = dense_mask(q.shape[-2], window, causal, q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(dim=-1) @ v_full).to(q.dtype)  # (B, Hq, N, Dh)


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int | None = None,
    causal: bool = False,
    backend: str | None = None,
) -> torch.Tensor:
    """SDPA with native GQA; ``backend`` pins one (None lets PyTorch choose).

    A window needs an explicit (N, N) mask, which only some backends accept; full causal uses
    ``is_causal``. A pinned backend that cannot run the case raises ``KernelUnsupported``.
    """
    mask = dense_mask(q.shape[-2], window, causal, q.device) if window is not None else None
    pin = sdpa_kernel([SDPA_BACKENDS[backend]]) if backend else nullcontext()
    try:
        with pin:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal and mask is None, enable_gqa=True
            )
    except RuntimeError as err:
        if any(marker in str(err) for marker in _NO_BACKEND):
            name = f"sdpa-{backend}" if backend else "sdpa"
            raise KernelUnsupported(f"{name} cannot run this case: {str(err).splitlines()[0]}") from err
        raise


def sdpa_choice(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None, causal: bool) -> str:
    """The backend PyTorch's own dispatcher picks for unpinned SDPA on these inputs, e.g. ``flash``."""
    mask = dense_mask(q.shape[-2], window, causal, q.device) if window is not None else None
    try:
        choice = torch._fused_sdp_choice(  # private, but the dispatcher's own answer
            q, k, v, attn_mask=mask, is_causal=causal and mask is None, enable_gqa=True
        )
    except (AttributeError, TypeError, RuntimeError):
        return "auto"
    names = {int(backend.value): name for name, backend in SDPA_BACKENDS.items()}
    return names.get(int(choice), "auto")


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@functools.cache
def _compiled_block_mask():
    from torch.nn.attention.flex_attention import create_block_mask

    return torch.compile(create_block_mask, dynamic=False)


@functools.lru_cache(maxsize=16)
def block_mask(seq_len: int, window: int | None, causal: bool, device: str):
    """The flex block mask for this case, built once by the compiled ``create_block_mask``."""

    def sliding_window_mask(b, h, q_idx, kv_idx):
        return visible(q_idx, kv_idx, window, causal)

    return _compiled_block_mask()(sliding_window_mask, None, None, seq_len, seq_len, device=device)


def flex_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None, causal: bool = False
) -> torch.Tensor:
    """Compiled FlexAttention; full bidirectional attention runs without a block mask on a GPU.

    On a CPU it always gets one: without it, torch's CPU flex kernel reads past the end of k and v
    when the length is not a multiple of its block, and NaNs leak into the output (seen with
    torch 2.13 at N = 200, inputs in the (B, N, H, Dh) layout; the fp64 verification caught it).
    """
    if q.dtype == torch.float64:
        raise KernelUnsupported("flex runs compiled kernels, which do not take fp64")
    mask = None
    if window is not None or causal or q.device.type == "cpu":
        mask = block_mask(q.shape[-2], window, causal, str(q.device))
    try:
        return _compiled_flex()(q, k, v, block_mask=mask, enable_gqa=True)
    except NotImplementedError as err:  # e.g. no backward on CPU
        raise KernelUnsupported(f"flex cannot run this case: {str(err).splitlines()[0]}") from err


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


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: str,
    window: int | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """(B, Hq, N, Dh), (B, Hkv, N, Dh) x2 -> (B, Hq, N, Dh) with the named kernel."""
    if kernel == "eager":
        return eager_attention(q, k, v, window, causal)
    if kernel == "flex":
        return flex_attention(q, k, v, window, causal)
    if kernel == "sdpa":
        return sdpa_attention(q, k, v, window, causal)
    if kernel.startswith("sdpa-") and kernel[5:] in SDPA_BACKENDS:
        return sdpa_attention(q, k, v, window, causal, backend=kernel[5:])
    validate_kernel(kernel)
    raise AssertionError("unreachable")


def resolve_kernel(spec: VariantSpec, kernel: str) -> str:
    """The kernel that runs ``spec``: ``auto`` is PyTorch's SDPA choice for full attention, flex for windows."""
    if kernel == "auto":
        return "flex" if spec.window is not None else "sdpa"
    return validate_kernel(kernel)


# --- RoPE and the layer ------------------------------------------------------------------------


def rope_tables(
    seq_len: int, head_dim: int, base: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (N, Dh) for rotate-half RoPE, angles computed in fp64."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim)
    angles = torch.arange(seq_len, device=device, dtype=torch.float64)[:, None] * inv_freq  # (N, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (N, Dh)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, N, Dh) by position."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class SQAttention(nn.Module):
    """Hq query heads, Hkv key/value heads, W_O sized from the query heads (paper section 3.2).

    ``head_dim`` defaults to d_model / H (a config may set its own); ``qk_norm`` adds Qwen3's
    RMSNorm of each query and key head before RoPE.
    """

    def __init__(
        self,
        d_model: int,
        spec: VariantSpec,
        kernel: str = "sdpa",
        causal: bool = False,
        head_dim: int | None = None,
        qk_norm: bool = False,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if head_dim is None and d_model % spec.n_heads:
            raise ConfigError(f"d_model={d_model} is not divisible by n_heads={spec.n_heads}")
        self.spec = spec
        self.head_dim = head_dim or d_model // spec.n_heads
        self.kernel = validate_kernel(kernel)
        self.causal = causal
        self.wq = nn.Linear(d_model, spec.n_q_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(d_model, spec.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(d_model, spec.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(spec.n_q_heads * self.head_dim, d_model, bias=False)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=eps) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=eps) if qk_norm else None
        self.op: nn.Module | None = None  # an attention op that replaces ``attend`` (set by context parallelism)

    def qkv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        """Project (B, N, D) to RoPE-rotated q (B, Hq, N, Dh) and k, v (B, Hkv, N, Dh)."""
        B, N, _ = x.shape
        q = self.wq(x).view(B, N, self.spec.n_q_heads, self.head_dim)  # (B, N, Hq, Dh)
        k = self.wk(x).view(B, N, self.spec.n_kv_heads, self.head_dim)  # (B, N, Hkv, Dh)
        v = self.wv(x).view(B, N, self.spec.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, N, Dh)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = rope
        return apply_rope(q.transpose(1, 2), cos, sin), apply_rope(k.transpose(1, 2), cos, sin), v

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x, rope)
        if self.op is not None:
            o = self.op(q, k, v)  # (B, Hq, N, Dh)
        else:
            o = attend(q, k, v, self.kernel, self.spec.window, self.causal)  # (B, Hq, N, Dh)
        return self.wo(o.transpose(1, 2).reshape(B, N, self.spec.n_q_heads * self.head_dim))
