"""Correct before fast: a kernel's output on random inputs against an fp64 eager reference.

``check_layer`` runs an attention layer's kernel on the projections of random hidden states, of
the very shape the benchmark times, and compares sampled query rows (the edges always among them)
with an fp64 softmax over every visible key. Sampling keeps the reference cheap at 200k tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sqabench.attention import SQAttention, attend, rope_tables, sdpa_choice, visible

TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}
SAMPLED_ROWS = 32


class KernelCheckFailed(RuntimeError):
    """A kernel's output disagrees with the fp64 reference: its timing would mean nothing."""


@dataclass(frozen=True)
class KernelCheck:
    kernel: str  # what ran, e.g. sdpa-flash
    rel_err: float


def sample_rows(seq_len: int, count: int = SAMPLED_ROWS, seed: int = 0) -> torch.Tensor:
    """First, last and random query rows, sorted and unique."""
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randint(0, seq_len, (max(count - 2, 0),), generator=generator)
    return torch.cat([torch.tensor([0, seq_len - 1]), picked]).unique()


def reference_rows(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor, window: int | None, causal: bool
) -> torch.Tensor:
    """fp64 attention output of query ``rows``: (B, Hq, N, Dh) inputs -> (B, Hq, R, Dh).

    One key/value head at a time, with its query heads stacked, so K and V are never repeated.
    """
    B, Hq, N, Dh = q.shape
    Hkv = k.shape[1]
    groups = Hq // Hkv
    rows = rows.to(q.device)
    allowed = visible(rows[:, None], torch.arange(N, device=q.device)[None, :], window, causal)  # (R, N)
    out = torch.empty(B, Hq, len(rows), Dh, dtype=torch.float64, device=q.device)
    for h in range(Hkv):
        heads = slice(h * groups, (h + 1) * groups)
        q_h = q[:, heads, rows].double()  # (B, G, R, Dh)
        k_h, v_h = k[:, h].double(), v[:, h].double()  # (B, N, Dh)
        scores = q_h @ k_h[:, None].transpose(-2, -1) / math.sqrt(Dh)  # (B, G, R, N)
        scores = scores.masked_fill(~allowed, float("-inf"))
        out[:, heads] = scores.softmax(dim=-1) @ v_h[:, None]  # (B, G, R, Dh)
    return out


def check_layer(
    layer: SQAttention, batch: int, seq_len: int, rope_base: float = 10_000.0, seed: int = 0
) -> KernelCheck:
    """Run ``layer``'s kernel on random hidden states; raise ``KernelCheckFailed`` past the dtype's tolerance."""
    weight = layer.wq.weight
    dtype, device = weight.dtype, weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.inference_mode():
        x = torch.randn(batch, seq_len, weight.shape[1], generator=generator, device=device, dtype=dtype)
        rope = rope_tables(seq_len, layer.head_dim, rope_base, device, dtype)
        q, k, v = layer.qkv(x, rope)  # the layouts the model hands its kernel
        out = attend(q, k, v, layer.kernel, layer.spec.window, layer.causal)
        kernel = layer.kernel
        if kernel == "sdpa":
            kernel = f"sdpa-{sdpa_choice(q, k, v, layer.spec.window, layer.causal)}"
        rows = sample_rows(seq_len, seed=seed)
        picked = torch.tensor(sorted({0, batch - 1}), device=device)  # first and last sequence
        ref = reference_rows(q[picked], k[picked], v[picked], rows, layer.spec.window, layer.causal)
        got = out[picked][:, :, rows.to(device)].double()
        err = float((got - ref).norm() / ref.norm())
    if not math.isfinite(err):
        err = math.inf
    tolerance = TOLERANCE.get(dtype, 1e-10)
    if not err <= tolerance:
        raise KernelCheckFailed(f"{kernel} disagrees with the fp64 reference: rel err {err:.2e} > {tolerance:.0e}")
    return KernelCheck(kernel=kernel, rel_err=err)
