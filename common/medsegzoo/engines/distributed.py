"""torch.distributed glue the bundles' ``multi_gpu_*.json`` configs call.

One process per device, launched by ``torchrun`` (which sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``). The backend is NCCL when CUDA is present and
gloo otherwise, so the same config trains on a GPU node and on a CPU machine (tests, laptops);
a config entry ``dist_backend`` forces one. docs/distributed.md has the launch commands.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from medsegzoo.errors import MedSegZooError

BACKENDS = ("nccl", "gloo")


def local_rank() -> int:
    """This process's device index on its node (``LOCAL_RANK`` set by torchrun; 0 alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else the CPU."""
    return torch.device(f"cuda:{local_rank()}") if torch.cuda.is_available() else torch.device("cpu")


def default_backend() -> str:
    """NCCL on CUDA machines, gloo elsewhere."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(backend: str | None = None) -> str:
    """Join the process group once (idempotent) and pin this process's GPU.

    Args:
        backend: "nccl", "gloo" or None (automatic: :func:`default_backend`).

    Returns:
        The backend in use.

    Raises:
        MedSegZooError: unknown backend, NCCL without CUDA, or not launched by torchrun.
    """
    if dist.is_initialized():
        return str(dist.get_backend())
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise MedSegZooError(f"config entry dist_backend: {backend!r} is not one of {BACKENDS}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise MedSegZooError("config entry dist_backend: 'nccl' needs CUDA; use 'gloo' (or leave it null) on CPUs")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise MedSegZooError(
            "multi_gpu configs must be launched by torchrun (RANK/WORLD_SIZE unset), e.g. "
            "torchrun --nproc_per_node=2 -m monai.bundle run --config_file \"['configs/train.json','configs/multi_gpu_train.json']\""
        )
    if torch.cuda.is_available():
        torch.cuda.set_device(local_device())
    dist.init_process_group(backend=backend)
    return backend


def ddp_device_ids(device: torch.device) -> list[torch.device] | None:
    """``device_ids`` for DistributedDataParallel: the GPU, or None for CPU modules (gloo)."""
    return [device] if device.type == "cuda" else None


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): the process that logs and saves."""
    return not dist.is_initialized() or dist.get_rank() == 0


def destroy_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()
