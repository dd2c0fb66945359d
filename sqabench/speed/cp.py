"""Context parallelism: one sequence split across processes, on torch's own distributed engine.

Everything here wraps torch's experimental, partly private context-parallel API
(``torch.distributed.tensor.experimental``): its FlexAttention path, where each rank keeps its
contiguous shard of the queries and an ``_ContextParallel(attention_type=FLEX)`` pre-hook
all-gathers the keys and values (an autograd-aware collective), and ``_context_parallel_shard``
turns a global ``BlockMask`` into the rank's own, with its query indices offset. The all-gather
costs little for SQA's few key/value heads. Its one constraint: every rank's share of the
sequence must be a whole number of flex's 128-token blocks.

``check_available`` runs at start-up and names what a torch lacks; nothing else imports the
private names. Processes are started by torch's own launcher (``torch.distributed.run``) and
rendezvous through its store; collectives run on gloo (CPU) or NCCL (GPU), with a timeout so that a
rank that dies does not hang the others forever.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from sqabench.device import time_repeats
from sqabench.environment import STARTED_ENV, process_age_s
from sqabench.errors import ConfigError
from sqabench.kernels import FlexKernel, block_mask
from sqabench.speed.cells import collective_backend

BLOCK = 128  # flex's block: each rank's share of the sequence must be a multiple of it
PATH = "flex"  # the context-parallel path sqabench runs (the SDPA ring path is not implemented)
APIS = (
    ("torch.distributed.tensor.experimental._attention", "_ContextParallel"),
    ("torch.distributed.tensor.experimental._attention", "_context_parallel_shard"),
    ("torch.distributed.tensor.parallel", "parallelize_module"),
    ("torch.distributed.device_mesh", "init_device_mesh"),
    ("torch.distributed.distributed_c10d", "_get_default_store"),
)


def _api(module: str, name: str):
    return getattr(importlib.import_module(module), name)


def check_available() -> None:
    """Fail as a usage error, naming the missing piece, when this torch lacks the context-parallel API."""
    if not dist.is_available():
        raise ConfigError(f"--cp needs torch.distributed, which this torch {torch.__version__} lacks")
    for module, name in APIS:
        try:
            _api(module, name)
        except (ImportError, AttributeError):
            raise ConfigError(
                f"--cp needs {module}.{name} (torch's experimental context parallelism, torch >= 2.11); "
                f"this torch {torch.__version__} lacks it"
            ) from None
    if not hasattr(_api(*APIS[0]).AttentionType, "FLEX"):
        raise ConfigError(f"--cp needs the FlexAttention path of _ContextParallel; torch {torch.__version__} lacks it")


def job_size() -> int:
    """WORLD_SIZE when this process is a rank of a torchrun job, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_request(
    world: int, lengths: list[int], device: torch.device, mode: str, scope: str, kernel: str, launching: bool = True
) -> None:
    """Everything ``--cp`` cannot run, found before any process starts (the same checks on every rank).

    ``launching``: sqabench starts the ranks on this machine, so they must fit it (a GPU each; no more
    CPU processes than cores). Under torchrun the job may span nodes: the launcher decides.
    """
    check_available()
    if mode != "fwd":
        raise ConfigError(f"--cp runs --mode fwd only (this run is --mode {mode})")
    if scope != "model":
        raise ConfigError(f"--cp splits the whole model's sequence; --scope {scope} does not apply")
    if kernel not in ("auto", "flex"):  # (best too: every rank must run one kernel)
        raise ConfigError(f"--cp runs torch's FlexAttention context-parallel path: --kernel auto or flex, not {kernel}")
    step = world * BLOCK
    bad = [n for n in lengths if n % step]
    if bad:
        raise ConfigError(
            f"--cp {world}: length {bad[0]} is not a multiple of {step} ({world} ranks x flex's {BLOCK}-token "
            f"block); lengths that work: {step}, {2 * step}, ... e.g. {max(step, bad[0] // step * step)}"
        )
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if launching and world > visible:
            raise ConfigError(f"--cp {world} needs {world} GPUs on one node; this one has {visible}")
        if not dist.is_nccl_available():
            raise ConfigError("--cp on CUDA needs the NCCL backend, which this torch lacks")
    else:
        if not dist.is_gloo_available():
            raise ConfigError("--cp on the CPU needs the gloo backend, which this torch lacks")
        cores = os.cpu_count() or 1
        if launching and world > cores:
            raise ConfigError(f"--cp {world} --device cpu starts {world} processes but this machine has {cores} cores; "
                              f"choose --cp 2..{cores}, or run under torchrun across machines")  # fmt: skip


