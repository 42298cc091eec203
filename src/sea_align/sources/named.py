"""Named text safety sets built from files shipped in this package (no network at run time).

`advbench`: the 520 AdvBench behaviours (MIT, llm-attacks; src/sea_align/data/advbench.jsonl, made once
from the copy in the `pyrit` package with its harm categories, see data/README.md), each paired with a
refusal; plus the *train* half of our own benign activities (src/sea_align/data/benign.jsonl) with
helpful answers.

`safety-mix`: a safety set as users have one: the hand-labelled harmful prompts of AdvBench, DoNotAnswer and
JailbreakBench's past-tense forms, near-duplicates removed, each with its VA-SafetyBench `scenario`, its
`source` and a refusal that says why (src/sea_align/data/safety_mix.jsonl, built by
scripts/safety_mix/build.py); plus borderline requests that share their words (borderline_mix.jsonl and
the borderline train split) and plain benign ones, two borderline rows to each plain one.

Rows that overlap an evaluation set (same key phrase by word overlap) are dropped and counted: training and
evaluation stay disjoint."""

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
NAMED = ("advbench", "safety-mix")
CARD = {  # what a model card says of each named set
    "advbench": "AdvBench, MIT, + the package's benign train split",
    "safety-mix": "AdvBench (MIT), DoNotAnswer (Apache-2.0), JailbreakBench past tense (MIT), + the package's "
    "borderline and benign train rows",
}
ADVBENCH_FILE = PKG_DATA / "advbench.jsonl"  # id, instruction, response, category, harmful
MIX_FILE = PKG_DATA / "safety_mix.jsonl"  # id, instruction, response, harmful, source, source_ref, scenario
BORDERLINE_MIX_FILE = PKG_DATA / "borderline_mix.jsonl"  # benign requests sharing words with harmful ones


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
        if path.is_file():
            rows += [_benign(r) for r in read_jsonl(path) if r.get("split") == "train"]
    random.Random(f"benign-train:{seed}").shuffle(rows)
    return rows


def _benign(r: dict[str, Any]) -> dict[str, Any]:
    r.pop("_line", None)
    r.setdefault("kind", "benign")
    if not r.get("response"):
        r["response"], r["response_source"] = template_answer(r["key_phrase"]), "template"
    return r


def safety_mix_rows(seed: int = 0) -> list[dict[str, Any]]:
    """The `safety-mix` set: its harmful rows (in the file's order: any first N cover every scenario), then the
    benign ones, shuffled with `seed` and dealt two borderline rows to each plain one (so that the first N
    benign rows hold about 2N/3 borderline ones)."""
    harmful = read_jsonl(MIX_FILE, required=("id", "instruction", "response", "scenario", "source"))
    for r in harmful:
        r.pop("_line", None)
    train = [_benign(r) for r in read_jsonl(BORDERLINE_MIX_FILE) if r.get("split") == "train"]
    train += benign_train_rows(seed)
    rng = random.Random(f"safety-mix:{seed}")
    border = [r for r in train if r["kind"] == "borderline"]
    plain = [r for r in train if r["kind"] != "borderline"]
    rng.shuffle(border)
    rng.shuffle(plain)
    benign: list[dict[str, Any]] = []
    while border or plain:
        benign += border[:2] + plain[:1]
        border, plain = border[2:], plain[1:]
    return harmful + benign


def named_rows(name: str) -> list[dict[str, Any]]:
    """The rows of a named set (NAMED)."""
    if name == "advbench":
        return advbench_rows() + benign_train_rows()
    if name == "safety-mix":
        return safety_mix_rows()
    raise DataError(f"unknown data set '{name}' (named sets: {', '.join(NAMED)}; or give a JSONL path)")


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
    rows, dropped = drop_overlap(named_rows(name), list(held_out_phrases))
    atomic_write_jsonl(out, rows)
    log.info("%s: %d rows (%d dropped as overlapping evaluation) -> %s", name, len(rows), dropped, out)
    return out, dropped
