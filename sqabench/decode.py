"""Autoregressive decode with a preallocated KV cache: where SQA does not help.

A ``Decoder`` wraps a causal ``Encoder``: ``prefill`` runs the context through the model and
fills the cache; each ``step`` feeds one token per sequence, writes its keys and values into the
cache and attends to the cache. The cache is allocated once, at its final size, per layer
(B, Hkv, S, Dh): S = context + new tokens, or, for a windowed variant, the w + 1 slots its last
query can see, used as a ring (slot = position mod S; RoPE is applied before caching, so a key's
slot does not matter to attention). Nothing is allocated or concatenated inside a step: the
position lives in a device tensor, the new key and value go in with ``index_copy_``, and the
valid slots are a mask, so one step can be captured in a CUDA graph.

Decode attention kernels (one query per sequence over S slots, invalid slots masked):
``eager`` (explicit K/V repeat, fp32 softmax), ``sdpa``/``sdpa-<backend>`` (``enable_gqa``, a
boolean mask; flash takes no mask, so a pinned flash is ``skipped``) and ``flex`` (flex's
decoding path, the mask as a ``score_mod`` on a device tensor). ``auto`` is sdpa.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sqabench.attention import SDPA_BACKENDS, KernelUnsupported, _compiled_flex, attend, repeat_kv, validate_kernel
from sqabench.encoder import Encoder

CPU_FLEX_BLOCK = 128  # on a CPU, flex's slot count is padded to its block (see attention.flex_attention)


def decode_kernel(kernel: str) -> str:
    """The kernel of the decode step: ``auto`` is sdpa (a windowed cache is a ring: no window mask needed)."""
    return "sdpa" if kernel == "auto" else validate_kernel(kernel)


def cache_slots(context: int, new_tokens: int, window: int | None) -> int:
    """Slots each layer's cache holds: every position, or the w + 1 a windowed query sees."""
    total = context + new_tokens
    return total if window is None else min(total, window + 1)


