"""Data-parallel training of one network across processes: torchrun starts them, DistributedDataParallel
averages the gradients. Nothing here schedules anything itself.

With `train.data: memory` every rank holds the samples and draws the same seeded global batch; rank r trains on
rows r, r + W, r + 2W, ... of it, so the W ranks get equal shares and together see exactly the batches of a
one-process run. With `stream`, each rank reads its own shards (shards.streaming) in batches of batch_size / W.
BatchNorm statistics are per rank (as in DDP by default), so a W-process run is not bit-identical to a
one-process run. Rank 0 alone logs, evaluates and writes checkpoints.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_environment(device: torch.device) -> torch.device:
    """Under torchrun (WORLD_SIZE > 1) join the process group: NCCL on GPUs, one per rank; gloo on the CPU.
    Returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def data_parallel(module: nn.Module) -> nn.Module:
    """The module wrapped for gradient averaging when there are several ranks; itself otherwise."""
    if rank_and_world()[1] == 1:
        return module
    device = next(module.parameters()).device
    return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def rank_share(index: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch."""
    rank, world = rank_and_world()
    return index[rank::world]


def check_divisible(batch_size: int) -> None:
    world = rank_and_world()[1]
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {world} processes; "
                         f"allowed: a multiple of {world}")


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-rank sums (of losses over a log window) -> their mean over ranks, the same on every rank, so every
    rank logs, and stops on divergence, alike."""
    world = rank_and_world()[1]
    if world == 1:
        return values
    names = sorted(values)
    stacked = torch.stack([torch.as_tensor(values[name], dtype=torch.float64) for name in names])
    dist.all_reduce(stacked)
    return dict(zip(names, stacked / world))


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()
