"""Run by tests/test_distributed.py under `accelerate launch` (and in-process for the 1-process
reference): align with a batch size that splits unevenly over 2 processes (3 = 2 + 1) and a last
batch of one example (one process runs a zero-weight example): 5 of the 6 rows give 10 examples.
With a 4th argument (a directory) each process writes `rank<R>.json`: how its model's parameters
ended up (sharded by FSDP or whole)."""

import json
import sys
from pathlib import Path

import torch

from sea_align.config import AlignConfig
from sea_align.models import load_adapter
from sea_align.runtime.io import read_jsonl
from sea_align.stages.align import run_align

CFG = AlignConfig(epochs=2, batch_size=3, lr=1e-2, method="sft")


def layout(model: torch.nn.Module) -> dict:
    from torch.distributed.tensor import DTensor

    frozen = [p for p in model.parameters() if not p.requires_grad]
    return {
        "frozen_sharded": sum(isinstance(p, DTensor) for p in frozen),
        "frozen": len(frozen),
        "frozen_numel": sum(p.numel() for p in frozen),
        "frozen_local_numel": sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in frozen),
        "trainable_sharded": sum(isinstance(p, DTensor) for p in model.parameters() if p.requires_grad),
    }


def main(prepared: str, emb: str, out: str, report: str | None = None) -> None:
    rows = read_jsonl(prepared)[:5]  # 4 harmful + 1 benign -> 10 examples = 3 + 3 + 3 + 1
    adapter = load_adapter("tiny-random-llava")
    run_align(adapter, rows, emb, out, CFG, progress=False)
    if report:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        Path(report, f"rank{rank}.json").write_text(json.dumps(layout(adapter.model)))


if __name__ == "__main__":
    main(*sys.argv[1:5])
