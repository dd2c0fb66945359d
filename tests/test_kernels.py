"""Kernel modules: chosen once, named masks, block masks that serve forward and train cells alike."""

import pytest
import torch

from conftest import SEQ, WINDOW
from sqabench.kernels import FlexKernel, block_mask, build_kernel, mask_mod, mask_name


@pytest.mark.parametrize(
    "window, causal, name",
    [(None, False, "full"), (None, True, "causal"), (128, False, "sliding_window_128"),
     (48, True, "causal_sliding_window_48")],
)  # fmt: skip
def test_mask_functions_are_named_for_what_they_compute(window, causal, name):
    assert mask_name(window, causal) == name and mask_mod(window, causal).__name__ == name
    assert f"{name}" in repr(build_kernel("flex", window, causal))


@pytest.mark.slow
def test_a_block_mask_first_built_by_a_forward_cell_serves_a_train_cell():
    """The mask cache is filled in whatever grad mode its first caller is in. A mask of inference
    tensors, cached by a forward cell, fails a later train cell: "Inference tensors cannot be saved
    for backward". Masks are built outside inference mode."""
    q, k, v = torch.randn(3, 1, 4, SEQ, 16)  # three tensors: torch 2.11's CPU flex refuses one buffer for all
    block_mask.cache_clear()  # this test's forward builds the mask, whatever ran before it
    with torch.inference_mode():
        FlexKernel(WINDOW, True)(q, k, v)  # a forward cell (or the fwd verification) builds the mask
    cached = block_mask(SEQ, WINDOW, True, "cpu")
    tensors = [t for t in cached.as_tuple() if isinstance(t, torch.Tensor)]
    assert tensors and not any(t.is_inference() for t in tensors)
    x = torch.ones(tensors[0].shape, requires_grad=True)
    (x * tensors[0]).sum().backward()  # autograd saves the mask's tensor, as flex's backward does
    assert x.grad is not None
