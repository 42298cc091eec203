"""Small statistics for the summaries and the report, written from their definitions (no extra dependency).

- `wilson(k, n)`: the Wilson score interval for a binomial proportion k/n (95% at z = 1.96). Unlike the
  normal ("Wald") interval it stays inside [0, 1] and does not collapse to a point at k = 0 or k = n.
- `rate(k, n)`: {"k", "n", "rate", "ci95": [lo, hi]}; rate and bounds are None when n = 0.
- `token_f1(pred, ref)`: SQuAD-style token F1 over the lower-cased words of `textmatch.words` (bag of words,
  counts clipped by the other side). Unlike SQuAD no articles are dropped.
- `rouge_l(pred, ref)`: ROUGE-L F-measure (beta = 1): 2PR / (P + R) with P = LCS / len(pred),
  R = LCS / len(ref), LCS = longest common subsequence of the same word lists.
Both similarity scores are 1.0 for two empty texts and 0.0 when exactly one is empty."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from sea_align.judges.textmatch import words


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """Wilson score interval (lo, hi) for k successes out of n trials; (None, None) when n == 0."""
    if not n:
        return (None, None)
    if k < 0 or k > n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # clamp float noise at the ends (k = 0 gives centre == half exactly in exact arithmetic)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": (k / n) if n else None, "ci95": [lo, hi]}


def token_f1(pred: str, ref: str) -> float:
    p, r = words(pred or ""), words(ref or "")
    if not p or not r:
        return float(p == r)
    same = sum((Counter(p) & Counter(r)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


def lcs_len(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row of memory)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    p, r = words(pred or ""), words(ref or "")
    if not p or not r:
        return float(p == r)
    lcs = lcs_len(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
