"""``sqabench quality`` as a torchrun job: each rank trains its share of the (variant, seed) runs (``plan.share``,
the rule ``--shard`` uses) on its own device (``LOCAL_RANK``); rank 0 writes the one results file and curves file
as rows arrive from the ranks through the process group (no shared filesystem is assumed), shows every rank's
progress, and prints the tables. PyTorch's own engine throughout: ``torch.distributed`` point-to-point messages on
a gloo group of their own, each a JSON object in a uint8 tensor after its size.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from datetime import timedelta

JOB_TIMEOUT = timedelta(days=30)  # the start's broadcast waits for every rank to load its data: never the limit


def job() -> tuple[int, int] | None:
    """(rank, world size) of the torchrun job this process is a rank of; None outside one, or in a job of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return None
    return int(os.environ["RANK"]), world


class Job:
    """This rank's part in the job: its rank, the world, and the message group (rows, curves, progress)."""

    def __init__(self, device_type: str) -> None:
        import torch.distributed as dist

        self.dist = dist
        if not dist.is_initialized():
            dist.init_process_group("gloo" if device_type == "cpu" else "cuda:nccl,cpu:gloo", timeout=JOB_TIMEOUT)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.messages = dist.new_group(backend="gloo", timeout=JOB_TIMEOUT)
        self._sent: list = []

    def share(self, value):
        """Rank 0's ``value`` on every rank (what ``--resume`` kept, the run's id)."""
        box = [value]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def send(self, message: dict) -> None:
        """A message to rank 0, without waiting for it to be read (the tensors are kept until ``close``)."""
        import torch

        data = json.dumps(message).encode()
        size = torch.tensor([len(data)], dtype=torch.int64)
        body = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        self._sent += [(self.dist.isend(size, 0, group=self.messages, tag=1), size),
                       (self.dist.isend(body, 0, group=self.messages, tag=2), body)]  # fmt: skip

    def close(self) -> None:
        """This rank is done: its last message says so, every message is delivered, the group is left."""
        if self.rank:
            self.send({"kind": "done", "rank": self.rank})
            for work, _ in self._sent:
                work.wait()
        self.dist.destroy_process_group()

    def listen(self) -> "Inbox":
        """Rank 0: the messages of every other rank, received on a thread of their own, read from a queue."""
        return Inbox(self)


class Inbox:
    """Rank 0's receiver: a thread takes each message from any rank (its size, then its body from the same
    rank) into a queue until every other rank has said it is done; ``drain`` hands what has come to the caller."""

    def __init__(self, job: Job) -> None:
        self.job, self.queue = job, queue.Queue()
        self.thread = threading.Thread(target=self._receive, name="sqabench-inbox", daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        import torch

        dist, done = self.job.dist, 0
        while done < self.job.world - 1:
            size = torch.zeros(1, dtype=torch.int64)
            source = dist.recv(size, src=None, group=self.job.messages, tag=1)
            body = torch.empty(int(size), dtype=torch.uint8)
            dist.recv(body, src=source, group=self.job.messages, tag=2)
            message = json.loads(bytes(body.numpy()))
            done += message["kind"] == "done"
            self.queue.put((source, message))

    def drain(self, handle, wait: bool = False) -> None:
        """``handle(rank, message)`` for every message come so far; with ``wait``, until every rank is done."""
        while True:
            try:
                handle(*self.queue.get(timeout=0.1 if wait else 0))
            except queue.Empty:
                if not wait or not self.thread.is_alive() and self.queue.empty():
                    return
