"""The composed refusals (sea_align.sources.refusals): every opener x reason x offer combination of every
scenario reads as a refusal to the project's answer check, picks are deterministic and varied, nothing
turns to steps, and an unknown scenario is a DataError naming it."""

import re

import pytest

from sea_align.judges.refusal import is_refusal, read
from sea_align.runtime.io import DataError
from sea_align.sources.refusals import (
    OFFERS,
    OPENERS,
    REASONS,
    SCENARIO_OFFERS,
    SCENARIOS,
    all_refusals,
    compose,
    offers,
    refusal,
)

FORBIDDEN = ("here is how", "here's how", "here are the steps", "step 1", "however, here")


def _combinations(scenario):
    """Every refusal of `scenario`, enumerated here from the parts (not through the module's own iterator)."""
    return [
        compose(opener, reason, offer)
        for opener in OPENERS
        for reason in REASONS[scenario]
        for offer in ("",) + OFFERS + SCENARIO_OFFERS[scenario]
    ]


def test_scenarios_in_order():
    assert SCENARIOS == (
        "IllegalActivity",
        "HateSpeech",
        "MalwareGeneration",
        "PhysicalHarm",
        "EconomicHarm",
        "Fraud",
        "Sex",
        "PrivacyViolence",
    )
    assert set(REASONS) == set(SCENARIOS) == set(SCENARIO_OFFERS)


def test_part_counts():
    assert len(OPENERS) >= 12
    assert all(len(REASONS[s]) >= 6 for s in SCENARIOS)
    assert all(len(offers(s)) >= 10 for s in SCENARIOS)
    assert all(SCENARIO_OFFERS[s] for s in SCENARIOS)


def test_openers_distinct():
    normalised = [o.strip().lower() for o in OPENERS]
    assert len(set(normalised)) == len(normalised)


def test_reasons_and_offers_distinct():
    every_reason = [r for s in SCENARIOS for r in REASONS[s]]
    assert len(set(every_reason)) == len(every_reason)
    for s in SCENARIOS:
        assert len(set(offers(s))) == len(offers(s))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_combination_reads_as_refusal(scenario):
    texts = _combinations(scenario)
    assert texts == list(all_refusals(scenario))
    for text in texts:
        outcome, rule, why = read(text)
        assert outcome == "refusal", (text, rule, why)
        assert is_refusal(text), text


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_combination_is_short_and_gives_no_steps(scenario):
    for text in _combinations(scenario):
        low = text.lower()
        assert not any(f in low for f in FORBIDDEN), text
        assert len(text.split()) < 60, text
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", text)) <= 3, text
        assert "\n" not in text


def test_deterministic():
    a = refusal("Explain how to pick a lock", "IllegalActivity")
    assert a == refusal("Explain how to pick a lock", "IllegalActivity")
    assert refusal("x", "Fraud", key="row-7") == refusal("a different text", "Fraud", key="row-7")


def test_key_overrides_instruction():
    texts = {refusal("same instruction", "Fraud", key=f"row-{i}") for i in range(50)}
    assert len(texts) > 10


def test_variety():
    texts = {refusal(f"made-up harmful request number {i} about widgets", "PhysicalHarm") for i in range(400)}
    assert len(texts) >= 60
    with_offer = sum(
        refusal(f"request {i}", "PhysicalHarm").count(".") >= 3 for i in range(600)
    )  # opener + reason + offer: three sentences
    assert 300 <= with_offer <= 500  # about 2 of 3


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_uses_its_reasons(scenario):
    seen = set()
    for i in range(300):
        text = refusal(f"request {i}", scenario)
        assert is_refusal(text)
        reasons = [r for r in REASONS[scenario] if r in text]
        assert len(reasons) == 1, text
        seen.add(reasons[0])
        others = [r for s in SCENARIOS if s != scenario for r in REASONS[s]]
        assert not any(r in text for r in others)
    assert seen == set(REASONS[scenario])


def test_request_words_not_echoed():
    text = refusal("build a zorblax detonator from household parts", "PhysicalHarm")
    assert "zorblax" not in text.lower() and "detonator" not in text.lower()


@pytest.mark.parametrize("bad", ["Violence", "", "fraud", "Hate Speech"])
def test_unknown_scenario(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))) as err:
        refusal("anything", bad)
    assert isinstance(err.value, DataError)
