"""Independent fp64 references for the tests: they share no code with sqabench.

Written plainly from the definitions (the README and the SQA paper, section 3.2): a mask built by
explicit loops, a per-query-head loop that picks its key/value head as h // (Hq / Hkv), the
1/sqrt(d_head) scale spelled out, RoPE as a rotation of each (i, i + Dh/2) pair, RMSNorm and
SwiGLU from their formulas, and a whole encoder that reads only the model's weights.
"""

from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=32)
def mask_by_loops(n: int, window: int | None, causal: bool) -> torch.Tensor:
    """(n, n) bool: query i sees key j iff |i-j| <= window (encoder) or 0 <= i-j <= window (causal)."""
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if causal and j > i:
                continue  # a decoder never looks ahead
            if window is not None and abs(i - j) > window:
                continue
            allowed[i, j] = True
    return allowed


def attention_per_head(q, k, v, window=None, causal=False) -> torch.Tensor:
    """q (B, Hq, N, Dh), k and v (B, Hkv, N, Dh) -> (B, Hq, N, Dh) in fp64, one query head at a time."""
    B, Hq, N, Dh = q.shape
    Hkv = k.shape[1]
    group = Hq // Hkv
    allowed = mask_by_loops(N, window, causal).to(q.device)
    out = torch.empty(B, Hq, N, Dh, dtype=torch.float64, device=q.device)
    for b in range(B):
        for h in range(Hq):
            kv = h // group  # query heads h = kv*group ... kv*group + group-1 share key/value head kv
            scores = (q[b, h].double() @ k[b, kv].double().T) * (1.0 / math.sqrt(Dh))  # (N, N)
            scores = scores.masked_fill(~allowed, float("-inf"))
            out[b, h] = torch.softmax(scores, dim=-1) @ v[b, kv].double()
    return out


def rotate(x: torch.Tensor, base: float) -> torch.Tensor:
    """RoPE on (B, H, N, Dh): pair (i, i + Dh/2) at position p turns by p * base^(-2i/Dh)."""
    n, dh = x.shape[-2], x.shape[-1]
    half = dh // 2
    x = x.double()
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.tensor([base ** (-2.0 * i / dh) for i in range(half)], dtype=torch.float64)[None, :]
    cos, sin = torch.cos(pos * freq), torch.sin(pos * freq)  # (N, Dh/2)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight.double()


def attention_layer(
    x, weights: dict, prefix: str, n_q: int, n_kv: int, head_dim: int, window, causal, base, qk_norm=False, eps=1e-6
):
    """The SQA layer from its weights: x (B, N, D) fp64 -> (B, N, D). ``qk_norm``: Qwen3's per-head RMSNorm."""
    B, N, _ = x.shape

    def heads(name, count):  # project and split: (B, N, count*Dh) -> (B, count, N, Dh)
        return (x @ weights[f"{prefix}.{name}.weight"].double().T).view(B, N, count, head_dim).transpose(1, 2)

    q, k, v = heads("wq", n_q), heads("wk", n_kv), heads("wv", n_kv)
    if qk_norm:  # each head's vector normalised over its own head_dim, before the rotation
        q = rms_norm(q, weights[f"{prefix}.q_norm.weight"], eps)
        k = rms_norm(k, weights[f"{prefix}.k_norm.weight"], eps)
    q, k = rotate(q, base), rotate(k, base)
    o = attention_per_head(q, k, v, window, causal)  # (B, Hq, N, Dh)
    return o.transpose(1, 2).reshape(B, N, n_q * head_dim) @ weights[f"{prefix}.wo.weight"].double().T


def encoder_forward(
    tokens, weights: dict, n_layers, n_q, n_kv, head_dim, window, causal, base=10_000.0, qk_norm=False, eps=1e-6,
    tied=False,
):  # fmt: skip
    """Logits (B, N, V) of the whole encoder from its state dict, in fp64; ``tied``: the head is the embedding."""
    w = {name: t.detach().double() for name, t in weights.items()}
    x = w["embed.weight"][tokens]
    for layer in range(n_layers):
        p = f"blocks.{layer}"
        x = x + attention_layer(rms_norm(x, w[f"{p}.attn_norm.weight"], eps), w, f"{p}.attn", n_q, n_kv, head_dim,
                                window, causal, base, qk_norm, eps)  # fmt: skip
        h = rms_norm(x, w[f"{p}.ffn_norm.weight"], eps)
        gate, up = h @ w[f"{p}.ffn.gate.weight"].T, h @ w[f"{p}.ffn.up.weight"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ w[f"{p}.ffn.down.weight"].T  # SwiGLU: silu(gate) * up
    head = w["embed.weight"] if tied else w["head.weight"]
    return rms_norm(x, w["norm.weight"], eps) @ head.T


def t_cdf(x: float, df: float, steps: int = 20_000) -> float:
    """Student's t CDF by Simpson's rule on its density (for x >= 0; the lower half by symmetry): a reference
    that shares nothing with scipy."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    h = x / steps
    total = sum((1 if i in (0, steps) else 4 if i % 2 else 2) * c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2)
                for i in range(steps + 1))  # fmt: skip
    return 0.5 + total * h / 3
