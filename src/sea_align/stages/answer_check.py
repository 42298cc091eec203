"""Stage 1's answer check: a text safety set cannot teach harm.

Every row's answer is judged by the offline refusal judge before anything is prepared:
- a *labelled harmful* row (its file, its format, our format's default or `--label harmful` says so) must
  have a refusal as its answer; one that helps is an error naming FILE:LINE of every such row, unless
  `allow_unsafe_answers` (then it is kept, marked `answer_check: unsafe-allowed`, and the report says so);
- an *unlabelled* row (chat / ShareGPT without `harmful`) whose answer refuses becomes harmful
  (`label_source: answer`); one whose answer helps is left out: an answer that helps does not make the
  request benign ("How do I launder money?" answered with instructions helps too);
- a benign row whose answer refuses is kept and reported: it teaches over-refusal;
- where a safety judge is configured (`openai`, `hf-classifier`), an answer it judges unsafe is never a
  training target: an error for every such row, labelled or not; one it cannot judge is left out.
Rows left out are returned with their reason (`left_out`), written beside prepared.jsonl by `prepare`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sea_align.judges import get_judge, is_refusal, judge_kwargs
from sea_align.runtime.io import DataError

log = logging.getLogger(__name__)
# why a row was left out -> the hint `prepare` prints with its count
LEFT_OUT = {
    "unlabelled-answer-helps": "an answer that helps does not make a request benign: label the rows "
    '("harmful": false) or vouch for them with --label benign',
    "unlabelled-no-answer": "no label and no answer: label the rows, or --label harmful to refuse them",
    "judge-unscored": "the safety judge could not judge the answer",
}


@dataclass
class AnswerCheck:
    """What the check decided: rows kept (labelled, each with `label_source` and `answer_check`), rows
    left out (each with `reason` and `where`), and what the report shows."""

    kept: list[dict[str, Any]]
    left_out: list[dict[str, Any]] = field(default_factory=list)
    benign_refusals: list[str] = field(default_factory=list)  # FILE:LINE of benign rows whose answer refuses
    unsafe_allowed: list[str] = field(default_factory=list)  # FILE:LINE of harmful rows kept by the override
    judge: str = ""  # the safety judge that also checked the answers ("" = the refusal check only)

    def keep(self, rows: list[dict[str, Any]]) -> AnswerCheck:
        """Only `rows` of the kept ones stay (a limit, a judge): the reported places follow."""
        self.kept = rows
        at = {r["_where"] for r in rows}
        self.benign_refusals = [w for w in self.benign_refusals if w in at]
        self.unsafe_allowed = [w for w in self.unsafe_allowed if w in at]
        return self

    def counts(self) -> dict[str, Any]:
        """The summary `prepare` prints and writes (prepared.checks.json)."""
        return {
            "kept": len(self.kept),
            "harmful": sum(bool(r["harmful"]) for r in self.kept),
            "benign": sum(not r["harmful"] for r in self.kept),
            "label_source": dict(Counter(r["label_source"] for r in self.kept)),
            "answer_check": dict(Counter(r["answer_check"] for r in self.kept)),
            "left_out": dict(Counter(r["reason"] for r in self.left_out)),
            "benign_refusals": len(self.benign_refusals),
            "unsafe_allowed": len(self.unsafe_allowed),
            "judge": self.judge or None,
        }


def _where(source: str, row: dict[str, Any], i: int) -> str:
    return f"{source}:{row.get('_line', i + 1)}"


def _lines(wheres: list[str], source: str) -> str:
    """'FILE:1, 2, 5' for places in one file (a JSON list's 'entry 3' stays as it is)."""
    return f"{source}:" + ", ".join(w[len(source) + 1 :] for w in wheres)


def check_answers(rows: list[dict[str, Any]], source: str, allow_unsafe_answers: bool = False) -> AnswerCheck:
    """Label every row and check its answer with the refusal phrases (module docstring). Raises one
    DataError for all harmful rows whose answer helps (unless `allow_unsafe_answers`)."""
    out = AnswerCheck([])
    helping: list[str] = []
    for i, r in enumerate(rows):
        where = _where(source, r, i)
        refuses = is_refusal(r["response"]) if r.get("response") else None
        if "harmful" not in r:  # unlabelled: the answer decides, and only a refusal decides
            if refuses is None:
                out.left_out.append({**r, "reason": "unlabelled-no-answer", "where": where})
            elif not refuses:
                out.left_out.append({**r, "reason": "unlabelled-answer-helps", "where": where})
            else:
                out.kept.append(
                    {**r, "harmful": True, "label_source": "answer", "answer_check": "refusal", "_where": where}
                )
            continue
        if r.get("response_source") == "refusal":
            check = "default-refusal"
        elif r["harmful"] and not refuses:
            (out.unsafe_allowed if allow_unsafe_answers else helping).append(where)
            check = "unsafe-allowed"
        else:
            check = "refusal" if refuses else "helps"
            if refuses and not r["harmful"]:
                out.benign_refusals.append(where)
        out.kept.append({**r, "answer_check": check, "_where": where})
    if helping:
        raise DataError(
            f"{_lines(helping, source)}: {len(helping)} harmful row(s) whose answer is not a refusal; SEA would "
            'train the model to give it. Fix the answers or the labels ("harmful": false), or pass '
            "--allow-unsafe-answers (the report states it)"
        )
    return out


def judge_answers(check: AnswerCheck, source: str, judge: str, judge_arg: list[str] | tuple = ()) -> AnswerCheck:
    """The configured safety judge on every kept answer: unsafe is an error for all such rows, labelled or
    not; unscored leaves the row out (never trained on)."""
    verdicts = get_judge(judge, **judge_kwargs(list(judge_arg))).judge(
        [{"prompt": r["instruction"], "response": r["response"], "harmful": True} for r in check.kept]
    )
    kept, unsafe = [], []
    for r, v in zip(check.kept, verdicts):
        if v.unsafe is None:
            check.left_out.append({**r, "reason": "judge-unscored", "where": r["_where"], "judge_raw": v.raw})
        elif v.unsafe:
            unsafe.append(r["_where"])
        else:
            kept.append(r)
    if unsafe:
        raise DataError(
            f"{_lines(unsafe, source)}: {len(unsafe)} row(s) whose answer the '{judge}' judge finds unsafe; an "
            "unsafe answer is never a training target"
        )
    check.judge = judge
    return check.keep(kept)


def describe(counts: dict[str, Any]) -> list[tuple[int, str]]:
    """What the check decided, as (logging level, line) pairs for the console: how the labels were decided,
    what was left out and why (with the hint), benign refusals and answers kept by the override."""
    label = ", ".join(f"{n} {LABEL_SOURCES.get(k, k)}" for k, n in sorted(counts["label_source"].items()))
    lines = [(logging.INFO, f"labels: {label}; answers: {_pairs(counts['answer_check'])}")]
    if counts.get("judge"):
        lines.append((logging.INFO, f"answers also judged safe by the '{counts['judge']}' judge"))
    for why, n in counts["left_out"].items():
        where = f" -> {counts['left_out_file']}" if counts.get("left_out_file") else ""
        lines.append((logging.WARNING, f"left out {n} row(s){where}: {why} ({LEFT_OUT[why]})"))
    if counts["benign_refusals"]:
        lines.append(
            (
                logging.WARNING,
                f"{counts['benign_refusals']} benign row(s) answer with a refusal: they teach over-refusal",
            )
        )
    if counts["unsafe_allowed"]:
        lines.append(
            (
                logging.WARNING,
                f"{counts['unsafe_allowed']} harmful row(s) kept whose answer is NOT a refusal "
                "(--allow-unsafe-answers)",
            )
        )
    return lines


def _pairs(counter: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counter.items())) or "none"


LABEL_SOURCES = {
    "file": "labelled in the file",
    "format": "labelled by the data set's format",
    "default": "harmful by default (no 'harmful' field)",
    "answer": "harmful because the answer refuses",
    "option": "labelled by --label",
}
