"""Correct before fast: a kernel's output (and gradients) on random inputs against an fp64 reference.

``verify_layer`` runs an attention layer's kernel module on the projections of random hidden states, of
the very shape the benchmark times, and compares sampled query rows (the edges always among them)
with an fp64 softmax over every visible key. Sampling keeps the reference cheap at 200k tokens.
For a train cell it also compares gradients: dq, dk and dv in full at a small shape (one sequence
of up to 256 tokens) and, when the timed shape is longer, dq of the sampled rows at the timed shape
(a query row's gradient depends on that row alone, so its fp64 reference stays cheap).

The reference writes its own mask from the definition in the README rather than calling the
kernels' ``visible()``: a wrong mask in the model cannot also be the yardstick it is held to.
``verify_decode`` decodes over the cache and holds the logits to the model itself run in fp64 with
``ReferenceKernel``, this module's attention, in place of every layer's kernel.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from sqabench.attention import SQAttention, rope_tables
from sqabench.decode import Decoder
from sqabench.dtypes import by_torch

SAMPLED_ROWS = 32
GRAD_SEQ_LEN = 256  # the small shape of the full gradient check
GRAD_TOLERANCE_FACTOR = 2.0  # gradients go through one more rounding than the output


class KernelVerifyFailed(RuntimeError):
    """A kernel's output disagrees with the fp64 reference: its timing would mean nothing."""


@dataclass(frozen=True)
class Verification:
    kernel: str  # what ran, e.g. sdpa-flash
    rel_err: float  # output, sampled rows
    grad_rel_err: float | None = None  # the worst of the gradient checks; None when not checked
    note: str = ""  # worth knowing about what ran


def sample_rows(seq_len: int, count: int = SAMPLED_ROWS, seed: int = 0) -> torch.Tensor:
    """First, last and random query rows, sorted and unique."""
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randint(0, seq_len, (max(count - 2, 0),), generator=generator)
    return torch.cat([torch.tensor([0, seq_len - 1]), picked]).unique()


def allowed_keys(rows: torch.Tensor, seq_len: int, window: int | None, causal: bool) -> torch.Tensor:
    """(R, N) mask: row i sees key j iff |i-j| <= w (encoder) or 0 <= i-j <= w (causal); all/earlier without w."""
    i = rows[:, None]
    j = torch.arange(seq_len, device=rows.device)[None, :]
    behind = i - j  # how far key j lies behind query i
    mask = torch.ones(len(rows), seq_len, dtype=torch.bool, device=rows.device)
    if causal:
        mask &= behind >= 0
    if window is not None:
        mask &= (behind <= window) & (behind >= -window)
    return mask


def reference_rows(
    q_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor, window: int | None, causal: bool
) -> torch.Tensor:
    """fp64 attention of query ``rows``: q_rows (B, Hq, R, Dh), k and v (B, Hkv, N, Dh) -> (B, Hq, R, Dh).

    One key/value head at a time, with its query heads stacked, so K and V are never repeated.
    Differentiable in all three inputs.
    """
    B, Hq, R, Dh = q_rows.shape
    Hkv, N = k.shape[1], k.shape[2]
    groups = Hq // Hkv
    allowed = allowed_keys(rows.to(q_rows.device), N, window, causal)  # (R, N)
    outs = []
    for h in range(Hkv):
        q_h = q_rows[:, h * groups : (h + 1) * groups].double()  # (B, G, R, Dh): query heads of kv head h
        k_h, v_h = k[:, h, None].double(), v[:, h, None].double()  # (B, 1, N, Dh)
        scores = q_h @ k_h.transpose(-2, -1) / math.sqrt(Dh)  # (B, G, R, N)
        scores = scores.masked_fill(~allowed, float("-inf"))
        outs.append(scores.softmax(dim=-1) @ v_h)  # (B, G, R, Dh)
    return torch.cat(outs, dim=1)  # (B, Hq, R, Dh)


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    err = float((got.detach().double() - ref.detach().double()).norm() / ref.detach().double().norm())
    return err if math.isfinite(err) else math.inf


