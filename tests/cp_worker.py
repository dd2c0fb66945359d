"""Run by tests/test_cp.py under torch.distributed.run (2 ranks, gloo): the split model against one process.

The logits of this rank's share of the sequence, computed with the sequence split across the ranks, equal
the logits a single process computes for the whole sequence (same weights, same tokens), sliced to the same
rows: the whole model (positions, RoPE, every layer) under the split. Two cases cover the mask's parts: SQA
(grouped heads, as GQA's) causal, where a rank's queries see every earlier share, and the windowed variant
as an encoder, where they see across both edges of the share. (test_cp's split sweep verifies the encoder
kernels of both against fp64 too.)
"""

import sys

import torch

from sqabench.encoder import build_encoder
from sqabench.kernels import compile_settings
from sqabench.presets import PRESETS
from sqabench.speed.cp import join, leave, split_model
from sqabench.variants import get_variant

N = 256  # two shares of 128: flex's block


def main() -> int:
    group = join("cpu", timeout_s=120)
    preset, worst = PRESETS["paper"], 0.0
    try:
        with compile_settings():
            for name, causal in (("sqa", True), ("swa-xsqa", False)):
                spec = get_variant(name)
                tokens = torch.randint(0, preset.vocab_size, (1, N), generator=torch.Generator().manual_seed(2))
                whole = build_encoder(spec, preset, "eager", causal)  # one process, the reference kernel
                split = build_encoder(spec, preset, "flex", causal)  # the same weights (the same seed)
                split_model(split, group, N)
                start, stop = group.shard(N)
                with torch.inference_mode():
                    expected = whole(tokens)[:, start:stop]
                    # the positions a real run's step uses: Group.positions, as split.py's step does
                    got = split(group.local(tokens, dim=1), group.positions(N))
                err = float((got - expected).norm() / expected.norm())
                print(f"rank {group.rank} {name} causal={causal} rel_err={err:.2e}", flush=True)
                worst = max(worst, err)
    finally:
        leave()
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
