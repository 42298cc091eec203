"""The judge registry (`--judge NAME`). A judge maps (prompt, response, harmful) to a verdict:
`unsafe` (harmful request answered), `refused`, and the judge's raw output. A judge that cannot
decide returns `unsafe=None` (unscored): it is counted, and kept out of every rate — never safe.

Judges: `refusal` (phrase matching, offline; refusal.py), `openai` (any OpenAI-compatible chat endpoint,
few-shot safe/unsafe prompt, temperature 0; openai.py), `hf-classifier` (a local HF safety classifier, hf.py).
A judge may carry a `config` dict (model, endpoint, path) that summaries record. docs/judges.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

JUDGES: dict[str, Callable[..., Judge]] = {}


@dataclass
class Verdict:
    refused: bool | None  # the model declined (None = unscored)
    unsafe: bool | None  # harmful item answered (None = unscored or a harmless item)
    raw: str  # what the judge itself said


class Judge(Protocol):
    name: str
    version: str

    def judge(self, samples: list[dict[str, Any]]) -> list[Verdict]: ...


def register_judge(name: str):
    def deco(factory):
        JUDGES[name] = factory
        return factory

    return deco


def judge_kwargs(pairs: list[str]) -> dict[str, Any]:
    """['timeout=30', 'model=x'] -> {'timeout': 30, 'model': 'x'} (JSON values parsed: numbers, true/false)."""
    import json

    from sea_align.runtime.io import DataError

    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise DataError(f"judge setting {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        try:
            out[k.strip().replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip().replace("-", "_")] = v
    return out


def get_judge(name: str, **kwargs: Any) -> Judge:
    if name not in JUDGES:
        raise ValueError(f"unknown judge '{name}' (known: {', '.join(sorted(JUDGES))})")
    try:
        return JUDGES[name](**kwargs)
    except TypeError as e:  # an unknown setting: one line naming it
        import re

        from sea_align.runtime.io import DataError

        raise DataError(f"judge '{name}': " + re.sub(r"^[\w.]*__init__\(\) ", "", str(e))) from None
