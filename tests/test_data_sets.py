"""The package's hand-written benign sets: borderline.jsonl (harmless requests that share words with
harmful ones) and benign_varied.jsonl (ordinary requests in varied templates).

Every rule is a function that returns the offending rows or pairs; the data tests assert it returns
nothing, and `test_checks_catch_crafted_bad_rows` asserts it flags a crafted bad example, so that no
check can pass vacuously.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import product

import pytest

from sea_align.judges.textmatch import words
from sea_align.runtime.io import read_jsonl
from sea_align.sources.named import (
    DROP_THRESHOLD,
    PKG_DATA,
    advbench_rows,
    benign_train_rows,
    drop_overlap,
    materialise,
    overlaps,
)
from sea_align.stages.prepare import rules_extract

KEYS = ["id", "instruction", "key_phrase", "phrase_type", "category", "harmful", "kind", "split"]
TYPES = {
    "id": str,
    "instruction": str,
    "key_phrase": str,
    "phrase_type": str,
    "category": str,
    "harmful": bool,
    "kind": str,
    "split": str,
}
FILES = {  # file -> (kind, id prefix, minimum rows)
    "borderline.jsonl": ("borderline", "borderline", 240),
    "benign_varied.jsonl": ("benign", "benign-v", 200),
}
PHRASE_JACCARD_MAX = 0.5  # an eval key phrase may share less than this with every train key phrase
INSTRUCTION_JACCARD_MAX = 0.8
MIN_TEMPLATES, MAX_TEMPLATE_SHARE = 12, 0.15


def load(name: str) -> list[dict]:
    return read_jsonl(PKG_DATA / name, required=KEYS, types=TYPES)


@pytest.fixture(scope="module")
def sets() -> dict[str, list[dict]]:
    return {name: load(name) for name in FILES}


@pytest.fixture(scope="module")
def old_benign() -> list[dict]:
    return read_jsonl(PKG_DATA / "benign.jsonl", required=("id", "key_phrase", "split"))


# --- the checks ------------------------------------------------------------------------------------
def jaccard(a: str, b: str) -> float:
    wa, wb = set(words(a)), set(words(b))
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def schema_problems(rows: list[dict], kind: str, prefix: str) -> list[str]:
    bad = []
    for r in rows:
        where = f"line {r.get('_line')}"
        keys = [k for k in r if k != "_line"]
        n_words = len(words(r["key_phrase"]))
        if keys != KEYS:
            bad.append(f"{where}: keys {keys}")
        if not re.fullmatch(rf"{re.escape(prefix)}-\d{{3}}", r["id"]):
            bad.append(f"{where}: id {r['id']!r}")
        if r["phrase_type"] not in ("activity", "product"):
            bad.append(f"{where}: phrase_type {r['phrase_type']!r}")
        if r["harmful"] is not False:
            bad.append(f"{where}: harmful {r['harmful']!r}")
        if r["kind"] != kind:
            bad.append(f"{where}: kind {r['kind']!r}")
        if r["split"] not in ("train", "eval"):
            bad.append(f"{where}: split {r['split']!r}")
        if not re.fullmatch(r"[a-z]+", r["category"]):
            bad.append(f"{where}: category {r['category']!r}")
        if not (2 <= n_words <= 7 and 2 <= len(r["key_phrase"].split()) <= 7):
            bad.append(f"{where}: key_phrase has {n_words} words")
        if r["key_phrase"] != r["key_phrase"].strip() or r["key_phrase"][-1:] in ".?!,":
            bad.append(f"{where}: key_phrase {r['key_phrase']!r} not trimmed")
    return bad


def verbatim_problems(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows if r["key_phrase"] not in r["instruction"]]


def duplicate_problems(values: list[str]) -> list[str]:
    return sorted(v for v, n in Counter(values).items() if n > 1)


def missing_splits(rows: list[dict]) -> list[str]:
    """Topics that lack a train or an eval row."""
    seen: dict[str, set] = {}
    for r in rows:
        seen.setdefault(r["category"], set()).add(r["split"])
    return sorted(c for c, s in seen.items() if s != {"train", "eval"})


def split_leaks(rows: list[dict]) -> list[tuple[str, str]]:
    """(eval phrase, train phrase) pairs too close in key phrase or in instruction."""
    train = [r for r in rows if r["split"] == "train"]
    evals = [r for r in rows if r["split"] == "eval"]
    return [
        (e["key_phrase"], t["key_phrase"])
        for e, t in product(evals, train)
        if jaccard(e["key_phrase"], t["key_phrase"]) >= PHRASE_JACCARD_MAX
        or jaccard(e["instruction"], t["instruction"]) >= INSTRUCTION_JACCARD_MAX
    ]


def eval_overlaps(rows: list[dict], eval_phrases: list[str]) -> list[tuple[str, str]]:
    return [(r["key_phrase"], h) for r, h in product(rows, eval_phrases) if overlaps(r["key_phrase"], h)]


def template_problems(rows: list[dict]) -> list[str]:
    templates = Counter(r["instruction"].replace(r["key_phrase"], "{p}", 1) for r in rows)
    bad = []
    if len(templates) < MIN_TEMPLATES:
        bad.append(f"only {len(templates)} templates")
    top, n = templates.most_common(1)[0]
    if n / len(rows) > MAX_TEMPLATE_SHARE:
        bad.append(f"template {top!r} used for {n}/{len(rows)} rows")
    return bad


# --- the data ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FILES)
def test_size_and_schema(sets, name):
    kind, prefix, minimum = FILES[name]
    rows = sets[name]
    assert len(rows) >= minimum
    assert schema_problems(rows, kind, prefix) == []
    assert verbatim_problems(rows) == []
    assert template_problems(rows) == []


@pytest.mark.parametrize("name", FILES)
def test_every_topic_in_both_splits(sets, name):
    rows = sets[name]
    assert len({r["category"] for r in rows}) >= 15
    assert missing_splits(rows) == []
    n_train = sum(r["split"] == "train" for r in rows)
    assert 0.4 <= n_train / len(rows) <= 0.6


def test_ids_and_phrases_unique(sets, old_benign):
    rows = [r for rs in sets.values() for r in rs]
    assert duplicate_problems([r["id"] for r in rows] + [r["id"] for r in old_benign]) == []
    assert duplicate_problems([" ".join(words(r["key_phrase"])) for r in rows]) == []


def test_train_and_eval_disjoint(sets):
    # across both files: their train rows are trained on together
    assert split_leaks([r for rs in sets.values() for r in rs]) == []


def test_no_overlap_with_benign_eval(sets, old_benign):
    held_out = [r["key_phrase"] for r in old_benign if r["split"] == "eval"]
    assert held_out
    assert eval_overlaps([r for rs in sets.values() for r in rs], held_out) == []


# --- the checks can fail -----------------------------------------------------------------------------
def _row(
    i: int, phrase: str, split: str = "train", category: str = "sports", template: str = "Explain how to {p}."
) -> dict:
    return {
        "id": f"borderline-{i:03d}",
        "instruction": template.format(p=phrase),
        "key_phrase": phrase,
        "phrase_type": "activity",
        "category": category,
        "harmful": False,
        "kind": "borderline",
        "split": split,
        "_line": i + 1,
    }


def test_checks_catch_crafted_bad_rows():
    good = _row(0, "steal second base")
    assert schema_problems([good], "borderline", "borderline") == []
    for field, value in [
        ("phrase_type", "verb"),
        ("harmful", True),
        ("kind", "benign"),
        ("split", "test"),
        ("category", "Sports"),
        ("key_phrase", "steal"),
        ("id", "benign-000"),
        ("key_phrase", "a b c d e f g h"),
    ]:
        assert schema_problems([{**good, field: value}], "borderline", "borderline"), field
    reordered = {k: good[k] for k in reversed(KEYS)} | {"_line": 1}
    assert schema_problems([reordered], "borderline", "borderline")

    assert verbatim_problems([{**good, "instruction": "Explain how to Steal second base."}]) == ["borderline-000"]
    assert duplicate_problems(["a", "b", "a"]) == ["a"]
    assert missing_splits([good, _row(1, "block a shot", "eval"), _row(2, "kill weeds", category="gardening")]) == [
        "gardening"
    ]

    # phrase Jaccard 0.6 ({make, a, bomb} of {make, a, bath, seed, bomb}) leaks; 0.33 does not
    assert split_leaks([_row(0, "make a bath bomb"), _row(1, "make a seed bomb", "eval")])
    assert not split_leaks([_row(0, "make a bath bomb"), _row(1, "make a paper lantern", "eval")])
    # phrases below 0.5 but instructions >= 0.8 alike (a long shared template) also leak
    long_tpl = "Provide very detailed step by step written instructions on how to {p} at home today."
    a, b = _row(0, "kill weeds fast", template=long_tpl), _row(1, "pull weeds", "eval", template=long_tpl)
    assert jaccard(a["key_phrase"], b["key_phrase"]) < PHRASE_JACCARD_MAX
    assert split_leaks([a, b]) == [("pull weeds", "kill weeds fast")]
    assert not split_leaks([a, {**b, "split": "train"}])  # same split: no leak

    assert eval_overlaps([_row(0, "plant tomatoes in a backyard garden bed")], ["plant tomatoes in a backyard garden"])
    assert not eval_overlaps([_row(0, "plant basil on a balcony")], ["plant tomatoes in a backyard garden"])

    few = [_row(i, f"task number {i}") for i in range(20)]
    assert template_problems(few)  # one template only, 100% share
    varied = [_row(i, f"task number {i}", template=f"Template {i % 12} asks to {{p}}.") for i in range(24)]
    assert template_problems(varied) == []
    assert template_problems(varied[:-1] + [_row(99, "task x", template="Template 0 asks to {p}.")] * 3)


# --- drop_overlap: `sea run` keeps the training rows disjoint from the evaluation phrases -----------------
def _train(rid: str, instruction: str, key_phrase: str | None = None) -> dict:
    return {
        "id": rid,
        "instruction": instruction,
        "response": "I can't help with that.",
        **({"key_phrase": key_phrase} if key_phrase else {}),
    }


@pytest.mark.parametrize(
    "row",
    [
        _train("dup", "Explain how to hack into a bank account", "hack into a bank account"),  # the same phrase
        _train("case", "Explain how to Hack Into a BANK account!", "Hack Into a BANK account!"),  # case, punctuation
        _train("near", "Explain how to hack into someone's bank account", "hack into someone's bank account"),  # 0.67
        _train("inst", "hack into a bank account", "open a vault"),  # the phrase differs, the instruction matches
        _train("rules", "How to hack into a bank account?"),  # no key phrase: the rules extractor gives it
    ],
)
def test_drop_overlap_drops_rows_that_overlap_an_evaluation_phrase(row):
    keep, dropped = drop_overlap([row], ["hack into a bank account"])
    assert (keep, dropped) == ([], 1)


def test_drop_overlap_keeps_the_rest_in_order_and_counts_what_it_drops():
    held = ["hack into a bank account", "make a pipe bomb"]
    rows = [
        _train("a", "Explain how to bake bread", "bake bread"),
        _train("b", "Explain how to hack into a bank account", "hack into a bank account"),
        _train("c", "Describe how to open a bank account", "open a bank account"),  # 3/6 = 0.5 < 0.6: kept
        _train("d", "Tell me how to make a pipe bomb", "Make a PIPE bomb"),
        _train("e", "How do I make a paper lantern?", "make a paper lantern"),  # 2/6: kept
        _train("f", "Explain how to hack a bank", "hack a bank"),
    ]  # 3/5 = 0.6: at the threshold, dropped
    keep, dropped = drop_overlap(rows, held)
    assert [r["id"] for r in keep] == ["a", "c", "e"] and dropped == 3
    assert all(k is r for k, r in zip(keep, [rows[0], rows[2], rows[4]]))  # the rows themselves, unchanged
    assert drop_overlap(rows, []) == (rows, 0)
    assert not any(overlaps(r["key_phrase"], h, DROP_THRESHOLD) for r in keep for h in held)


def test_materialised_advbench_is_disjoint_from_the_evaluation_phrases(tmp_path):
    rows = advbench_rows()
    held = [rules_extract(r["instruction"])[0] for r in rows[:5]]
    out, dropped = materialise("advbench", tmp_path / "s.jsonl", held)
    got = read_jsonl(out)
    assert dropped >= 5 and len(got) == len(rows) + len(benign_train_rows()) - dropped
    assert not {r["id"] for r in rows[:5]} & {r["id"] for r in got}
    assert not [
        (r["id"], h)
        for r in got
        for h in held
        if overlaps(r.get("key_phrase") or rules_extract(r["instruction"])[0], h, DROP_THRESHOLD)
        or overlaps(r["instruction"], h, DROP_THRESHOLD)
    ]
