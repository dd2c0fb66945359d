"""Run by tests/test_quality_job.py under torch.distributed.run: ``sqabench quality`` with one rank's first run
raising what an out-of-memory GPU raises (``SQABENCH_FAIL_RANK``), so that its failed row must reach rank 0's
file and the job go on."""

import os
import sys

import torch

import sqabench.quality.train as train_module
from sqabench.cli import main

if os.environ.get("RANK") == os.environ.get("SQABENCH_FAIL_RANK"):
    real, failed = train_module.train, []

    def train(*args, **kwargs):
        if not failed:
            failed.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (a test's)")
        return real(*args, **kwargs)

    train_module.train = train

sys.argv = ["sqabench", *sys.argv[1:]]
main()
