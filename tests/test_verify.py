"""Correct before fast: the fp64 verification catches wrong kernels, forward and backward."""

import pytest
import torch

from conftest import TINY, WINDOW
from reference import mask_by_loops
from sqabench.attention import SQAttention
from sqabench.kernels import Kernel
from sqabench.variants import VariantSpec
from sqabench.verify import KernelVerifyFailed, allowed_keys, verify_layer


def layer(kernel="sdpa", heads=(8, 4), window=WINDOW, causal=True) -> SQAttention:
    torch.manual_seed(0)
    return SQAttention(TINY.d_model, VariantSpec("t", 16, *heads, window), kernel=kernel, causal=causal)


@pytest.mark.parametrize("window", [None, 5, WINDOW])
@pytest.mark.parametrize("causal", [False, True])
def test_reference_mask_is_the_definition(window, causal):
    rows = torch.arange(70)
    assert torch.equal(allowed_keys(rows, 70, window, causal), mask_by_loops(70, window, causal))


@pytest.mark.parametrize("kernel", ["eager", "sdpa", "sdpa-math"])
def test_correct_kernels_pass_forward_and_backward(kernel):
    result = verify_layer(layer(kernel), batch=2, seq_len=300, grad=True)
    assert result.rel_err < 1e-5 and result.grad_rel_err < 1e-5
    assert result.kernel == (f"sdpa-{result.kernel[5:]}" if kernel == "sdpa" else kernel)


class Broken(Kernel):
    """A layer's kernel, broken on purpose by ``wrap(kernel, q, k, v)``."""

    def __init__(self, inner: Kernel, wrap) -> None:
        super().__init__(inner.window, inner.causal)
        self.inner, self.wrap, self.name = inner, wrap, inner.name

    def forward(self, q, k, v, valid=None):
        return self.wrap(self.inner, q, k, v)


def unwindowed(kernel, q, k, v):
    return type(kernel)(None, kernel.causal)(q, k, v)


BROKEN = {  # each takes (kernel, q, k, v) and calls the kernel wrongly
    "looks ahead": lambda op, q, k, v: op(q.flip(2), k.flip(2), v.flip(2)).flip(2),
    "no window": unwindowed,
    "wrong scale": lambda op, q, k, v: op(q * 1.1, k, v),
    "wrong head grouping": lambda op, q, k, v: op(q, k.roll(1, 1), v.roll(1, 1)),
    "NaN": lambda op, q, k, v: op(q, k, v) * float("nan"),
    "wrong in the last sequence only": lambda op, q, k, v: torch.cat([(o := op(q, k, v))[:-1], o[-1:].flip(-1)]),
}


def broken_layer(wrap, **kwargs) -> SQAttention:
    result = layer(**kwargs)
    result.kernel = Broken(result.kernel, wrap)
    return result


@pytest.mark.parametrize("broken", BROKEN)
def test_a_wrong_kernel_is_refused(broken):
    with pytest.raises(KernelVerifyFailed, match="output disagrees with the fp64 reference"):
        verify_layer(broken_layer(BROKEN[broken]), batch=2, seq_len=200)


def backward_off(factor: float):
    """A kernel call whose output is right and whose gradient wrt q is ``factor`` times too large: only the
    backward check can see it."""

    class Off(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * factor

    return lambda op, q, k, v: op(Off.apply(q), k, v)


def test_the_tolerance_is_the_dtypes_forward_and_backward():
    """fp32's tolerance is 1e-4 of the output's norm and twice that of the gradients': an output 3e-4 off is
    refused and one 3e-5 off passes; a gradient 6e-4 off is refused and one 6e-5 off passes."""

    def scaled(factor):
        return lambda op, q, k, v: op(q, k, v) * factor

    with pytest.raises(KernelVerifyFailed, match="output disagrees"):
        verify_layer(broken_layer(scaled(1 + 3e-4)), batch=1, seq_len=200)
    assert verify_layer(broken_layer(scaled(1 + 3e-5)), batch=1, seq_len=200).rel_err == pytest.approx(3e-5, rel=0.1)

    with pytest.raises(KernelVerifyFailed, match="gradient disagrees"):
        verify_layer(broken_layer(backward_off(1 + 6e-4)), batch=1, seq_len=200, grad=True)
    assert verify_layer(broken_layer(backward_off(1 + 6e-5)), batch=1, seq_len=200, grad=True).grad_rel_err < 2e-4


def test_the_first_and_last_queries_are_always_checked_and_others_sampled():
    """The edges of every mask: a kernel wrong only there is refused, whatever rows chance samples; and one
    right at the edges, wrong elsewhere, too."""
    for rows in (0, -1, slice(1, -1)):  # the first, the last, every row but those two

        def wrong_at(op, q, k, v, rows=rows):
            out = op(q, k, v).clone()
            out[:, :, rows] = out[:, :, rows].flip(-1)
            return out

        with pytest.raises(KernelVerifyFailed, match="output disagrees"):
            verify_layer(broken_layer(wrong_at), batch=1, seq_len=1000)


@pytest.mark.parametrize("seq_len", [200, 600])  # the full small-shape check, and the sampled dq at length
def test_a_wrong_backward_is_refused_in_train_mode_only(seq_len):
    wrong_backward = backward_off(1.05)  # the right output, a gradient 5% too large

    assert verify_layer(broken_layer(wrong_backward), batch=1, seq_len=seq_len).grad_rel_err is None  # fwd
    with pytest.raises(KernelVerifyFailed, match="gradient disagrees"):
        verify_layer(broken_layer(wrong_backward), batch=1, seq_len=seq_len, grad=True)


def test_verification_runs_in_the_steps_grad_mode():
    """A forward cell verifies under inference_mode, a train cell with autograd on, as their steps
    run: a kernel compiled for one mode is not compiled again for the other."""
    modes = []

    def spy(op, q, k, v):
        modes.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled(), q.requires_grad))
        return op(q, k, v)

    verify_layer(broken_layer(spy), batch=1, seq_len=200)
    assert modes == [(False, True, False)]
    modes.clear()
    verify_layer(broken_layer(spy), batch=1, seq_len=200, grad=True)
    assert modes[0] == (True, False, True)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "causal"])
def test_a_compiled_model_is_held_to_the_model_in_fp64(causal):
    """verify_model: the compiled model's logits against the model itself in fp64 with the reference's
    attention (its own mask, the layer's direction). A model off by 1% anywhere is refused."""
    from sqabench.encoder import build_encoder
    from sqabench.variants import get_variant
    from sqabench.verify import verify_model

    model = build_encoder(get_variant("sqa", window=WINDOW), TINY, "sdpa", causal=causal)
    tokens = torch.randint(0, TINY.vocab_size, (1, 100), generator=torch.Generator().manual_seed(1))
    assert verify_model(model, model, tokens) < 1e-5
    with pytest.raises(KernelVerifyFailed, match="the compiled model output disagrees"):
        verify_model(lambda t: model(t) * 1.01, model, tokens)
    flipped = build_encoder(get_variant("sqa", window=WINDOW), TINY, "sdpa", causal=not causal)
    flipped.load_state_dict(model.state_dict())
    with pytest.raises(KernelVerifyFailed):  # the other mask direction is another model
        verify_model(flipped, model, tokens)
