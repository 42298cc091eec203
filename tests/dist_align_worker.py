"""Run by tests/test_distributed.py under `accelerate launch` (and in-process for the 1-process
reference): align with a batch size that splits unevenly over 2 processes (3 = 2 + 1) and a last
batch of one example (one process runs a zero-weight example)."""
import sys

from sea_align.align import run_align
from sea_align.config import AlignConfig
from sea_align.io import read_jsonl
from sea_align.models import load_adapter

CFG = AlignConfig(epochs=2, batch_size=3, lr=1e-2, method="sft")


def main(prepared: str, emb: str, out: str) -> None:
    rows = read_jsonl(prepared)
    run_align(load_adapter("tiny-random-llava"), rows, emb, out, CFG, progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:4])
