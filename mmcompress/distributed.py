"""Running under torchrun: one process group for the run, rank 0 does the writing.

`torchrun --nproc_per_node N -m mmcompress run recipe.yaml` starts N copies of the run. Stages that do not
train are computed by rank 0 while the others wait, then read from the run directory (Run.stage); the
distillation stage runs on every rank (DistributedDataParallel, each rank a shard of every batch); after the
torch-side stages only rank 0 goes on to export and checks. Without torchrun (WORLD_SIZE unset or 1) every
function here is a no-op and nothing of torch.distributed is imported.
"""
from __future__ import annotations

import datetime as dt
import os

TIMEOUT = dt.timedelta(hours=3)  # rank 0 may compute teacher outputs for a long time while the others wait
_closed = False  # after the torch-side stages rank 0 goes on alone


def world() -> int:
    return 1 if _closed else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_world() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", str(world())))


def is_main() -> bool:
    return rank() == 0


def init() -> None:
    """Join the process group torchrun set up (gloo on CPU, nccl when CUDA is there); idempotent."""
    if world() <= 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)


def barrier() -> None:
    if world() > 1:
        import torch.distributed as dist

        dist.barrier()


def close() -> None:
    """Leave the process group (every rank calls it); from then on this process runs alone (world() == 1)."""
    global _closed
    if world() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    _closed = True