def launch(world: int, argv: list[str]) -> int:
    """Start ``world`` ranks of ``sqabench <argv>`` on this machine through torch's own launcher.

    The ranks run ``python -m sqabench`` with ``PYTHONSAFEPATH`` set, so that the current directory
    is not put first on their path: a folder named ``sqabench`` there (the parent of a clone) would
    shadow the package.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
               "-m", "sqabench", *argv]  # fmt: skip
    # Ctrl-C reaches the terminal's process group: this process and the launcher, not the ranks (the launcher
    # starts each in a session of its own). The launcher is kept out of it (SIGINT ignored, and not among the
    # signals it handles, or it raises a traceback); this process hands SIGINT to the ranks, which take it
    # back (``interruptible``), finish as an interrupted sweep does, and end the job cleanly.
    handled = "SIGTERM,SIGHUP"  # torchrun's --signals-to-handle, less SIGINT (its env form, and the agent's own)
    env = {
        **os.environ,
        "PYTHONSAFEPATH": "1",
        LAUNCHED: "1",
        "PET_SIGNALS_TO_HANDLE": handled,
        "TORCHELASTIC_SIGNALS_TO_HANDLE": handled,
        STARTED_ENV: str(time.time() - process_age_s()),
    }  # the ranks' estimates count the launcher's start
    child = subprocess.Popen(command, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        return child.wait()
    except KeyboardInterrupt:
        for rank in children(child.pid):
            try:
                os.kill(rank, signal.SIGINT)
            except ProcessLookupError:  # already gone
                pass
        child.wait()  # the ranks write what they finished and say so; then the launcher ends
        return 130


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


LAUNCHED = "SQABENCH_CP_LAUNCHED"  # set for the ranks that ``launch`` starts


_interrupted = False  # a rank's SIGINT, remembered: Python drops a KeyboardInterrupt raised inside a finalizer


def _on_sigint(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _unraisable(hook):
    """``sys.unraisablehook`` less the KeyboardInterrupt a finalizer swallowed (``_interrupted`` keeps it)."""

    def heard(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)

    return heard


def interruptible() -> bool:
    """In a rank started by ``launch``: take SIGINT back (the launcher passed it on ignored). True there.

    A SIGINT that lands while the interpreter runs a finalizer (a weakref callback of the compiler's, say)
    raises there, and Python drops it with a traceback on stderr; the rank would go on. So the handler also
    remembers it, that traceback is not printed, and ``stop_if_interrupted`` raises it again at the next
    phase of a cell."""
    if os.environ.get(LAUNCHED) != "1":
        return False
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _unraisable(sys.unraisablehook)
    return True


def stop_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a SIGINT this rank heard but Python dropped (``interruptible``)."""
    if _interrupted:
        raise KeyboardInterrupt


@dataclass
class Group:
    """This rank of a context-parallel job."""

    rank: int
    world: int
    backend: str
    device: torch.device
    mesh: object  # DeviceMesh
    store: object  # a c10d store shared by the job

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, seq_len: int) -> tuple[int, int]:
        """[start, stop) of this rank's contiguous share of the sequence."""
        size = seq_len // self.world
        return self.rank * size, (self.rank + 1) * size

    def local(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """This rank's share of a whole-sequence tensor along ``dim``."""
        start, stop = self.shard(tensor.shape[dim])
        return tensor.narrow(dim, start, stop - start).contiguous()

    def positions(self, seq_len: int) -> torch.Tensor:
        """The positions of this rank's share (what its RoPE rotates by): start..stop-1."""
        start, stop = self.shard(seq_len)
        return torch.arange(start, stop, device=self.device)

    def post(self, key: str, value: object) -> None:
        self.store.set(key, json.dumps(value))

    def fetch(self, key: str) -> object:
        """The value posted under ``key``, once it is there."""
        self.store.wait([key])
        return json.loads(self.store.get(key))

    def collect(self, key: str) -> list[object]:
        """Every rank's value posted under ``key``/<rank>, waiting for the slow ones."""
        keys = [f"{key}/{rank}" for rank in range(self.world)]
        self.store.wait(keys)
        return [json.loads(self.store.get(k)) for k in keys]


def join(device_type: str, timeout_s: float) -> Group:
    """Join the torchrun job this process belongs to: process group, device mesh, shared store."""
    backend = collective_backend(device_type)
    device = torch.device("cpu")
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    world = dist.get_world_size()
    mesh = _api("torch.distributed.device_mesh", "init_device_mesh")(device_type, (world,), mesh_dim_names=("cp",))
    store = dist.PrefixStore("sqabench", _api("torch.distributed.distributed_c10d", "_get_default_store")())
    return Group(dist.get_rank(), world, backend, device, mesh, store)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def split_model(model, group: Group, seq_len: int) -> None:
    """Make every attention layer of ``model`` attend over the whole sequence from this rank's share.

    Each layer's kernel becomes a flex kernel with this rank's shard of the global block mask, wrapped
    by ``_ContextParallel``: its pre-hook replaces k and v by their all-gather over the mesh.
    """
    spec, causal = model.spec, model.causal
    whole = block_mask(seq_len, spec.window, causal, str(group.device))  # the global mask
    (local,) = _api(*APIS[1])(group.mesh, [whole], [2])  # this rank's rows, query indices offset
    style = _api(*APIS[0])
    parallelize = _api(*APIS[2])
    for layer in model.blocks:
        kernel = FlexKernel(spec.window, causal, mask=local)
        parallelize(kernel, group.mesh, style(seq_dim=2, attention_type=style.AttentionType.FLEX))
        layer.attn.kernel = kernel


def link_rate(group: Group, megabytes: int = 16, repeats: int = 5) -> float:
    """Bytes per second one rank receives in an all-gather over the group: the communication ceiling."""
    numel = megabytes * 2**20 // 4
    local = torch.ones(numel, device=group.device)
    gathered = [torch.empty(numel, device=group.device) for _ in range(group.world)]

    def gather() -> None:
        dist.all_gather(gathered, local)

    gather()  # warm-up: the first collective sets up the connections
    best_ms = min(time_repeats(gather, group.device, repeats, before_each=dist.barrier))  # the best counts
    return (group.world - 1) * numel * 4 / (best_ms / 1e3)
