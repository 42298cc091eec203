"""Multi-process runs on accelerate: which share of the work this process owns, barriers, reductions.

`accelerate launch --multi_gpu --num_processes N -m sea_align.cli synthesize|align ...` (or a config
from `configs/accelerate/`) starts N copies of the command through torchrun, which sets
RANK/WORLD_SIZE/MASTER_ADDR; `PartialState` then joins the process group: NCCL on GPUs, gloo on a
machine without CUDA (so the same command runs N CPU processes; `--cpu` would start one process
unless accelerate is given an MPI hostfile). A plain `sea ...` (WORLD_SIZE unset or 1) never touches torch.distributed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch

from .io import DataError

T = TypeVar("T")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    state: Any = None  # accelerate.PartialState when world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's disjoint share: every world-th item starting at its rank."""
        return list(items[self.rank::self.world])

    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of `x` over processes (in place on a copy); identity for one process."""
        if self.world == 1:
            return x
        y = x.detach().clone().to(self.device)
        torch.distributed.all_reduce(y, op=torch.distributed.ReduceOp.SUM)
        return y.to(x.device)


def dist_state() -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    for flag, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(flag, "").lower() in ("1", "true"):  # refuse rather than silently replicate
            raise DataError(f"{what} launch: sea_align runs data-parallel only (one model copy per process); "
                            "use configs/accelerate/ddp.yaml (docs/scale.md)")
    from accelerate import PartialState
    # without CUDA (or with ACCELERATE_USE_CPU) accelerate joins a gloo group; on GPUs it uses NCCL
    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    st = PartialState(cpu=cpu)
    return Dist(st.process_index, st.num_processes, st.device, st)


def place(adapter: Any, dist: Dist) -> None:
    """Move the model to this process's device (cuda:LOCAL_RANK under a multi-GPU launch)."""
    if dist.world > 1 and adapter.device != dist.device:
        adapter.model.to(dist.device)
