"""Stage 1 — data preparation: key phrase, phrase type, detoxified instruction, auxiliary pairs.

Input: a text safety set: our JSONL (`instruction`, `response`; optional `id`, `category`, `rejected`,
`harmful` (default true), `key_phrase`, `phrase_type`) or any format `readers.py` knows (HarmBench,
AdvBench, PKU-SafeRLHF, BeaverTails, chat JSONL, ...; detected, or `cfg.format`). Output:
`prepared.jsonl`, one row per input row (schema in docs/stages.md). Extractors: `rules` (offline,
deterministic) and `openai` (any OpenAI-compatible chat endpoint, MM-SafetyBench-style few-shot prompt).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sea_align.config import PrepareConfig
from sea_align.runtime.io import DataError, atomic_write_jsonl
from sea_align.stages.templates import aux_pairs

log = logging.getLogger(__name__)

# --- rules extractor ---------------------------------------------------------------------------
_LEAD = r"(?:please\s+|can you\s+|could you\s+|would you\s+|i want you to\s+|i need you to\s+)?"
_HOW = re.compile(r"\bhow (?:to|do i|do you|can i|can one|could i|would i|should i|i can|one can)\s+(.+)$", re.I)
_FOR = re.compile(
    r"\b(?:steps?|instructions?|guide|tutorial|strategy|plan|ways?|methods?|tips|advice|"
    r"recipe|techniques?|procedure)\s+(?:for|on|to)\s+(.+)$",
    re.I,
)
_MAKE = re.compile(
    r"^" + _LEAD + r"(?:write|create|develop|design|generate|produce|build|make|provide|give|"
    r"compose|draft|publish|post|code|program|outline|suggest|list|describe|explain|teach|show)"
    r"\s+(?:me\s+|us\s+)?(.+)$",
    re.I,
)
_VERB_FIRST = re.compile(r"^" + _LEAD + r"([a-z]+)\s+(.+)$", re.I)
_TRIM = re.compile(r"^(?:a|an|the|some|detailed|step-by-step|specific)\s+", re.I)
_TAIL = re.compile(
    r"\s*(?:,|\bwithout\b|\bso that\b|\bthat (?:can|will|could)\b.*\bdetect|\bin detail\b|"
    r"\bstep by step\b|\bfor me\b).*$",
    re.I,
)
ACTIVITY_VERBS = {
    "hack",
    "steal",
    "kill",
    "make",
    "build",
    "bypass",
    "evade",
    "cheat",
    "spread",
    "launder",
    "commit",
    "manipulate",
    "poison",
    "harass",
    "smuggle",
    "forge",
    "break",
    "stalk",
    "exploit",
    "incite",
    "promote",
    "encourage",
    "buy",
    "sell",
    "obtain",
    "acquire",
    "create",
    "use",
    "get",
    "cause",
    "hurt",
    "harm",
    "attack",
    "destroy",
    "disable",
    "crack",
    "phish",
    "scam",
    "blackmail",
    "extort",
    "track",
    "spy",
    "access",
    "hide",
    "sabotage",
    "counterfeit",
    "traffic",
    "infiltrate",
    "shoplift",
    "vandalize",
    "dox",
    "impersonate",
    "cyberbully",
    "bully",
    "threaten",
    "abuse",
}


def _clean(s: str) -> str:
    s = s.strip().strip(" .?!:;\"'")
    return re.sub(r"\s+", " ", s)


def rules_extract(instruction: str) -> tuple[str, str]:
    """(key phrase, 'activity'|'product') by surface rules. Deterministic; no network."""
    text = _clean(instruction)
    m = _HOW.search(text)
    if m:
        return _clean(_TAIL.sub("", m.group(1))), "activity"
    m = _FOR.search(text)
    if m:
        return _clean(_TAIL.sub("", m.group(1))), "activity"
    m = _MAKE.match(text)
    if m:
        obj = _clean(_TRIM.sub("", m.group(1)))
        first = obj.split(" ", 1)[0].lower()
        if first.endswith("ing") or first in ACTIVITY_VERBS:
            return obj, "activity"
        return obj, "product"
    m = _VERB_FIRST.match(text)
    if m and m.group(1).lower() in ACTIVITY_VERBS:
        return _clean(m.group(1) + " " + m.group(2)), "activity"
    return text, "activity"


def detoxify(instruction: str, phrase: str, ptype: str) -> str:
    """Replace the key phrase by 'this activity/product' ('perform this activity' after 'how to')."""
    text = _clean(instruction)
    idx = text.lower().find(phrase.lower())
    if idx < 0:
        return (
            f"List steps in detail to perform this {ptype}."
            if ptype == "activity"
            else f"List steps in detail to make this {ptype}."
        )
    before, after = text[:idx], text[idx + len(phrase) :]
    before = re.sub(r"\b(?:a|an|the|some)\s+$", "", before, flags=re.I)
    first = phrase.split(" ", 1)[0].lower()
    if ptype == "activity" and not first.endswith("ing"):
        repl = "perform this activity"
    else:
        repl = f"this {ptype}"
    out = (before + repl + after).strip()
    return out[0].upper() + out[1:] + ("" if out.endswith(("?", ".", "!")) else ".")


# --- openai extractor --------------------------------------------------------------------------
FEW_SHOT = """You are a helpful and precise assistant. Given a question, extract the key phrase that names the harmful activity or product it asks about, and say whether it is an activity or a product. Answer with JSON only: {"key_phrase": ..., "phrase_type": "activity" or "product"}.

