"""Are two `sea run` directories the same result? Embeddings and adapters bit for bit, the embedding index
and the evaluations' records field by field (timings and paths left out), report_metrics.json exactly.
Usage: python scripts/compare_runs.py RUN_A RUN_B   (exit 1 and one line per difference if they differ)."""

import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open

VOLATILE = {"seconds", "bench", "media"}  # wall time, and paths that name the run directory


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in open(path)]


def _tensors_equal(a: Path, b: Path) -> bool:
    with safe_open(a, "pt") as x, safe_open(b, "pt") as y:
        return set(x.keys()) == set(y.keys()) and all(torch.equal(x.get_tensor(k), y.get_tensor(k)) for k in x.keys())


def compare(a: Path, b: Path) -> list[str]:
    diffs, n = [], 0
    for fa in sorted(a.rglob("*.safetensors")):
        fb = b / fa.relative_to(a)
        n += 1
        if not fb.is_file() or not _tensors_equal(fa, fb):
            diffs.append(f"tensors differ: {fa.relative_to(a)}")
    for fa in sorted(a.rglob("*.jsonl")):
        rel = fa.relative_to(a)
        if rel.parts[0] in ("embeddings", "eval") and fa.name in ("index.jsonl", "samples.jsonl"):
            n += 1
            if _rows(fa) != _rows(b / rel):
                diffs.append(f"records differ: {rel}")
    n += 1
    if json.loads((a / "report_metrics.json").read_text()) != json.loads((b / "report_metrics.json").read_text()):
        diffs.append("report_metrics.json differs")
    print(f"{n} files compared, {len(diffs)} differ")
    return diffs


if __name__ == "__main__":
    found = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(found))
    sys.exit(1 if found else 0)
