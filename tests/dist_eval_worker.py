"""Run by tests/test_eval_distributed.py under `accelerate launch` (and in-process for the 1-process
reference): `run_evaluate` on the tiny random LLaVA with batch size 2; each process also writes the
batches it generated (the prompts of each `generate` call) to `<log_dir>/batches.rank<R>.json`."""

import json
import sys
from pathlib import Path

import torch

from sea_align.config import EvaluateConfig
from sea_align.models import load_adapter
from sea_align.stages.evaluate import run_evaluate

BATCH, MAX_NEW = 2, 8


def main(bench: str, out: str, log_dir: str) -> None:
    adapter = load_adapter("tiny-random-llava")
    calls = []
    generate = adapter.generate

    def logged(items, max_new_tokens=48):
        calls.append([it.prompt for it in items])
        return generate(items, max_new_tokens=max_new_tokens)

    adapter.generate = logged
    run_evaluate(adapter, bench, out, EvaluateConfig(batch_size=BATCH, max_new_tokens=MAX_NEW), progress=False)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    Path(log_dir, f"batches.rank{rank}.json").write_text(json.dumps(calls))


if __name__ == "__main__":
    main(*sys.argv[1:4])
