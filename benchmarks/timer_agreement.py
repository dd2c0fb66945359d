"""Does sqabench's timer agree with one we did not write? The same forward, in one process, timed by
sqabench's ``time_repeats`` (the median of its repeats: CUDA events on a GPU, the wall clock on a CPU) and by
``torch.utils.benchmark.Timer.blocked_autorange`` (its median), on a GPU also by ``triton.testing.do_bench``;
the ratio of each to sqabench's, cell by cell.

    python benchmarks/timer_agreement.py [--seq 256,1k] [--variants mha,sqa,xsqa] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.utils.benchmark as benchmark

    from sqabench.device import resolve_device, time_repeats
    from sqabench.presets import get_preset
    from sqabench.speed.cells import Settings, plan
    from sqabench.speed.measure import model_workload
    from sqabench.units import parse_lengths
    from sqabench.variants import parse_variants

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", default="256,1k")
    parser.add_argument("--variants", default="mha,sqa,xsqa")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--scope", default="block")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--min-run-time", type=float, default=0.5, help="blocked_autorange's, in seconds")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    preset = get_preset(args.preset)
    dtype = "bf16" if device.type == "cuda" else "fp32"
    settings = Settings(device=str(device), dtype=dtype, scope=args.scope, warmup=2, repeats=args.repeats)
    cells = plan(parse_variants(args.variants, preset.n_heads), preset, parse_lengths(args.seq), settings, tokens=None,
                 batch=1)  # fmt: skip
    do_bench = None
    if device.type == "cuda":
        try:
            from triton.testing import do_bench
        except ImportError:
            pass
    print(f"{args.preset} {args.scope} on {device} ({dtype}); sqabench: the median of {args.repeats} repeats")
    print(f"{'cell':24} {'sqabench ms':>12} {'torch Timer ms':>15} {'ratio':>7}" + (
        f" {'do_bench ms':>12} {'ratio':>7}" if do_bench else ""))  # fmt: skip
    for cell in cells:
        work = model_workload(cell, device)
        work.first()
        for _ in range(2):
            work.step()
        ours = statistics.median(time_repeats(work.step, device, args.repeats))
        timer = benchmark.Timer(stmt="step()", globals={"step": work.step}, num_threads=torch.get_num_threads())
        theirs = timer.blocked_autorange(min_run_time=args.min_run_time).median * 1e3
        line = f"{cell.spec.name + ' n=' + str(cell.seq_len):24} {ours:12.4g} {theirs:15.4g} {theirs / ours:7.3f}"
        if do_bench:
            triton_ms = do_bench(work.step, warmup=25, rep=100, return_mode="median")
            line += f" {triton_ms:12.4g} {triton_ms / ours:7.3f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
