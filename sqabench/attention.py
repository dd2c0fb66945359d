"""The SQA attention layer (Filipek 2025, arXiv 2510.01817, section 3.2), RoPE, and the KV cache.

The layer projects x (B, N, D) to Hq query heads and Hkv key/value heads (W_O sized from the
query heads), rotates q and k with RoPE, and hands them to its kernel (``sqabench.kernels``, a
module chosen once when the layer is built). One forward serves every use:

- a whole sequence (an encoder step, a prefill): the kernel's own mask over the positions;
- with a ``KVCache`` in prefill mode: the same, and the keys and values are kept in the cache;
- with a ``KVCache`` in decode mode: the new token's key and value go into the cache and its
  query attends to the cache's filled slots, with the cache's decode kernel.
"""

from __future__ import annotations

import torch
from torch import nn

from sqabench.errors import ConfigError
from sqabench.kernels import Kernel, build_kernel
from sqabench.variants import VariantSpec

# --- RoPE ----------------------------------------------------------------------------------------


def rope_at(
    positions: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (N, Dh) of rotate-half RoPE at ``positions`` (N,), angles computed in fp64.

    ``positions`` may live on the device (a decode step's position): nothing here syncs the host.
    """
    device = positions.device
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq  # (N, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (N, Dh)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope_tables(
    seq_len: int, head_dim: int, base: float, device: torch.device | str, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (N, Dh) of positions 0..N-1."""
    return rope_at(torch.arange(seq_len, device=device), head_dim, base, dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, N, Dh) by position."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


# --- the KV cache --------------------------------------------------------------------------------


class Cursor:
    """Where the next decoded token goes, shared by every layer's cache.

    Device tensors (position, slot, valid slots), updated in place, so that one decode step can be
    captured in a CUDA graph; ``position`` mirrors the position on the host, so that no step syncs.
    A windowed cache is a ring: slot = position mod ``slots``.
    """

    def __init__(self, slots: int, allocated: int, device: torch.device, position: int) -> None:
        self.slots = slots
        self.pos = torch.full((), position, dtype=torch.long, device=device)  # of the next token
        self.position = position
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.slot_ids = torch.arange(allocated, device=device)
        self.valid = torch.zeros(allocated, dtype=torch.bool, device=device)  # padding slots never valid
        self.decoding = False  # prefill (False) or one-token steps (True)

    def begin_step(self) -> None:
        """Before a step: the slot its key goes to, and the slots its query may read."""
        torch.remainder(self.pos.view(1), self.slots, out=self.slot)
        torch.lt(self.slot_ids, torch.clamp(self.pos + 1, max=self.slots), out=self.valid)

    def end_step(self) -> None:
        self.pos.add_(1)

    def reset(self, position: int) -> None:
        """Make ``position`` the next one decoded (the caches' earlier contents stay)."""
        self.position = position
        self.pos.fill_(position)


class KVCache:
    """One layer's keys and values, (B, Hkv, S, Dh) each, written in place; ``kernel`` reads it in decode."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, cursor: Cursor, kernel: Kernel) -> None:
        self.k, self.v, self.cursor, self.kernel = k, v, cursor, kernel

    def prefill(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Keep the last ``slots`` positions of a (B, Hkv, N, Dh) prefill, each at its ring slot."""
        n, slots = k.shape[2], self.cursor.slots
        keep = torch.arange(max(0, n - slots), n, device=k.device)
        self.k[:, :, keep % slots] = k[:, :, keep]
        self.v[:, :, keep % slots] = v[:, :, keep]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one step's (B, Hkv, 1, Dh) key and value at the cursor's slot; the whole cache."""
        self.k.index_copy_(2, self.cursor.slot, k)
        self.v.index_copy_(2, self.cursor.slot, v)
        return self.k, self.v


# --- the layer -----------------------------------------------------------------------------------


class SQAttention(nn.Module):
    """Hq query heads, Hkv key/value heads, W_O sized from the query heads (paper section 3.2).

    ``kernel`` names the kernel module built here (``sqabench.kernels``); ``head_dim`` defaults to
    d_model / H (a config may set its own); ``qk_norm`` adds Qwen3's RMSNorm of each query and key
    head before RoPE.
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
        self.causal = causal
        self.kernel: Kernel = build_kernel(kernel, spec.window, causal)
        self.wq = nn.Linear(d_model, spec.n_q_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(d_model, spec.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(d_model, spec.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(spec.n_q_heads * self.head_dim, d_model, bias=False)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=eps) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=eps) if qk_norm else None

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

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None = None
    ) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x, rope)
        if cache is not None and cache.cursor.decoding:
            k, v = cache.append(k, v)  # (B, Hkv, S, Dh): the whole cache
            o = cache.kernel(q, k, v, cache.cursor.valid)  # (B, Hq, 1, Dh)
        else:
            if cache is not None:
                cache.prefill(k, v)
            o = self.kernel(q, k, v)  # (B, Hq, N, Dh)
        return self.wo(o.transpose(1, 2).reshape(B, N, self.spec.n_q_heads * self.head_dim))
