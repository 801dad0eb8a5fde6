"""The process group of a data-parallel launch (``accelerate launch --num_processes N -m frkit run ...``), and the
process's device: the one owner of process and device state (``get_accelerator()``, ``device()``).

One process (``N == 1``, the plain ``frkit run``) is the default and every helper here is then a no-op, so
single-process runs compute exactly what they did before. With N processes (gloo on CPU, NCCL on GPUs):

- ``is_main()`` / ``barrier()``: only the main process writes the run folder; the others wait at barriers.
- ``average_gradients(params)``: after each backward, the trainable parameters' gradients are averaged over
  the processes (one all-reduce of one flat tensor), so every process takes the same optimiser step on the
  global batch (its own shard's batch on each process). A parameter keeps ``grad is None`` when it got no
  gradient on any process, as it would in one process (AdamW then skips it).
- ``all_reduce_sum(tensors)``: sums of a dict of tensors (the Fisher's per-sample sums, Eq. 3, and its count).
- ``ShardedBatches``: process r takes global batches r, r + N, r + 2N, ... of a batch sampler; for training the
  last round is padded by repeating the first batches, so every process runs the same number of steps and no
  process waits for ever in an all-reduce (accelerate's ``even_batches``).
- ``gather_rows(rows, scores, n)``: every process's (row, score) pairs gathered with accelerate's
  ``gather_for_metrics``; the padding each process adds to reach the same length is dropped by its row -1.
- ``agree(what, value)``: the main process's value (parameters, data fingerprint) is broadcast and compared:
  a launch whose processes disagree stops naming the difference.
- ``get_accelerator()`` / ``device()``: accelerate's device placement for this process, and the device that models
  and batches go to.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch
from torch.utils.data import Sampler

from frkit.errors import FrkitInputError


def cpu_launch() -> bool:
    """Several processes on a machine without CUDA (``torchrun --nproc_per_node N`` on CPUs): accelerate must be told
    ``cpu=True`` to make them one gloo group; without it each process would train alone, on all the data."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _state():
    from accelerate import PartialState

    return PartialState(cpu=cpu_launch())  # the one shared state; get_accelerator() below agrees on cpu


@cache
def get_accelerator():
    """The process's Accelerator (device placement). Its own mixed precision stays off: accelerate would patch
    the model's forward with autocast for good, so the Fisher and the scores after training would run in
    bf16 too; frkit puts autocast around the training step and evaluation only (``frkit/precision.py``)."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision="no", cpu=cpu_launch())


def device() -> torch.device:
    """Where this process's models and batches live: the accelerator's device, except that a multi-process CPU
    launch's ``cpu:<index>`` is plain ``cpu`` (safetensors refuses to load onto ``cpu:<index>``; on a CPU the index
    names no separate memory)."""
    placed = get_accelerator().device
    return torch.device("cpu") if placed.type == "cpu" else placed


def world_size() -> int:
    return _state().num_processes


def rank() -> int:
    return _state().process_index


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


@contextmanager
def main_first():
    """The main process runs the block first (it may write a cache: a trimmed vocabulary, a damaged checkpoint set
    aside), the others after it, reading what it wrote."""
    if world_size() == 1:
        yield
        return
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_reduce_sum(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Element-wise sums over the processes, in place and returned (one all-reduce per tensor)."""
    if world_size() > 1:
        for t in tensors.values():
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return tensors