def _inputs(layer: SQAttention, batch: int, seq_len: int, rope_base: float, grad: bool, seed: int):
    """q (B, Hq, N, Dh), k, v (B, Hkv, N, Dh) in the layouts the model hands its kernel."""
    weight = layer.wq.weight
    generator = torch.Generator(device=weight.device).manual_seed(seed)
    x = torch.randn(batch, seq_len, weight.shape[1], generator=generator, device=weight.device, dtype=weight.dtype)
    rope = rope_tables(seq_len, layer.head_dim, rope_base, weight.device, weight.dtype)
    with torch.no_grad():
        q, k, v = layer.qkv(x, rope)
    return tuple(t.requires_grad_(grad) for t in (q, k, v))


def verify_layer(
    layer: SQAttention, batch: int, seq_len: int, *, grad: bool = False, rope_base: float = 10_000.0, seed: int = 0
) -> Verification:
    """Run ``layer``'s kernel on random inputs; raise ``KernelVerifyFailed`` past the dtype's tolerance.

    ``grad`` (a train cell): the forward runs with autograd on, as the timed step does (so that
    nothing compiles again later), and the gradients are checked too. Otherwise it runs under
    ``inference_mode``, as a forward step does.
    """
    dtype = by_torch(layer.wq.weight.dtype)
    window, causal, kernel = layer.spec.window, layer.causal, layer.kernel
    rows = sample_rows(seq_len, seed=seed)
    picked = sorted({0, batch - 1})  # first and last sequence
    grad_errors = []
    with nullcontext() if grad else torch.inference_mode():
        q, k, v = _inputs(layer, batch, seq_len, rope_base, grad, seed)
        out = kernel(q, k, v)  # (B, Hq, N, Dh)
        label = kernel.ran(q, k, v)
        with torch.no_grad():
            ref = reference_rows(q[picked][:, :, rows], k[picked], v[picked], rows, window, causal)
        rel_err = _rel_err(out[picked][:, :, rows.to(out.device)], ref)
        if grad:
            if seq_len > GRAD_SEQ_LEN:
                grad_errors.append(_sampled_dq_error(q, k, v, out, rows, picked, window, causal, seed))
            grad_errors.append(_full_grad_error(layer, min(seq_len, GRAD_SEQ_LEN), rope_base, seed))
    _judge(label, "output", rel_err, dtype.tolerance)
    grad_rel_err = max(grad_errors) if grad_errors else None
    if grad_rel_err is not None:
        _judge(label, "gradient", grad_rel_err, dtype.tolerance * GRAD_TOLERANCE_FACTOR)
    return Verification(kernel=label, rel_err=rel_err, grad_rel_err=grad_rel_err)


def _judge(kernel: str, what: str, err: float, tolerance: float) -> None:
    if not err <= tolerance:
        raise KernelVerifyFailed(
            f"{kernel} {what} disagrees with the fp64 reference: rel err {err:.2e} > {tolerance:.0e}"
        )


def _sampled_dq_error(q, k, v, out, rows, picked, window, causal, seed) -> float:
    """dq of the sampled rows after a backward of the whole kernel, against fp64 autograd."""
    generator = torch.Generator(device=out.device).manual_seed(seed + 1)
    grad_out = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
    out.backward(grad_out)
    device_rows = rows.to(out.device)
    q_rows = q.detach()[picked][:, :, device_rows].double().requires_grad_()
    ref = reference_rows(q_rows, k.detach()[picked], v.detach()[picked], rows, window, causal)
    ref.backward(grad_out[picked][:, :, device_rows].double())
    return _rel_err(q.grad[picked][:, :, device_rows], q_rows.grad)


def _full_grad_error(layer: SQAttention, n: int, rope_base: float, seed: int) -> float:
    """dq, dk and dv of the kernel at a small shape (1 x n), in full, against fp64 autograd: the worst of the three."""
    q, k, v = _inputs(layer, 1, n, rope_base, True, seed + 2)
    out = layer.kernel(q, k, v)
    generator = torch.Generator(device=out.device).manual_seed(seed + 3)
    grad_out = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
    out.backward(grad_out)
    ref_inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    rows = torch.arange(n)
    ref = reference_rows(*ref_inputs, rows, layer.spec.window, layer.causal)
    ref.backward(grad_out.double())
    return max(_rel_err(t.grad, r.grad) for t, r in zip((q, k, v), ref_inputs))


