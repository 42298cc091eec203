"""Self-distilled benign targets: the answers a model itself gives to the benign requests, as text.

SEA's benign samples (synthetic embedding + prefix + detoxified benign request, and the same request
typed) teach the aligned model to keep helping. With one canned answer for every benign request,
"help" becomes one fixed text while "refuse" keys on the request's form (docs/experiments.md). Here the
target of each benign row is instead the teacher's own greedy answer to the typed request, so helping
stays what it was. The teacher is the run's base model by default (`distill.teacher`); a teacher that
refuses a benign request (refusal judge) keeps the row's given answer when it has one of its own
(`response_source` != "template"), else drops the row, and says how many.

Output `distilled.jsonl`: one row per benign row {id, response, teacher, refused, kept}; `apply()`
puts the kept answers into the prepared rows before alignment. Resumable: rows already written are
not generated again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sea_align.config import DistillConfig
from sea_align.judges import get_judge
from sea_align.models.base import Item, ModelAdapter
from sea_align.runtime.io import DataError, append_jsonl, read_jsonl_tolerant, repair_tail

log = logging.getLogger(__name__)


@dataclass
class DistillResult:
    path: Path
    n: int
    n_refused: int
    n_dropped: int


def tidy(text: str) -> str:
    """A generation cut by the token cap ends mid-sentence: keep up to the last full line or sentence."""
    text = text.strip()
    if not text or text[-1] in ".!?)\"'*:":
        return text
    cut = max(text.rfind("\n"), text.rfind(". "), text.rfind("! "), text.rfind("? "))
    return text[: cut + 1].strip() if cut > len(text) // 3 else text


def run_distill(
    teacher: ModelAdapter,
    rows: list[dict[str, Any]],
    out: str | Path,
    cfg: DistillConfig,
    teacher_name: str = "",
    progress: bool = True,
) -> DistillResult:
    """Generate the teacher's greedy answer to every benign row's instruction (typed) into `out`."""
    out = Path(out)
    benign = [r for r in rows if not r.get("harmful", True) and not r.get("base_id")]  # whole forms share their answer
    if not benign:
        raise DataError("distill: the prepared data has no benign rows (harmful: false)")
    repair_tail(out)
    done = {d["id"] for d in read_jsonl_tolerant(out)}
    todo = [r for r in benign if r["id"] not in done]
    judge = get_judge("refusal")
    with tqdm(
        total=len(benign), initial=len(benign) - len(todo), desc="distill", unit="row", disable=not progress
    ) as bar:
        for i in range(0, len(todo), cfg.batch_size):
            chunk = todo[i : i + cfg.batch_size]
            answers = [
                tidy(a)
                for a in teacher.generate([Item(r["instruction"]) for r in chunk], max_new_tokens=cfg.max_new_tokens)
            ]
            verdicts = judge.judge([{"response": a, "harmful": False} for a in answers])
            for r, a, v in zip(chunk, answers, verdicts):
                own = r.get("response_source", "given") != "template"
                append_jsonl(
                    out,
                    {
                        "id": r["id"],
                        "response": a,
                        "teacher": teacher_name or "base",
                        "refused": bool(v.refused),
                        "kept": "teacher" if not v.refused else ("given" if own else "dropped"),
                    },
                )
            bar.update(len(chunk))
    got = {d["id"]: d for d in read_jsonl_tolerant(out)}
    n_ref = sum(1 for r in benign if got[r["id"]]["refused"])
    n_drop = sum(1 for r in benign if got[r["id"]]["kept"] == "dropped")
    log.info(
        "distilled %d benign answers (%d refused by the teacher, %d rows dropped) -> %s",
        len(benign),
        n_ref,
        n_drop,
        out,
    )
    return DistillResult(out, len(benign), n_ref, n_drop)


def apply(rows: list[dict[str, Any]], distilled: str | Path) -> list[dict[str, Any]]:
    """Rows with each benign row's response replaced by its distilled answer; dropped rows removed."""
    got = {d["id"]: d for d in read_jsonl_tolerant(distilled)}
    out = []
    for r in rows:
        d = got.get(r.get("base_id") or r["id"]) if not r.get("harmful", True) else None
        if d is None:
            out.append(r)
        elif d["kept"] == "teacher":
            out.append({**r, "response": d["response"], "response_source": "distilled"})
        elif d["kept"] == "given":
            out.append(r)
    return out
