"""Data-parallel training on `torch.distributed`: DDP, or FSDP2 for models too big for one device.

`memgpt train` needs no launcher of its own: under `torchrun` or `accelerate launch` the usual
environment (`WORLD_SIZE`, `RANK`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) is set and
`init_distributed` joins the process group (nccl on CUDA, gloo on CPU); without it everything is
a no-op and training runs in one process, as before.
"""

from __future__ import annotations

import inspect
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..errors import MemGPTError

TIMEOUT = timedelta(minutes=30)


@dataclass
class DistContext:
    """Where this process sits in the job: `world_size` processes, this one is `rank`."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise MemGPTError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's GPU if there is one, else the CPU; 'cpu'/'cuda' as asked."""
    if device not in ("auto", "cpu", "cuda"):
        raise MemGPTError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise MemGPTError("--device cuda: no CUDA device is available")
    if local_rank >= torch.cuda.device_count():
        raise MemGPTError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group described by the launcher's environment (or stay single-process)."""
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise MemGPTError(f"bad launcher environment: WORLD_SIZE={world} RANK={rank} LOCAL_RANK={local}")
    ctx = DistContext(world, rank, local, resolve_device(device, local))
    if world == 1:
        return ctx
    if not dist.is_available():
        raise MemGPTError("this torch build has no torch.distributed; cannot run with WORLD_SIZE > 1")
    if dist.is_initialized():
        if dist.get_world_size() != world:
            raise MemGPTError(f"the process group has {dist.get_world_size()} processes, WORLD_SIZE says {world}")
        return ctx
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise MemGPTError(f"WORLD_SIZE={world} but {', '.join(missing)} is not set: start with torchrun or accelerate launch")
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT, device_id=ctx.device if backend == "nccl" else None)
    return ctx


def shutdown(ctx: DistContext, synchronize: bool = True) -> None:
    """Leave the process group (end of a distributed run). With `synchronize`, all ranks meet at a
    barrier first: gloo's teardown hung now and then (about 1 CI run in 10) when one rank destroyed
    the group while the other was still finishing (pytorch#75097)."""
    if ctx.enabled and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_sum(ctx: DistContext, *values: float) -> list[float]:
    """Sum floats over all processes (in float64, so integer counts stay exact)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(t)
    return t.tolist()


def all_agree(ctx: DistContext, ok: bool) -> bool:
    """True only if `ok` is true in every process (so all of them take the same branch)."""
    if not ctx.enabled:
        return ok
    t = torch.tensor([1 if ok else 0], dtype=torch.int32, device=_comm_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def from_main(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's value of `flag`, in every process."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_comm_device(ctx))
    dist.broadcast(t, src=0)
    return bool(t.item())


def _comm_device(ctx: DistContext) -> torch.device:
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")


def wrap(model: nn.Module, ctx: DistContext, fsdp: bool = False) -> nn.Module:
    """The module to train: the model itself (one process), DDP around it, or the model sharded
    in place by FSDP2 (`fully_shard` per backbone block, then the whole model)."""
    if not ctx.enabled:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in _blocks(model):
            fully_shard(block)
        fully_shard(model)
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # buffers (rotary tables) never change: no need to sync them at every forward
    quiet = {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters else {"broadcast_buffers": False}
    # find_unused_parameters: with truncated BPTT the last chunk does not reach memory_init
    return ddp(model, device_ids=ids, find_unused_parameters=True, **quiet)


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks of the backbone (GPT-2 `h`, Llama `layers`, ...)."""
    blocks: list[nn.Module] = []
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1 and not blocks:
            blocks = list(module)
    return blocks


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (FSDP2 shards in place, so it is already the model)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_fsdp(model: nn.Module) -> bool:
    return hasattr(model, "set_requires_gradient_sync")


@contextmanager
def no_sync(model: nn.Module) -> Iterator[None]:
    """Accumulate gradients locally (no all-reduce) for backward passes inside this block; the
    first backward outside it reduces everything accumulated."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    elif is_fsdp(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        with nullcontext():
            yield


def full_state_dict(model: nn.Module, ctx: DistContext, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Full (unsharded, CPU) model and optimizer state of an FSDP model; a collective, so every rank
    calls it. Only rank 0 gets the dicts; other ranks get (None, None)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=options)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else None
    return (model_sd, optim_sd) if ctx.is_main else (None, None)


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full FQN-keyed optimizer state into a sharded (FSDP) optimizer, every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
