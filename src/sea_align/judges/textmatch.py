"""Fuzzy phrase matching used by verification and by the reading measurements."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def phrase_score(phrase: str, text: str) -> float:
    """Best similarity (0..1) between `phrase` and any window of `text` with the same number of words."""
    p, t = words(phrase), words(text)
    if not p or not t:
        return 0.0
    target = " ".join(p)
    best = 0.0
    for n in {max(1, len(p) - 1), len(p), len(p) + 1}:
        for i in range(0, max(1, len(t) - n + 1)):
            best = max(best, SequenceMatcher(None, target, " ".join(t[i : i + n])).ratio())
            if best == 1.0:
                return best
    return best


def contains_phrase(phrase: str, text: str, threshold: float = 0.8) -> bool:
    return phrase_score(phrase, text) >= threshold
