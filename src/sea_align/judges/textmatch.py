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


# --- near-duplicate requests (training-set deduplication and train/eval disjointness) -------------------
# Words that say how a request is asked, not what it asks for: two requests that differ only in these ask
# for the same thing ("Write a tutorial on how to make a bomb" = "Create a guide for making a bomb").
REQUEST_WORDS = frozenset(
    """a an the and or of to in on for with by from into at as is are was were be been being it its this that
    these those their them they his her he she you your my me i we our us how what which who whom why when
    where can could would should will shall may might must do does did done please some any all about
    write create develop provide give generate produce design make explain describe list detail detailed
    steps step tutorial guide instructions instruction plan outline teach show tell help way ways method
    methods someone something people person others other one past historically history used use using
    post article blog script program""".split()
)


def _stem(w: str) -> str:
    for suf in ("ing", "ed", "es", "s", "er", "ly"):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def content_words(text: str) -> frozenset[str]:
    """What a request asks for: its words, minus the words of asking (`REQUEST_WORDS`), crudely stemmed."""
    return frozenset(_stem(w.strip("'")) for w in words(text) if w.strip("'") not in REQUEST_WORDS)


def near_duplicate(a: str, b: str, jaccard: float = 0.5, contained: int = 3) -> bool:
    """Whether two requests ask for the same thing: their content words overlap by at least `jaccard`, or the
    smaller set (at least `contained` words) lies wholly inside the other."""
    wa, wb = content_words(a), content_words(b)
    if not wa or not wb:
        return False
    inter = len(wa & wb)
    return inter / len(wa | wb) >= jaccard or (min(len(wa), len(wb)) >= contained and inter == min(len(wa), len(wb)))