class Decoder:
    """Prefill and one-token steps of ``model`` over a preallocated cache. Run under ``inference_mode``."""

    def __init__(self, model: Encoder, batch: int, context: int, new_tokens: int, kernel: str) -> None:
        if not model.causal:
            raise ValueError("decode needs a causal model")
        first = model.blocks[0].attn
        self.model, self.batch, self.context, self.new_tokens = model, batch, context, new_tokens
        self.kernel = decode_kernel(kernel)
        self.window = model.spec.window
        self.slots = cache_slots(context, new_tokens, self.window)
        weight = first.wq.weight
        device, dtype = weight.device, weight.dtype
        self.n_q, self.n_kv, self.head_dim = model.spec.n_q_heads, model.spec.n_kv_heads, first.head_dim
        allocated = self.slots
        if self.kernel == "flex" and device.type == "cpu":
            allocated = -(-self.slots // CPU_FLEX_BLOCK) * CPU_FLEX_BLOCK  # padding slots are never valid
        shape = (len(model.blocks), batch, self.n_kv, allocated, self.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, Hkv, S, Dh)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        total = context + new_tokens
        from sqabench.attention import rope_tables

        self.cos, self.sin = rope_tables(total, self.head_dim, model.preset.rope_base, device, dtype)  # (N+T, Dh)
        self.pos = torch.full((), context, dtype=torch.long, device=device)  # position of the next token
        self.position = context  # the same, on the host, so that no step needs a device sync
        self.slot_ids = torch.arange(allocated, device=device)
        self.valid = torch.zeros(allocated, dtype=torch.bool, device=device)  # updated in place each step
        self._score_mod = _valid_score_mod(self.valid)

    @property
    def cache_bytes(self) -> int:
        """K and V of every layer, as the cost model counts them (padding excluded)."""
        per_slot = self.k.shape[0] * self.batch * self.n_kv * self.head_dim * self.k.element_size()
        return 2 * per_slot * self.slots

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the (B, N) context through the model, causal; fill the cache; return (B, N, V) logits."""
        model, n = self.model, tokens.shape[1]
        x = model.embed(tokens)  # (B, N, D)
        cos, sin = self.cos[:n], self.sin[:n]
        keep = torch.arange(max(0, n - self.slots), n, device=tokens.device)  # the positions the cache keeps
        for layer, block in enumerate(model.blocks):
            attn = block.attn
            q, k, v = attn.qkv(block.attn_norm(x), (cos, sin))  # (B, H, N, Dh)
            self.k[layer][:, :, keep % self.slots] = k[:, :, keep]
            self.v[layer][:, :, keep % self.slots] = v[:, :, keep]
            o = attend(q, k, v, attn.kernel, attn.spec.window, True)  # (B, Hq, N, Dh)
            x = x + attn.wo(o.transpose(1, 2).reshape(x.shape[0], n, -1))
            x = x + block.ffn(block.ffn_norm(x))
        self.reset(n)
        return model.head(model.norm(x))

    def reset(self, position: int) -> None:
        """Make ``position`` the next one decoded (the cache's earlier contents stay)."""
        self.position = position
        self.pos.fill_(position)

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """One new token per sequence, (B, 1) -> (B, 1, V) logits; advances the position."""
        model, p = self.model, self.pos
        slot = (p % self.slots).view(1)
        torch.lt(self.slot_ids, torch.clamp(p + 1, max=self.slots), out=self.valid)  # slots written so far
        cos, sin = self.cos.index_select(0, p.view(1)), self.sin.index_select(0, p.view(1))  # (1, Dh)
        x = model.embed(token)  # (B, 1, D)
        for layer, block in enumerate(model.blocks):
            attn = block.attn
            q, k, v = attn.qkv(block.attn_norm(x), (cos, sin))  # q (B, Hq, 1, Dh); k, v (B, Hkv, 1, Dh)
            self.k[layer].index_copy_(2, slot, k)
            self.v[layer].index_copy_(2, slot, v)
            o = self.attend(q, self.k[layer], self.v[layer])  # (B, Hq, 1, Dh)
            x = x + attn.wo(o.transpose(1, 2).reshape(x.shape[0], 1, -1))
            x = x + block.ffn(block.ffn_norm(x))
        p.add_(1)
        self.position += 1
        return model.head(model.norm(x))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One query per sequence over the cache's valid slots, with the decode kernel."""
        if self.kernel == "eager":
            groups = q.shape[1] // k.shape[1]
            scores = q.float() @ repeat_kv(k, groups).float().transpose(-2, -1) / math.sqrt(q.shape[-1])
            scores = scores.masked_fill(~self.valid, float("-inf"))  # (B, Hq, 1, S)
            return (scores.softmax(-1) @ repeat_kv(v, groups).float()).to(q.dtype)
        if self.kernel == "flex":
            if q.dtype == torch.float64:
                raise KernelUnsupported("flex runs compiled kernels, which do not take fp64")
            try:
                return _compiled_flex()(q, k, v, score_mod=self._score_mod, enable_gqa=True)
            except NotImplementedError as err:
                raise KernelUnsupported(f"flex cannot decode this case: {str(err).splitlines()[0]}") from err
        backend = self.kernel[5:] if self.kernel.startswith("sdpa-") else None
        if backend == "flash":
            raise KernelUnsupported("sdpa-flash cannot decode over a cache: it takes no mask; use sdpa or flex")
        from torch.nn.attention import sdpa_kernel

        mask = self.valid.view(1, 1, 1, -1)
        if backend is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        try:
            with sdpa_kernel([SDPA_BACKENDS[backend]]):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        except RuntimeError as err:
            if "No available kernel" in str(err) or "No viable backend" in str(err):
                raise KernelUnsupported(f"sdpa-{backend} cannot decode this case") from err
            raise

    def looping_step(self, tokens: torch.Tensor) -> Callable[[], torch.Tensor]:
        """A step that starts over at the end of the context after ``new_tokens`` steps: the timed unit.

        Every pass does the same work as the first; the keys a later pass overwrites are the ones
        the earlier pass wrote, and the decoded tokens are the same (B, T) ``tokens``.
        """

        def run() -> torch.Tensor:
            t = self.next_in_pass()
            return self.step(tokens[:, t : t + 1])

        return run

    def next_in_pass(self) -> int:
        """The index (0..T-1) of the next token of a pass, starting a new pass after the last."""
        if self.position >= self.context + self.new_tokens:
            self.reset(self.context)
        return self.position - self.context


def _valid_score_mod(valid: torch.Tensor):
    def valid_slots(score, b, h, q_idx, kv_idx):
        return torch.where(valid[kv_idx], score, -float("inf"))

    return valid_slots


def graphed(decoder: Decoder, tokens: torch.Tensor, warmup: int = 3) -> Callable[[], torch.Tensor]:
    """The decode step captured in a CUDA graph: one launch per token instead of one per kernel."""
    static = torch.zeros(decoder.batch, 1, dtype=torch.long, device=tokens.device)
    start = decoder.position
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            decoder.step(static)
    torch.cuda.current_stream().wait_stream(side)
    decoder.reset(start)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = decoder.step(static)
    decoder.reset(start)

    def run() -> torch.Tensor:
        t = decoder.next_in_pass()
        static.copy_(tokens[:, t : t + 1])
        graph.replay()  # advances the device position; the host mirror below
        decoder.position += 1
        return logits

    return run
