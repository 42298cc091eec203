"""Varied, reasoned refusals for the harmful rows of a text safety set.

A safety set pairs each harmful request with the answer the model is trained to give. When every such row
got one of a handful of canned lines, the model learned trigger words rather than the reason to decline.
Here a refusal is composed from three parts, each picked by its own salted sha256 hash of the row's key:

1. an opener that declines outright ("I can't help with that.");
2. a reason tied to the request's harm scenario (VA-SafetyBench / MM-SafetyBench names, `SCENARIOS`);
3. about two times in three, a safe offer (generic, or one fitting the scenario).

The request's own words are never echoed, and nothing gives steps or partial help. Every combination reads
as a refusal to the project's answer check (`sea_align.judges.refusal.read`); tests/test_refusals.py checks
all of them. Deterministic and offline: the same key always gives the same text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from sea_align.runtime.io import DataError

SCENARIOS: tuple[str, ...] = (
    "IllegalActivity",
    "HateSpeech",
    "MalwareGeneration",
    "PhysicalHarm",
    "EconomicHarm",
    "Fraud",
    "Sex",
    "PrivacyViolence",
)

# Each opener declines on its own, in words the answer check knows as an explicit refusal.
OPENERS: tuple[str, ...] = (
    "I can't help with that.",
    "I won't provide instructions for this.",
    "I'm not able to help with this request.",
    "Sorry, but I can't assist with that.",
    "I must decline this one.",
    "That's not something I'll help with.",
    "I'm not going to help with this.",
    "I can't do that.",
    "I won't help with this request.",
    "I'm unable to assist with that.",
    "I'm sorry, but I can't help with this.",
    "I have to turn down this request.",
    "I will not help with this.",
    "I cannot provide that.",
    "I'm afraid I can't help here.",
    "This isn't something I can help with.",
)

REASONS: dict[str, tuple[str, ...]] = {
    "IllegalActivity": (
        "It would mean helping someone break the law, and that can cause real harm to others.",
        "Helping plan a crime could hurt people and land someone in serious legal trouble.",
        "Assisting with illegal activity can put others at risk and expose you to prosecution.",
        "This would facilitate a crime, and the people affected by it would pay the price.",
        "Guidance like this could be used to commit an offence that harms real people.",
        "Breaking the law in this way puts others at risk, and I don't want to contribute to that.",
        "Supporting illegal schemes causes real damage to victims and communities.",
    ),
    "HateSpeech": (
        "Content like this demeans people for who they are and can fuel real harassment.",
        "It would target people over their identity, and words like these lead to real-world harm.",
        "Hateful material spreads prejudice and makes people less safe.",
        "Attacking a group for their race, religion, gender or other identity causes genuine harm.",
        "Writing this would spread contempt for people based on who they are.",
        "Messages like this are used to intimidate and exclude people, and I won't add to that.",
        "Everyone deserves to be treated with dignity, and this would do the opposite.",
    ),
    "MalwareGeneration": (
        "Malicious code like this can break into systems, steal data and harm many people at once.",
        "Software built to attack or spy on computers causes real damage to people and organisations.",
        "It could be used to compromise devices and accounts that belong to other people.",
        "Malware spreads beyond its first target and can cripple hospitals, businesses and homes.",
        "Writing attack tools would put other people's data and systems at risk.",
        "Code meant to evade security and take control of machines does serious harm.",
        "Breaking into computers without permission is harmful and against the law in most places.",
    ),
    "PhysicalHarm": (
        "Instructions like these could get someone badly hurt or killed.",
        "It could lead to serious injury, and I don't want to contribute to anyone being harmed.",
        "Helping with violence or dangerous weapons puts lives at risk.",
        "Information like this could be used to hurt people, including you.",
        "Physical harm can't be undone, and I won't play a part in it.",
        "This could endanger lives, so it's not something I'll assist with.",
        "The risk of someone getting hurt is simply too high.",
    ),
    "EconomicHarm": (
        "It could cost people their savings or their livelihoods.",
        "Schemes like this cause real financial damage, often to people who can least afford it.",
        "Manipulating markets or finances hurts ordinary people and the wider economy.",
        "It would help exploit people financially, and the losses can be devastating.",
        "Financial harm like this can ruin families and small businesses.",
        "It could be used to rig the system against others and take what isn't yours.",
        "Money schemes of this kind leave people in serious debt and distress.",
    ),
    "Fraud": (
        "It would help deceive people and take their money or trust.",
        "Fraud hurts real victims, who often lose money they never get back.",
        "Scams like this rely on lying to people, and I won't help with deception.",
        "Forged documents and fake identities are used to cheat people and institutions.",
        "It would help trick someone into handing over money or personal details.",
        "Deceiving people for gain is harmful and illegal.",
        "Impersonating others to cheat them causes real financial and emotional harm.",
    ),
    "Sex": (
        "I don't produce sexually explicit material or anything that sexualises people without consent.",
        "Sexual content like this can exploit people and isn't something I create.",
        "It could sexualise someone without their consent, which is a serious harm.",
        "I keep things non-explicit, and I never create anything that could exploit a person.",
        "Explicit sexual material is outside what I'll produce.",
        "Requests like this risk exploiting or degrading people, and consent matters.",
        "Sexual exploitation does lasting harm, and I won't contribute to it.",
    ),
    "PrivacyViolence": (
        "It would invade someone's privacy and could put their safety at risk.",
        "Tracking or exposing a person without their consent can lead to stalking or violence.",
        "Personal information belongs to the person it describes, not to anyone who wants it.",
        "Spying on someone is a serious violation of their privacy and can be illegal.",
        "Collecting someone's private details this way could enable harassment or worse.",
        "Everyone has a right to privacy, and this would undermine it.",
        "Surveillance of this kind can leave people frightened and in danger.",
    ),
}

# Offers that fit any scenario: a safe way on, never a partial answer.
OFFERS: tuple[str, ...] = (
    "I'm happy to help with a safe, legal alternative.",
    "If there's a legitimate goal behind this, tell me and I'll help with that instead.",
    "I can help with something related that doesn't put anyone at risk.",
    "Feel free to ask me about something else.",
    "I can talk about the wider issue, such as its effects on people, instead.",
    "Is there a safer way I can help with what you need?",
    "I'm glad to help with another question.",
    "Let me know if there's something else I can do for you.",
    "If you'd like, we can talk about why this is harmful and how people guard against it.",
    "I can suggest trustworthy resources on the subject instead.",
)

SCENARIO_OFFERS: dict[str, tuple[str, ...]] = {
    "IllegalActivity": (
        "If you need legal advice, a licensed lawyer or a legal aid service can help.",
        "I can explain what the law says about this area and why it exists.",
    ),
    "HateSpeech": (
        "I can help you write about this topic respectfully or explain how to counter hateful messages.",
        "If you've been targeted by hate, I can help you find ways to report it.",
    ),
    "MalwareGeneration": (
        "If you're worried about your own security, I can explain how to protect your accounts.",
        "I can help with defensive security, like hardening a system or spotting malware.",
    ),
    "PhysicalHarm": (
        "If you or someone else is at risk, please contact emergency services or a crisis line.",
        "I can share general safety information instead.",
    ),
    "EconomicHarm": (
        "I can explain how to spot these schemes and protect your money.",
        "If you're in financial trouble, I can point you to legitimate sources of help.",
    ),
    "Fraud": (
        "I can help you recognise and report scams instead.",
        "If you've been scammed, I can explain how to report it and protect yourself.",
    ),
    "Sex": (
        "I'm happy to talk about relationships or sexual health in a respectful, non-explicit way.",
        "If someone is being exploited, please contact the police or a support service.",
    ),
    "PrivacyViolence": (
        "If you're worried about your own privacy, I can explain how to protect your personal data.",
        "If you're being harassed or stalked, I can point you to support services.",
    ),
}


def _check(scenario: str) -> None:
    if scenario not in REASONS:
        raise DataError(f"unknown harm scenario {scenario!r}; expected one of: {', '.join(SCENARIOS)}")


def _pick(seed: str, salt: str, n: int) -> int:
    """An index below `n` from the sha256 of `salt` and `seed` (each part of a refusal uses its own salt)."""
    digest = hashlib.sha256(f"{salt}\x00{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def offers(scenario: str) -> tuple[str, ...]:
    """The safe offers that may close a refusal in `scenario`: the generic ones, then its own."""
    _check(scenario)
    return OFFERS + SCENARIO_OFFERS[scenario]


def compose(opener: str, reason: str, offer: str = "") -> str:
    """One refusal from its parts (the offer is optional)."""
    return " ".join(part for part in (opener, reason, offer) if part)


def refusal(instruction: str, scenario: str, key: str = "") -> str:
    """A refusal of `instruction` that says why (the harm of its scenario), picked deterministically from
    composed parts by a sha256 hash of `key or instruction`; an unknown scenario raises DataError (a
    ValueError) naming it. The instruction's words are never repeated in the answer."""
    _check(scenario)
    seed = key or instruction
    opener = OPENERS[_pick(seed, "opener", len(OPENERS))]
    reasons = REASONS[scenario]
    reason = reasons[_pick(seed, "reason", len(reasons))]
    offer = ""
    if _pick(seed, "offer?", 3):  # 2 of 3 times
        pool = offers(scenario)
        offer = pool[_pick(seed, "offer", len(pool))]
    return compose(opener, reason, offer)


def all_refusals(scenario: str) -> Iterator[str]:
    """Every refusal `refusal` can give in `scenario` (opener x reason x offer-or-none)."""
    _check(scenario)
    for opener in OPENERS:
        for reason in REASONS[scenario]:
            for offer in ("",) + offers(scenario):
                yield compose(opener, reason, offer)
