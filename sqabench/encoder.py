"""The benchmark encoder: pre-norm RMSNorm blocks of SQA attention and a SwiGLU feed-forward (or, for a
preset with experts, a top-k mixture of SwiGLU experts).

Token embedding, ``n_layers`` blocks, a final RMSNorm and an untied output head; RoPE on q and k;
no biases, no dropout. Bidirectional by default; ``causal=True`` gives the paper's decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sqabench.attention import KVCache, SQAttention, rope_at
from sqabench.errors import ConfigError
from sqabench.kernels import resolve_kernel
from sqabench.presets import Preset
from sqabench.variants import VariantSpec


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=False)
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class MoE(nn.Module):
    """Top-k of ``n_experts`` SwiGLU experts per token (a linear router, softmax, the k largest renormalised),
    with the Switch Transformer's load-balancing loss kept in ``aux`` after each forward:
    E * sum_e (share of routed slots that went to e) * (mean router probability of e)."""

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(d_model, d_ff) for _ in range(n_experts))
        self.aux = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        probs = torch.softmax(self.router(flat).to(torch.promote_types(x.dtype, torch.float32)), dim=-1)  # (T, E)
        weight, chosen = probs.topk(self.top_k, dim=-1)  # (T, k)
        weight = (weight / weight.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(flat[rows]) * weight[rows, slot, None])
        routed = F.one_hot(chosen, len(self.experts)).float().sum((0, 1)) / chosen.numel()
        self.aux = len(self.experts) * (routed * probs.mean(0)).sum()
        return out.view_as(x)


class Block(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + SwiGLU(norm(x)); ``kernel`` may be ``auto``."""

    def __init__(self, spec: VariantSpec, preset: Preset, kernel: str, causal: bool) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(preset.d_model, eps=preset.norm_eps)
        self.attn = SQAttention(
            preset.d_model, spec, kernel=resolve_kernel(spec, kernel), causal=causal, head_dim=preset.head_dim,
            qk_norm=preset.qk_norm, eps=preset.norm_eps,
        )  # fmt: skip
        self.ffn_norm = nn.RMSNorm(preset.d_model, eps=preset.norm_eps)
        self.ffn = (MoE(preset.d_model, preset.d_ff, preset.n_experts, preset.top_k) if preset.n_experts
                    else SwiGLU(preset.d_model, preset.d_ff))  # fmt: skip

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, cache)
        return x + self.ffn(self.ffn_norm(x))


class Encoder(nn.Module):
    """(B, N) token ids -> (B, N, vocab) logits."""

    def __init__(self, spec: VariantSpec, preset: Preset, kernel: str = "auto", causal: bool = False) -> None:
        super().__init__()
        self.spec, self.preset, self.causal = spec, preset, causal
        self.embed = nn.Embedding(preset.vocab_size, preset.d_model)
        self.blocks = nn.ModuleList(Block(spec, preset, kernel, causal) for _ in range(preset.n_layers))
        self.norm = nn.RMSNorm(preset.d_model, eps=preset.norm_eps)
        self.head = nn.Linear(preset.d_model, preset.vocab_size, bias=False)
        if preset.tie_embeddings:
            self.head.weight = self.embed.weight  # one matrix, as the config says

    def aux_loss(self) -> torch.Tensor:
        """The routers' load-balancing losses of the last forward, summed over layers (0 without experts)."""
        losses = [block.ffn.aux for block in self.blocks if isinstance(block.ffn, MoE)]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        logits_at: slice | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of (B, N) tokens: (B, N, V), or (B, len(logits_at), V) at the positions ``logits_at``.

        ``positions`` (N,): where the tokens sit when not at 0..N-1 (a shard of a longer sequence
        under context parallelism; a decode step). ``caches``: one ``KVCache`` per layer (decode).
        A prefill needs one position's logits, not N x vocab of them: ``logits_at=slice(-1, None)``.
        """
        x = self.embed(tokens)  # (B, N, D)
        if positions is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
        rope = rope_at(positions, self.preset.head_dim, self.preset.rope_base, x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, None if caches is None else caches[i])
        if logits_at is not None:
            x = x[:, logits_at]
        return self.head(self.norm(x))  # (B, N, V)


def _built(make, spec: VariantSpec, preset: Preset, device, dtype: torch.dtype, seed: int):
    """``make()`` initialised on ``device`` from ``seed`` (so that runs are repeatable), in ``dtype``."""
    if spec.n_heads != preset.n_heads:
        raise ConfigError(
            f"variant {spec.name} has n_heads={spec.n_heads} but preset {preset.name} has n_heads={preset.n_heads}"
        )
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        module = make()  # initialised on the device
    return module.to(dtype=dtype)


def build_encoder(
    spec: VariantSpec,
    preset: Preset,
    kernel: str = "auto",
    causal: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Encoder:
    """A freshly initialised encoder, weights drawn from ``seed`` so that runs are repeatable."""
    return _built(lambda: Encoder(spec, preset, kernel=kernel, causal=causal), spec, preset, device, dtype, seed)


def build_block(
    spec: VariantSpec,
    preset: Preset,
    kernel: str = "auto",
    causal: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Block:
    """One freshly initialised transformer block (the ``--scope block`` and ``attention`` unit)."""
    return _built(lambda: Block(spec, preset, kernel, causal), spec, preset, device, dtype, seed)