def mean_over_processes(value: float) -> float:
    if world_size() == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return float(t.item()) / world_size()


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of each parameter's gradient over the processes (what DDP does), as one flat all-reduce.

    A flag per parameter travels with the gradients: a parameter without a gradient on every process stays
    ``grad is None``; one with a gradient on some process gets the mean with zeros for the others."""
    n = world_size()
    if n == 1 or not params:
        return
    device = params[0].device
    parts = [torch.tensor([0.0 if p.grad is None else 1.0], device=device) for p in params]
    parts += [
        (torch.zeros_like(p, dtype=torch.float32) if p.grad is None else p.grad.float()).reshape(-1) for p in params
    ]
    flat = torch.cat(parts)
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
    flags, offset = flat[: len(params)], len(params)
    for i, p in enumerate(params):
        size = p.numel()
        if flags[i] > 0:
            mean = (flat[offset : offset + size] / n).view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = mean
            else:
                p.grad.copy_(mean)
        offset += size


class ShardedBatches(Sampler[list[int]]):
    """Process ``rank``'s share of a batch sampler: global batches rank, rank + world, ... (module docstring).

    ``pad``: the last round is completed with the first batches again, so every process yields
    ``ceil(len(batches) / world)`` batches (training). Without it (evaluation) each batch is scored once."""

    def __init__(self, batches: Sampler[list[int]], rank: int, world: int, pad: bool):
        self.batches, self.rank, self.world, self.pad = batches, rank, world, pad

    def __len__(self) -> int:
        total = len(self.batches)
        if self.pad:
            return math.ceil(total / self.world)
        return len(range(self.rank, total, self.world))

    def __iter__(self) -> Iterator[list[int]]:  # a generator: the batches are drawn at the first next(), as a
        every = list(self.batches)  # DataLoader's own sampler is (after it drew its worker seed)
        if self.pad and every and len(every) % self.world:
            every += [every[i % len(every)] for i in range(self.world - len(every) % self.world)]
        yield from every[self.rank :: self.world]


def gather_rows(rows: np.ndarray, scores: np.ndarray, n_rows: int) -> np.ndarray:
    """Scores of all ``n_rows`` rows, each process having scored the rows ``rows``; back in table order.

    Every process pads its (row, score) pairs to the longest share with row -1; accelerate's
    ``gather_for_metrics`` concatenates them and the padding is dropped. Every row must come back once."""
    longest = torch.tensor([len(rows)], dtype=torch.long)
    torch.distributed.all_reduce(longest, op=torch.distributed.ReduceOp.MAX)
    longest = int(longest.item())
    pairs = torch.full((longest, 2), -1.0, dtype=torch.float64)
    pairs[: len(rows), 0] = torch.as_tensor(rows, dtype=torch.float64)
    pairs[: len(rows), 1] = torch.as_tensor(scores, dtype=torch.float64)
    everything = _gather_for_metrics(pairs)
    everything = everything[everything[:, 0] >= 0]  # the padding
    got = everything[:, 0].long().numpy()
    if len(got) != n_rows or len(np.unique(got)) != n_rows:
        raise RuntimeError(
            f"gathered scores cover {len(np.unique(got))} distinct rows in {len(got)} of the table's "
            f"{n_rows}: the processes did not score disjoint shares of it"
        )
    out = np.empty(n_rows, dtype=np.float32)
    out[got] = everything[:, 1].numpy().astype(np.float32)
    return out


def _gather_for_metrics(t: torch.Tensor) -> torch.Tensor:
    accelerator = get_accelerator()
    return accelerator.gather_for_metrics(t.to(accelerator.device)).cpu()


def broadcast_object(value):
    """The main process's ``value`` on every process."""
    if world_size() == 1:
        return value
    box = [value if is_main() else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def agree(what: str, value, differences=None) -> None:
    """Stop when this process's ``value`` differs from the main process's, naming the difference.

    ``differences(main, mine) -> list[str]`` names them (default: the keys of two dicts whose values differ).
    Every process raises, so the launch ends on all of them rather than hanging in the next collective."""
    if world_size() == 1:
        return
    main = broadcast_object(value)
    diffs = (differences or _dict_differences)(main, value) if main != value else []
    bad = torch.tensor([1.0 if diffs else 0.0])
    torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.SUM)
    if bad.item() == 0:
        return
    if diffs:
        raise FrkitInputError(
            f"process {rank()} of {world_size()} has other {what} than the main process "
            f"({'; '.join(diffs)}); launch every process with the same params file, -p overrides "
            "and data"
        )
    raise FrkitInputError(
        f"another process of this launch has other {what} than the main process (its error names the difference)"
    )


def _dict_differences(main, mine) -> list[str]:
    if not isinstance(main, dict) or not isinstance(mine, dict):
        return [f"{main!r} on the main process, {mine!r} here"]
    return [
        f"{k}: {main.get(k)!r} on the main process, {mine.get(k)!r} here"
        for k in sorted(set(main) | set(mine), key=str)
        if main.get(k) != mine.get(k)
    ]
