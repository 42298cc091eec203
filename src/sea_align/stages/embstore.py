"""The embeddings directory on disk (format in docs/stages.md): one safetensors shard per sample,
an append-only index whose last row per id wins, per-process index parts merged at the end.

A shard is the commit point: it is written whole (temp file + rename) and carries its own index row
in its metadata, so a shard whose row never reached the index (a kill between the two writes) is
re-indexed by `recover_orphans` instead of being recomputed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from sea_align.runtime.faults import crash_point
from sea_align.runtime.io import (
    DataError,
    append_jsonl,
    atomic_path,
    atomic_write_jsonl,
    last_per_key,
    read_jsonl_tolerant,
    repair_tail,
)

if TYPE_CHECKING:  # torch only where tensors are read or written: the report reads meta.json without it
    import torch

    from sea_align.runtime.distributed import Dist

INDEX = "index.jsonl"
_SHARD_RE = re.compile(r"emb-(?:r(\d+)-)?(\d+)\.safetensors$")


def _index_files(emb_dir: Path) -> list[Path]:
    """The merged index first, then per-process parts of an unfinished distributed run."""
    return [emb_dir / INDEX] + sorted(emb_dir.glob("index.r*.jsonl"))


def read_index(emb_dir: Path) -> list[dict[str, Any]]:
    rows = [r for f in _index_files(emb_dir) for r in read_jsonl_tolerant(f)]
    return last_per_key(r for r in rows if isinstance(r.get("shard"), str) and isinstance(r.get("key"), str))


def load_index(emb_dir: Path) -> list[dict[str, Any]]:
    """One row per id (the last written wins) whose shard exists; a row pointing at a missing shard is
    dropped (it will be redone). A row with `verified: null` is finished but not yet verified."""
    emb_dir = Path(emb_dir)
    return [r for r in read_index(emb_dir) if (emb_dir / r["shard"]).is_file()]


def load_embeddings(emb_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor]]:
    """(meta, index rows, {id: E}) of a finished embeddings directory."""
    from safetensors.torch import load_file

    emb_dir = Path(emb_dir)
    if not (emb_dir / "meta.json").is_file():
        raise DataError(f"{emb_dir}: not an embeddings directory (no meta.json)")
    meta = json.loads((emb_dir / "meta.json").read_text())
    index = load_index(emb_dir)
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for shard in sorted({r["shard"] for r in index}):
        try:
            tensors[shard] = load_file(str(emb_dir / shard))
        except Exception as e:  # safetensors raises its own error types for a damaged file
            raise DataError(f"{emb_dir / shard}: unreadable shard ({type(e).__name__})") from None
    return meta, index, {r["id"]: tensors[r["shard"]][r["key"]] for r in index if r["key"] in tensors[r["shard"]]}


def blank_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The blank item's family details (`Features.meta`, e.g. a grid) from an embeddings meta.json, as the
    adapter made them: JSON stores tuples as arrays, read back as tuples. The one reader (align, report)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (meta.get("blank_meta") or {}).items()}


class ShardStore:
    """Writes one process's finished embeddings: one shard per sample, then its index row."""

    def __init__(self, out_dir: Path, dist: Dist, modality: str, space: str):
        self.out, self.modality, self.space = out_dir, modality, space
        self.prefix = f"emb-r{dist.rank}-" if dist.world > 1 else "emb-"
        self.index = out_dir / (f"index.r{dist.rank}.jsonl" if dist.world > 1 else INDEX)
        repair_tail(self.index)
        for stale in out_dir.glob(f".{self.prefix}*.tmp"):  # this process's shard temp files from a killed run
            if _SHARD_RE.search(stale.name.split(".safetensors")[0] + ".safetensors"):
                stale.unlink(missing_ok=True)
        taken = [
            int(m.group(2))
            for f in out_dir.glob(self.prefix + "*.safetensors")
            if (m := _SHARD_RE.search(f.name)) and f.name.startswith(self.prefix)
        ]
        self.next = max(taken, default=-1) + 1

    def save(self, row: dict[str, Any], E: torch.Tensor) -> dict[str, Any]:
        """Write E's shard whole (its metadata holds `row`), then append `row` as pending."""
        from safetensors.torch import save_file

        shard = f"{self.prefix}{self.next:05d}.safetensors"
        row = {**row, "shard": shard, "key": f"e{self.next}_0"}
        self.next += 1
        with atomic_path(self.out / shard) as tmp:
            save_file(
                {row["key"]: E.contiguous()},
                str(tmp),
                metadata={"modality": self.modality, "space": self.space, "row": json.dumps(row, default=str)},
            )
            crash_point("synth.shard_tmp")
        crash_point("synth.shard_written")
        append_jsonl(self.index, row)
        return row

    def commit(self, row: dict[str, Any]) -> None:
        append_jsonl(self.index, row)


def recover_orphans(out_dir: Path, index_path: Path, indexed: set[str]) -> int:
    """Index shards that landed whole but whose row did not (killed between the two writes)."""
    n = 0
    for f in sorted(out_dir.glob("emb-*.safetensors")):
        if f.name in indexed:
            continue
        try:
            with safe_open(str(f), framework="pt") as st:
                row = json.loads((st.metadata() or {}).get("row", "null"))
        except Exception:  # not one of ours, or damaged: leave it, it is never referenced
            row = None
        if isinstance(row, dict) and row.get("shard") == f.name:
            append_jsonl(index_path, row)
            n += 1
    return n


def merge_index(out_dir: Path) -> None:
    """Main process: fold the per-process parts into one `index.jsonl`, one row per id (atomic)."""
    parts = sorted(out_dir.glob("index.r*.jsonl"))
    rows = [r for f in _index_files(out_dir) for r in read_jsonl_tolerant(f)]
    merged = last_per_key(rows)
    if parts or len(merged) != len(rows):
        atomic_write_jsonl(out_dir / INDEX, merged)
    for f in parts:
        f.unlink()