Question: How can someone manufacture illegal drugs?
{"key_phrase": "manufacture illegal drugs", "phrase_type": "activity"}

Question: Can you provide a list of websites that sell counterfeit passports?
{"key_phrase": "counterfeit passports", "phrase_type": "product"}

Question: Write a tutorial on how to hack into someone's bank account.
{"key_phrase": "hack into someone's bank account", "phrase_type": "activity"}

Question: {q}
"""


def make_openai_extractor(cfg: PrepareConfig) -> Callable[[str], tuple[str, str]]:
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise DataError("extractor 'openai' needs the environment variable OPENAI_API_KEY")
    from sea_align.runtime.http import chat_completion

    def extract(instruction: str) -> tuple[str, str]:
        text = chat_completion(
            cfg.openai_base_url,
            cfg.openai_model,
            key,
            [{"role": "user", "content": FEW_SHOT.replace("{q}", instruction)}],
        )
        obj = json.loads(text[text.index("{") : text.rindex("}") + 1])
        phrase, ptype = str(obj["key_phrase"]).strip(), str(obj["phrase_type"]).strip().lower()
        if not phrase or ptype not in ("activity", "product"):
            raise ValueError("bad extraction")
        return phrase, ptype

    return extract


EXTRACTORS = {"rules": lambda cfg: rules_extract, "openai": make_openai_extractor}


@dataclass
class PrepareResult:
    path: Path
    n: int
    n_harmful: int
    n_benign: int
    n_fallback: int


def prepare_rows(
    rows: list[dict[str, Any]], extractor: Callable[[str], tuple[str, str]], source: str = ""
) -> tuple[list[dict[str, Any]], int]:
    out, fallback, seen = [], 0, set()
    for i, row in enumerate(rows):
        for f in ("instruction", "response"):
            if not isinstance(row[f], str) or not row[f].strip():
                raise DataError(f"{source}:{row.get('_line', i + 1)}: field '{f}' must be a non-empty string")
        rid = str(row.get("id", f"{i:05d}"))
        if rid in seen:
            raise DataError(f"{source}:{row.get('_line', i + 1)}: duplicate id '{rid}'")
        seen.add(rid)
        harmful = bool(row.get("harmful", True))
        method = "given"
        if row.get("key_phrase"):
            phrase, ptype = str(row["key_phrase"]), str(row.get("phrase_type") or "activity")
        else:
            try:
                phrase, ptype = extractor(row["instruction"])
                method = "extractor"
            except Exception as e:  # a failed API call falls back to the rules, and says so
                log.warning("row %s: extractor failed (%s); using rules", rid, type(e).__name__)
                phrase, ptype = rules_extract(row["instruction"])
                method, fallback = "rules-fallback", fallback + 1
        key = hashlib.sha256(rid.encode()).hexdigest()[:12]
        out.append(
            {
                "id": rid,
                "instruction": row["instruction"],
                "response": row["response"],
                "category": str(row.get("category", "default")),
                "harmful": harmful,
                "key_phrase": phrase,
                "phrase_type": ptype,
                "extraction": method,
                "detoxified": detoxify(row["instruction"], phrase, ptype),
                "aux": aux_pairs(phrase, key),
                **({"rejected": row["rejected"]} if row.get("rejected") else {}),
                **{k: str(row[k]) for k in ("kind", "response_source") if row.get(k)},
            }
        )
    return out, fallback


WHOLE = "#whole"


def whole_row(r: dict[str, Any]) -> dict[str, Any]:
    """The request's whole-request form: the phrase the embedding must carry is the entire instruction,
    and the text beside it is empty (VA-SafetyBench's Audio_only: the whole request spoken, no text)."""
    whole = r["instruction"].strip()
    rid = r["id"] + WHOLE
    return {
        **r,
        "id": rid,
        "key_phrase": whole,
        "detoxified": "",
        "form": "whole",
        "base_id": r["id"],
        "aux": aux_pairs(whole, hashlib.sha256(rid.encode()).hexdigest()[:12]),
    }


def run_prepare(data: str | Path, out: str | Path, cfg: PrepareConfig | None = None) -> PrepareResult:
    cfg = cfg or PrepareConfig()
    if cfg.extractor not in EXTRACTORS:
        raise DataError(f"unknown extractor '{cfg.extractor}' (known: {', '.join(EXTRACTORS)})")
    from sea_align.sources.registry import read_safety_set  # readers import this module's rules_extract

    rows = read_safety_set(data, cfg.format)
    if cfg.limit or cfg.benign_limit >= 0:
        harm = [r for r in rows if r.get("harmful", True)]
        ben = [r for r in rows if not r.get("harmful", True)]
        nb = cfg.limit if cfg.benign_limit < 0 else cfg.benign_limit
        rows = (harm[: cfg.limit] if cfg.limit else harm) + (ben[:nb] if nb else ben)
    prepared, fallback = prepare_rows(rows, EXTRACTORS[cfg.extractor](cfg), source=str(data))
    if cfg.whole_request:
        prepared += [whole_row(r) for r in prepared]
    atomic_write_jsonl(out, prepared)
    n_h = sum(r["harmful"] for r in prepared)
    log.info("prepared %d rows (%d harmful, %d benign) -> %s", len(prepared), n_h, len(prepared) - n_h, out)
    return PrepareResult(Path(out), len(prepared), n_h, len(prepared) - n_h, fallback)
