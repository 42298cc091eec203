"""The report's "Training data" section: what `prepare`'s answer check decided (prepared.checks.json,
prepared.left_out.jsonl): how each row's label was decided, the rows left out and why, benign rows whose
answer refuses, and, stated first, harmful rows kept with an answer that is not a refusal."""

from __future__ import annotations

from pathlib import Path

from sea_align.report.tables import read_json
from sea_align.stages.answer_check import LABEL_SOURCES, LEFT_OUT


def training_data_blocks(run: Path) -> list[tuple]:
    checks = read_json(run / "prepared.checks.json")
    if not checks:
        return []
    b: list[tuple] = [("h2", "Training data")]
    if checks.get("unsafe_allowed"):
        b.append(
            (
                "note",
                f"--allow-unsafe-answers: {checks['unsafe_allowed']} harmful row(s) were trained on an answer that "
                f"is not a refusal ({', '.join(checks.get('unsafe_allowed_at', [])[:10])}).",
            )
        )
    judge = f"; every answer also judged safe by the `{checks['judge']}` judge" if checks.get("judge") else ""
    b.append(
        (
            "p",
            f"{checks.get('n_in', '?')} rows read from `{checks.get('source', '?')}`: {checks['kept']} kept "
            f"({checks['harmful']} harmful, {checks['benign']} benign), "
            f"{sum(checks['left_out'].values())} left out (`{checks.get('left_out_file', 'prepared.left_out.jsonl')}`)"
            f"{judge}.",
        )
    )
    rows = [[LABEL_SOURCES.get(k, k), n] for k, n in sorted(checks["label_source"].items())]
    rows += [[f"answer: {k}", n] for k, n in sorted(checks["answer_check"].items())]
    rows += [[f"left out: {LEFT_OUT.get(k, k)}", n] for k, n in sorted(checks["left_out"].items())]
    if checks.get("benign_refusals"):
        rows.append(["benign rows whose answer refuses (teach over-refusal)", checks["benign_refusals"]])
    return b + [("table", ["how decided", "rows"], rows)]