# --- decode ----------------------------------------------------------------------------------------

DECODE_CONTEXT = 2048  # the decode check's context, at most: the fp64 reference is a full forward
DECODE_TOKENS = 8
DECODE_BATCH = 2
DECODE_TOLERANCE_FACTOR = 2.0  # logits go through every layer, not one attention


class ReferenceKernel(nn.Module):
    """This module's fp64 attention as a kernel module: ``reference_rows`` over every query row, in chunks.

    Put in place of a model's kernels, it makes the model its own fp64 yardstick: the same weights,
    projections, norms and feed-forward, attention that shares nothing with the kernels.
    """

    def __init__(self, window: int | None, causal: bool, chunk: int = 256) -> None:
        super().__init__()
        self.window, self.causal, self.chunk = window, causal, chunk

    def forward(self, q, k, v, valid=None):
        if valid is not None:
            raise NotImplementedError("the reference attends over whole sequences, not a cache")
        chunks = torch.arange(q.shape[2]).split(self.chunk)
        outs = [reference_rows(q[:, :, r.to(q.device)], k, v, r, self.window, self.causal) for r in chunks]
        return torch.cat(outs, dim=2)  # (B, Hq, N, Dh)


def reference_logits(model, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """fp64 logits of ``model`` at positions ``rows``: the model itself, in fp64, with ``ReferenceKernel`` (the
    layer's own window and mask direction) as every layer's attention."""
    import copy

    ref = copy.deepcopy(model).double()
    for block in ref.blocks:
        block.attn.kernel = ReferenceKernel(block.attn.spec.window, block.attn.causal)
    return ref(tokens, logits_at=rows.to(tokens.device))


def verify_model(compiled, model, tokens: torch.Tensor) -> float:
    """A compiled model's logits on (1, n) ``tokens`` against the model itself in fp64 with ``ReferenceKernel``;
    raise ``KernelVerifyFailed`` past twice the dtype's tolerance (logits pass every layer). Returns the error."""
    with torch.no_grad():
        got = compiled(tokens)  # (1, n, V): a shape of its own, compiled here, before the timed calls
        ref = reference_logits(model, tokens, torch.arange(tokens.shape[1]))
    err = _rel_err(got, ref)
    tolerance = by_torch(model.embed.weight.dtype).tolerance * DECODE_TOLERANCE_FACTOR
    _judge("the compiled model", "output", err, tolerance)
    return err


def verify_decode(model, kernel: str, batch: int, context: int, new_tokens: int, seed: int = 0) -> Verification:
    """Decode ``new_tokens`` after ``context`` tokens over the cache; their logits must match the fp64 full
    causal forward at those positions. At most DECODE_CONTEXT tokens of context, DECODE_TOKENS new tokens
    and DECODE_BATCH sequences: a windowed cache still wraps around its ring many times."""
    n, t, b = min(context, DECODE_CONTEXT), min(new_tokens, DECODE_TOKENS), min(batch, DECODE_BATCH)
    device = model.embed.weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = torch.randint(0, model.preset.vocab_size, (b, n + t), generator=generator, device=device)
    with torch.inference_mode():
        decoder = Decoder(model, b, n, t, kernel)
        decoder.prefill(tokens[:, :n])
        got = torch.cat([decoder.step(tokens[:, n + i : n + i + 1]) for i in range(t)], dim=1)  # (b, t, V)
        label = decoder.backend()
    with torch.no_grad():
        ref = reference_logits(model, tokens, torch.arange(n, n + t))
    err = _rel_err(got, ref)
    tolerance = by_torch(model.embed.weight.dtype).tolerance * DECODE_TOLERANCE_FACTOR
    _judge(f"decode with {decoder.kernel.name}", "output", err, tolerance)
    return Verification(kernel=label, rel_err=err)
