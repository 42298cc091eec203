"""Readers of text safety sets (docs/sources.md): HarmBench behaviours, AdvBench, PKU-SafeRLHF preference
pairs, BeaverTails, and chat JSONL (`messages`) / ShareGPT (`conversations`). Each is a table reader: the
same record converter serves CSV, JSON, JSONL, parquet and saved Hugging Face data sets. A harmful row
without a safe answer gets a refusal later (`registry.read_safety_set`).

`label_source` says where a row's `harmful` label comes from: `format` (the data set defines it: AdvBench
and HarmBench requests are harmful, PKU-SafeRLHF and BeaverTails carry safety annotations) or `file` (the
record's own `harmful` field). Chat and ShareGPT records without `harmful` are *unlabelled*: no `harmful`
key, and `prepare`'s answer check decides (stages/answer_check.py)."""

from __future__ import annotations

from typing import Any

from sea_align.judges import is_refusal
from sea_align.runtime.io import DataError
from sea_align.sources.common import Row, flag, ident, table_reader, text
from sea_align.sources.keyphrase import rules_extract

OPTIONAL = ("id", "category", "key_phrase", "phrase_type", "rejected")  # carried over from chat records


def _harmbench(rec: dict[str, Any], loc: str) -> list[Row]:
    """A contextual behaviour keeps its context (HarmBench's own layout: context, a rule, the request);
    the key phrase always comes from the behaviour itself."""
    behaviour, context = text(rec, "Behavior", loc), text(rec, "ContextString", loc, False)
    phrase, ptype = rules_extract(behaviour)
    return [
        {
            "id": text(rec, "BehaviorID", loc),
            "category": text(rec, "SemanticCategory", loc, False) or "default",
            "instruction": f"{context}\n\n---\n\n{behaviour}" if context else behaviour,
            "key_phrase": phrase or behaviour,
            "phrase_type": ptype,
            "harmful": True,
            "label_source": "format",
            "functional_category": text(rec, "FunctionalCategory", loc, False) or "standard",
        }
    ]


def _advbench(rec: dict[str, Any], loc: str) -> list[Row]:
    return [{"category": "default", "instruction": text(rec, "goal", loc), "harmful": True, "label_source": "format"}]


def _which(rec: dict[str, Any], key: str, loc: str) -> int:
    v = ident(rec, key, loc)
    if v not in ("0", "1"):
        raise DataError(f"{loc}: field '{key}' must be 0 or 1, got {v[:20]!r}")
    return int(v)


def _pku(rec: dict[str, Any], loc: str) -> list[Row]:
    """A preference pair -> a DPO pair: response = the safer answer, rejected = the other. Harmful unless
    both answers are safe; a harmful row's target must refuse, so where the safer answer is unsafe or does
    not refuse, the row gets a refusal later (`read_safety_set`)."""
    answers = [text(rec, f"response_{k}", loc) for k in (0, 1)]
    safe = [flag(rec, f"is_response_{k}_safe", loc) for k in (0, 1)]
    k = _which(rec, "safer_response_id", loc)
    harmful = not all(safe)
    row = {
        "instruction": text(rec, "prompt", loc),
        "category": "default",
        "harmful": harmful,
        "label_source": "format",
        "rejected": answers[1 - k],
    }
    if safe[k] and (not harmful or is_refusal(answers[k])):
        row["response"] = answers[k]
    return [row]


def _beavertails(rec: dict[str, Any], loc: str) -> list[Row]:
    """A safe pair keeps its answer (benign row); an unsafe one becomes refusal vs. the unsafe answer."""
    answer, safe = text(rec, "response", loc), flag(rec, "is_safe", loc)
    cats = rec.get("category")
    if cats is not None and not isinstance(cats, dict):
        raise DataError(f"{loc}: field 'category' must be an object {{name: true/false}}")
    hit = [str(c) for c, on in (cats or {}).items() if on is True or str(on).lower() == "true"]
    row = {
        "instruction": text(rec, "prompt", loc),
        "category": hit[0] if hit else "default",
        "harmful": not safe,
        "label_source": "format",
    }
    row.update({"response": answer} if safe else {"rejected": answer})
    return [row]


def _content(turn: dict[str, Any], key: str, loc: str) -> str:
    """A turn's text: a string, or a list of parts [{type: text, text: ...}, ...] joined."""
    v = turn.get(key)
    if isinstance(v, list):
        v = " ".join(str(p.get("text", "")) for p in v if isinstance(p, dict) and p.get("type") == "text")
    return text({key: v}, key, loc, False)


def _dialogue(
    rec: dict[str, Any], loc: str, field: str, who: str, what: str, users: set[str], bots: set[str]
) -> list[Row]:
    """instruction = the first user turn, response = the first assistant turn after it; labelled only when
    the record has `harmful`."""
    turns = rec.get(field)
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise DataError(f"{loc}: field '{field}' must be a list of objects")
    row: Row = {"category": "default"}
    if rec.get("harmful") is not None:
        row.update(harmful=flag(rec, "harmful", loc), label_source="file")
    for k, turn in enumerate(turns):
        role = str(turn.get(who, "")).lower()
        if role in users and "instruction" not in row:
            row["instruction"] = _content(turn, what, f"{loc}: {field}[{k}]")
        elif role in bots and "instruction" in row:
            row["response"] = _content(turn, what, f"{loc}: {field}[{k}]")
            break
    if not row.get("instruction"):
        raise DataError(f"{loc}: field '{field}' has no {'/'.join(sorted(users))} turn with text")
    if not row.get("response"):
        row.pop("response", None)
    for key in OPTIONAL:
        if rec.get(key) is not None:
            row[key] = ident(rec, key, loc)
    return [row]


def _chat(rec: dict[str, Any], loc: str) -> list[Row]:
    return _dialogue(rec, loc, "messages", "role", "content", {"user"}, {"assistant"})


def _sharegpt(rec: dict[str, Any], loc: str) -> list[Row]:
    return _dialogue(rec, loc, "conversations", "from", "value", {"human", "user"}, {"gpt", "assistant", "chatgpt"})


READERS = (
    table_reader(
        "harmbench",
        {"Behavior", "BehaviorID"},
        _harmbench,
        "HarmBench behaviours CSV (Behavior, FunctionalCategory, SemanticCategory, Tags, ContextString, BehaviorID)",
    ),
    table_reader("advbench", {"goal", "target"}, _advbench, "AdvBench harmful_behaviors.csv (goal, target)"),
    table_reader(
        "pku-saferlhf",
        {"prompt", "response_0", "response_1", "safer_response_id"},
        _pku,
        "PKU-SafeRLHF pairs (prompt, response_0/1, is_response_0/1_safe, safer_response_id)",
    ),
    table_reader(
        "beavertails",
        {"prompt", "response", "is_safe"},
        _beavertails,
        "BeaverTails (prompt, response, category {name: bool}, is_safe)",
    ),
    table_reader("chat", {"messages"}, _chat, "chat JSONL {messages: [{role, content}, ...]}"),
    table_reader("sharegpt", {"conversations"}, _sharegpt, "ShareGPT {conversations: [{from, value}, ...]}"),
)
