"""Multi-process runs on accelerate: which share of the work this process owns, barriers, reductions.

`accelerate launch --multi_gpu --num_processes N -m sea_align.cli synthesize|align|evaluate ...` (or a config
from `configs/accelerate/`) starts N copies of the command through torchrun, which sets
RANK/WORLD_SIZE/MASTER_ADDR; `PartialState` then joins the process group: NCCL on GPUs, gloo on a
machine without CUDA (so the same command runs N CPU processes; `--cpu` would start one process
unless accelerate is given an MPI hostfile). A plain `sea ...` (WORLD_SIZE unset or 1) never touches torch.distributed.
An FSDP launch (`configs/accelerate/fsdp.yaml`) additionally shards the frozen weights in `align` (`shard`).
`evaluate` deals whole one-process batches round-robin to the processes (`stages.evaluate.run_evaluate`).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from sea_align.runtime.io import DataError

T = TypeVar("T")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    state: Any = None  # accelerate.PartialState when world > 1
    fsdp: bool = False  # launched with an FSDP config: align shards the frozen weights (`shard`)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's disjoint share: every world-th item starting at its rank."""
        return list(items[self.rank :: self.world])

    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of `x` over processes (in place on a copy); identity for one process."""
        if self.world == 1:
            return x
        y = x.detach().clone().to(self.device)
        torch.distributed.all_reduce(y, op=torch.distributed.ReduceOp.SUM)
        return y.to(x.device)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true")


def dist_state() -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    if _env_true("ACCELERATE_USE_DEEPSPEED"):  # refuse rather than silently replicate
        raise DataError(
            "DeepSpeed launch: not supported by sea_align (docs/scale.md); "
            "use configs/accelerate/fsdp.yaml to shard the model, or ddp.yaml"
        )
    fsdp = _env_true("ACCELERATE_USE_FSDP")
    if fsdp and os.environ.get("FSDP_VERSION", "1") != "2":
        raise DataError("FSDP launch: sea_align needs fsdp_version: 2 (configs/accelerate/fsdp.yaml)")
    if fsdp and _env_true("FSDP_CPU_RAM_EFFICIENT_LOADING"):  # transformers would load weights on rank 0 only
        raise DataError(
            "FSDP launch: set fsdp_cpu_ram_efficient_loading: false (every process builds its "
            "training examples with the whole model before sharding)"
        )
    from accelerate import PartialState

    # without CUDA (or with ACCELERATE_USE_CPU) accelerate joins a gloo group; on GPUs it uses NCCL
    cpu = not torch.cuda.is_available() or _env_true("ACCELERATE_USE_CPU")
    st = PartialState(cpu=cpu)
    atexit.register(_close_group)
    return Dist(st.process_index, st.num_processes, st.device, st, fsdp)


def _close_group() -> None:
    """Leave the process group before the interpreter exits: a gloo group still alive at exit can abort
    the process ("terminate called without an active exception", SIGABRT) after its work is done."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def shard(dist: Dist, module: torch.nn.Module, opt: torch.optim.Optimizer) -> torch.nn.Module:
    """FSDP2 through accelerate, with the launch config's fsdp_* settings: shards every *frozen* weight of
    `module` over the processes (gathered per wrapped layer inside `module`'s forward). The trainable
    weights (LoRA, ~0.1% of the model) stay whole on every process, so the optimizer, checkpoints and
    the flat gradient average stay as without FSDP; `opt` keeps its parameters."""
    from accelerate import Accelerator, FullyShardedDataParallelPlugin
    from accelerate.utils import DistributedType

    plugin = FullyShardedDataParallelPlugin()  # fsdp_* settings from the launch config (environment)
    acc = Accelerator(fsdp_plugin=plugin)
    if acc.distributed_type != DistributedType.FSDP:  # accelerate turns FSDP on only on GPUs (MULTI_CPU
        acc.state.distributed_type = DistributedType.FSDP  # stays as is); FSDP2 itself runs on CPU/gloo
        acc.state.fsdp_plugin = plugin
    owners = [m for m in module.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    for m in owners:
        m.to(dist.device)
    plugin.ignored_modules = owners  # -> fully_shard(ignored_params=...)
    prepared, _ = acc.prepare(module, opt)
    return prepared


def place(adapter: Any, dist: Dist) -> None:
    """Move the model to this process's device (cuda:LOCAL_RANK under a multi-GPU launch). One process:
    the model stays where `load_adapter(device=...)` put it (the CLI's `--device`, default auto), and a
    model spread over several GPUs (`device_map="auto"`) is never moved."""
    spread = getattr(getattr(adapter, "model", None), "hf_device_map", None)
    if spread and len(set(spread.values())) > 1:
        return
    if dist.world > 1 and adapter.device != dist.device:
        adapter.model.to(dist.device)
