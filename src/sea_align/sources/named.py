"""Named text safety sets built from files shipped in this package (no network at run time).

`advbench`: the 520 AdvBench behaviours (MIT, llm-attacks; src/sea_align/data/advbench.jsonl, made once
from the copy in the `pyrit` package with its harm categories, see data/README.md), each paired with a
refusal; plus the *train* half of our own benign activities (src/sea_align/data/benign.jsonl) with
helpful answers. Rows that overlap an evaluation set (same key phrase by word overlap) are dropped and
counted: training and evaluation stay disjoint."""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path
from typing import Any

from sea_align import PKG_DATA
from sea_align.judges.textmatch import words
from sea_align.runtime.io import DataError, atomic_write_jsonl, read_jsonl

log = logging.getLogger(__name__)
REFUSALS = [
    "I'm sorry, but I can't help with that. It could cause serious harm or break the law.",
    "I can't assist with this request. It could put people at risk, so I won't provide it.",
    "I'm sorry, I cannot help with that. If you have a different, safe question, I'm glad to help.",
    "I won't help with this. It is harmful and may be illegal. Please consider a safer alternative.",
]
NAMED = ("advbench",)
ADVBENCH_FILE = PKG_DATA / "advbench.jsonl"  # id, instruction, response, category, harmful


def refusal_for(instruction: str) -> str:
    """A refusal for a harmful request, picked by a hash of its text (stable across runs)."""
    h = int(hashlib.sha256(instruction.encode()).hexdigest(), 16)
    return REFUSALS[h % len(REFUSALS)]


def advbench_rows() -> list[dict[str, Any]]:
    """The 520 shipped AdvBench rows, each with its refusal (`refusal_for`)."""
    rows = read_jsonl(ADVBENCH_FILE, required=("id", "instruction", "response"))
    for r in rows:
        r.pop("_line", None)
    return rows


BENIGN_FILES = ("benign.jsonl", "benign_varied.jsonl", "borderline.jsonl")


def template_answer(phrase: str) -> str:
    """The canned helpful answer given to a benign row that has none (self-distillation replaces it)."""
    return (
        f"Sure! Here is how to {phrase}:\n1. Gather what you need and read any instructions first.\n"
        "2. Work through it step by step, taking your time.\n3. Check the result and adjust as needed."
    )


def benign_train_rows(seed: int = 0) -> list[dict[str, Any]]:
    """The train split of our benign sets (plain, varied and borderline requests), shuffled with `seed`
    so that the first N rows mix all three. Rows without an answer get `template_answer` and
    `response_source: template`."""
    rows = []
    for name in BENIGN_FILES:
        path = PKG_DATA / name
        if not path.is_file():
            continue
        for r in read_jsonl(path):
            if r.get("split") != "train":
                continue
            r.pop("_line", None)
            r.setdefault("kind", "benign")
            if not r.get("response"):
                r["response"], r["response_source"] = template_answer(r["key_phrase"]), "template"
            rows.append(r)
    random.Random(f"benign-train:{seed}").shuffle(rows)
    return rows


def overlaps(a: str, b: str, threshold: float = 0.8) -> bool:
    wa, wb = set(words(a)), set(words(b))
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) >= threshold


DROP_THRESHOLD = 0.6  # word-set Jaccard at which a training phrase counts as an evaluation phrase


def drop_overlap(train: list[dict[str, Any]], held_out_phrases: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Training rows minus those whose key phrase (or instruction) shares >= 60% of its words with an
    evaluation phrase ("hack into a bank account" vs "hack into someone's bank account": 0.67, dropped)."""
    from sea_align.sources.keyphrase import rules_extract

    keep, dropped = [], 0
    for r in train:
        phrase = r.get("key_phrase") or rules_extract(r["instruction"])[0]
        if any(
            overlaps(phrase, h, DROP_THRESHOLD) or overlaps(r["instruction"], h, DROP_THRESHOLD)
            for h in held_out_phrases
        ):
            dropped += 1
            continue
        keep.append(r)
    return keep, dropped


def materialise(name: str, out: Path, held_out_phrases: list[str] = ()) -> tuple[Path, int]:
    """Write the named set to `out` (JSONL), minus rows overlapping the evaluation phrases."""
    if name != "advbench":
        raise DataError(f"unknown data set '{name}' (named sets: {', '.join(NAMED)}; or give a JSONL path)")
    rows, dropped = drop_overlap(advbench_rows() + benign_train_rows(), list(held_out_phrases))
    atomic_write_jsonl(out, rows)
    log.info("%s: %d rows (%d dropped as overlapping evaluation) -> %s", name, len(rows), dropped, out)
    return out, dropped
