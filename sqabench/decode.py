"""Autoregressive decode with a preallocated KV cache: where SQA does not help.

A ``Decoder`` drives a causal ``Encoder`` through its own forward: ``prefill`` runs the context
through the model with every layer's ``KVCache`` in prefill mode (the caches keep the keys and
values; only the last position's logits are computed), and each ``step`` feeds one token per
sequence with the caches in decode mode (each layer writes its key and value and attends to the
cache). The cache is allocated once, at its final size, (L, B, Hkv, S, Dh): S = context + new
tokens, or, for a windowed variant, the w + 1 slots its last query can see, used as a ring (slot =
position mod S; RoPE is applied before caching, so a key's slot does not matter to attention).
Nothing is allocated or concatenated inside a step: the position lives in a device tensor, the new
key and value go in with ``index_copy_``, and the valid slots are a mask, so one step can be
captured in a CUDA graph.

Decode attention kernels (``sqabench.kernels``, one query per sequence over S slots, invalid slots
masked): ``eager``, ``sdpa``/``sdpa-<backend>`` (a boolean mask; flash takes no mask, so a pinned
flash is ``skipped``) and ``flex`` (flex's decoding path, the mask as a ``score_mod``). ``auto``
is sdpa.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sqabench.attention import Cursor, KVCache
from sqabench.encoder import Encoder
from sqabench.flops import cache_slots
from sqabench.kernels import build_kernel, decode_kernel


class Decoder:
    """Prefill and one-token steps of ``model`` over a preallocated cache. Run under ``inference_mode``."""

    def __init__(self, model: Encoder, batch: int, context: int, new_tokens: int, kernel: str) -> None:
        if not model.causal:
            raise ValueError("decode needs a causal model")
        first = model.blocks[0].attn
        self.model, self.batch, self.context, self.new_tokens = model, batch, context, new_tokens
        self.kernel = build_kernel(decode_kernel(kernel), None, True)  # reads the cache's valid slots
        self.slots = cache_slots(context, new_tokens, model.spec.window)
        weight = first.wq.weight
        device, dtype = weight.device, weight.dtype
        allocated = self.kernel.allocated_slots(self.slots, device)
        shape = (len(model.blocks), batch, model.spec.n_kv_heads, allocated, first.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, Hkv, S, Dh)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.cursor = Cursor(self.slots, allocated, device, context)
        self.caches = [KVCache(self.k[i], self.v[i], self.cursor, self.kernel) for i in range(len(model.blocks))]

    @property
    def position(self) -> int:
        return self.cursor.position

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the (B, N) context through the model, causal; fill the cache; return the last position's
        (B, 1, V) logits: the only ones generation uses."""
        self.cursor.decoding = False
        logits = self.model(tokens, caches=self.caches, logits_at=slice(-1, None))
        self.reset(tokens.shape[1])
        return logits

    def reset(self, position: int) -> None:
        """Make ``position`` the next one decoded (the cache's earlier contents stay)."""
        self.cursor.reset(position)

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """One new token per sequence, (B, 1) -> (B, 1, V) logits; advances the position."""
        cursor = self.cursor
        cursor.decoding = True
        cursor.begin_step()
        logits = self.model(token, positions=cursor.pos.view(1), caches=self.caches)
        cursor.end_step()
        cursor.position += 1
        return logits

    def backend(self) -> str:
        """What the decode kernel runs on this cache's shapes (for unpinned SDPA: the dispatcher's pick)."""
        attn = self.model.blocks[0].attn
        q = torch.empty(self.batch, attn.spec.n_q_heads, 1, attn.head_dim, device=self.k.device, dtype=self.k.dtype)
        return self.kernel.ran(q, self.k[0], self.v[0], self.cursor.valid)

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
        decoder.cursor.position += 1
        return logits

    return run
