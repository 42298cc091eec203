"""`sea judge EVAL_DIR --judge NAME`: judge an evaluation's stored responses again, without generating.

Reads EVAL_DIR/samples.jsonl and writes, beside it, `samples.<tag>.jsonl` (appended per batch; a rerun
keeps scored verdicts and retries unscored ones) and `summary.<tag>.json` (eval_summary.summarize, with the
original run's generation config, media, seed and model copied from summary.json). The tag is the
judge name unless given.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sea_align.judges import get_judge
from sea_align.runtime.io import DataError, append_jsonl, atomic_write_json, read_jsonl_tolerant

log = logging.getLogger(__name__)
CARRIED = ("generation", "media", "seed", "model", "adapter", "benchmarks", "note", "builtin")


@dataclass
class JudgeResult:
    samples_path: Path
    summary_path: Path
    summary: dict[str, Any]


def scored(s: dict[str, Any]) -> bool:
    return (s.get("unsafe") if s.get("harmful", True) else s.get("refused")) is not None


def _key(s: dict[str, Any]) -> tuple[str, str]:
    return str(s.get("bench", "")), str(s["id"])


def run_judge(
    eval_dir: str | Path,
    judge: str,
    *,
    judge_kwargs: dict[str, Any] | None = None,
    tag: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> JudgeResult:
    """Judge EVAL_DIR's stored responses with `judge` (a registered name, built with `judge_kwargs`).
    No config section: `sea evaluate`'s judge is `evaluate.judge`; a re-judge names its own."""
    from tqdm.auto import tqdm

    from sea_align.stages.eval_summary import summarize

    eval_dir = Path(eval_dir)
    src = eval_dir / "samples.jsonl"
    samples = read_jsonl_tolerant(src)
    if not samples:
        raise DataError(f"{src}: no samples to judge (run `sea evaluate` first)")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag or judge)
    if tag == "samples" or not tag:
        raise DataError(f"--tag {tag!r}: choose another name")
    j = get_judge(judge, **(judge_kwargs or {}))
    out_path = eval_dir / f"samples.{tag}.jsonl"
    prior = {_key(s): s for s in read_jsonl_tolerant(out_path)}  # the last verdict per item wins
    todo = [s for s in samples if not (_key(s) in prior and scored(prior[_key(s)]))]
    t0 = time.perf_counter()
    with tqdm(
        total=len(samples), initial=len(samples) - len(todo), desc=f"judge {judge}", unit="item", disable=not progress
    ) as bar:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            for s, v in zip(chunk, j.judge(chunk)):
                rec = {**s, "refused": v.refused, "unsafe": v.unsafe, "judge": j.name, "judge_raw": v.raw}
                append_jsonl(out_path, rec)
                prior[_key(s)] = rec
            bar.update(len(chunk))
    final = [prior[_key(s)] for s in samples]
    orig = json.loads((eval_dir / "summary.json").read_text()) if (eval_dir / "summary.json").is_file() else {}
    extra = {k: orig[k] for k in CARRIED if k in orig}
    extra.update(
        {
            "judge": {"name": j.name, "version": j.version, **getattr(j, "config", {})},
            "rejudged_from": {"samples": src.name, "judge": orig.get("judge")},
            "judge_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    summary = summarize(final, extra)
    summary_path = eval_dir / f"summary.{tag}.json"
    atomic_write_json(summary_path, summary)
    log.info("re-judged %d items with %s: %d unscored", summary["n"], j.name, summary["n_unscored"])
    return JudgeResult(out_path, summary_path, summary)
