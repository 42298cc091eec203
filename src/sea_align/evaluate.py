"""Stage 4 — evaluation on a generic benchmark file.

Benchmark JSONL rows: `id`, `category`, `prompt`, `media` (list of {"type": image|video|audio,
"path": ...}, relative paths resolve against the benchmark file's folder; empty = text only),
`harmful` (bool); optional `attack`. Output: `samples.jsonl` (appended per batch: a rerun resumes)
and `summary.json` (schema in docs/stages.md)."""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .faults import crash_point
from .io import DataError, append_jsonl, atomic_write_json, read_jsonl, read_jsonl_tolerant, repair_tail
from .judges import get_judge
from .media import check_media
from .models.base import BaseAdapter, Item

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    out_dir: Path
    summary: dict[str, Any]


def load_bench(path: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    path = Path(path)
    rows = read_jsonl(path, required=("id", "prompt", "harmful"),
                      types={"prompt": str, "harmful": bool, "media": list, "category": str})
    seen = set()
    for r in rows:
        where = f"{path}:{r['_line']}"
        if not isinstance(r["id"], (str, int)) or isinstance(r["id"], bool):
            raise DataError(f"{where}: field 'id' must be a string or integer, got {type(r['id']).__name__}")
        if "attack" in r and r["attack"] is not None and not isinstance(r["attack"], str):
            raise DataError(f"{where}: field 'attack' must be str, got {type(r['attack']).__name__}")
        r["id"] = str(r["id"])
        if r["id"] in seen:
            raise DataError(f"{where}: duplicate id '{r['id']}'")
        seen.add(r["id"])
        if r.get("category") is None:
            r["category"] = "default"
        media = r.get("media") or []
        if len(media) > 1:
            raise DataError(f"{where}: field 'media' has {len(media)} items; one per row is supported")
        for m in media:
            if not isinstance(m, dict) or m.get("type") not in ("image", "video", "audio") \
                    or not isinstance(m.get("path"), str) or not m["path"] or "\0" in m["path"]:
                raise DataError(f"{where}: field 'media' items need type image|video|audio and a path")
            p = Path(m["path"])
            m["path"] = str(p if p.is_absolute() else (path.parent / p))
            try:
                found = Path(m["path"]).is_file()
            except OSError:  # e.g. a name longer than the file system allows
                found = False
            if not found:
                raise DataError(f"{where}: media file not found: {m['path'][:200]}")
        r["media"] = media
    return rows[:limit] if limit else rows


def summarize(samples: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """n / n_scored / n_unscored; ASR = unsafe / scored over harmful items, macro over categories;
    over-refusal on harmless items; `None` where a file has no items of that kind."""
    harmful = [s for s in samples if s.get("harmful", True)]
    harmless = [s for s in samples if not s.get("harmful", True)]
    scored_h = [s for s in harmful if s.get("unsafe") is not None]
    per_cat: dict[str, dict[str, Any]] = {}
    by_cat = defaultdict(list)
    for s in harmful:
        by_cat[s.get("category", "default")].append(s)
    for cat, ss in sorted(by_cat.items()):
        sc = [s for s in ss if s.get("unsafe") is not None]
        per_cat[cat] = {"n": len(ss), "n_scored": len(sc),
                        "asr": (sum(bool(s["unsafe"]) for s in sc) / len(sc)) if sc else None}
    rates = [c["asr"] for c in per_cat.values() if c["asr"] is not None]
    per_attack: dict[str, dict[str, Any]] = {}
    by_att = defaultdict(list)
    for s in samples:
        by_att[s.get("attack") or "-"].append(s)
    for att, ss in sorted(by_att.items()):
        h = [s for s in ss if s.get("harmful", True) and s.get("unsafe") is not None]
        b = [s for s in ss if not s.get("harmful", True) and s.get("refused") is not None]
        per_attack[att] = {"n": len(ss), "asr": sum(bool(s["unsafe"]) for s in h) / len(h) if h else None,
                           "refusal_rate_harmless": sum(bool(s["refused"]) for s in b) / len(b) if b else None}
    scored_b = [s for s in harmless if s.get("refused") is not None]
    n_scored = len(scored_h) + len(scored_b)
    out = {
        "n": len(samples), "n_scored": n_scored, "n_unscored": len(samples) - n_scored,
        "n_harmful": len(harmful), "n_harmless": len(harmless),
        "asr": (sum(rates) / len(rates)) if rates else None,
        "asr_micro": (sum(bool(s["unsafe"]) for s in scored_h) / len(scored_h)) if scored_h else None,
        "per_category": per_cat, "per_attack": per_attack,
        "refusal_rate_harmless": (sum(bool(s["refused"]) for s in scored_b) / len(scored_b)) if scored_b else None,
    }
    out.update(extra or {})
    return out


def _items(adapter: BaseAdapter, rows: list[dict[str, Any]]) -> list[Item]:
    items = []
    for r in rows:
        if r["media"]:
            m = r["media"][0]
            feats = adapter.encode(m["type"], [m["path"]])[0]
            items.append(Item(r["prompt"], m["type"], adapter.to_llm(m["type"], feats), feats.meta))
        else:
            items.append(Item(r["prompt"]))
    return items


def run_evaluate(adapter: BaseAdapter, bench: str | Path | list[str], out_dir: str | Path, judge: str = "refusal",
                 max_new_tokens: int = 48, batch_size: int = 8, limit: int = 0, info: dict[str, Any] | None = None,
                 progress: bool = True) -> EvalResult:
    out_dir = Path(out_dir)
    benches = [bench] if isinstance(bench, (str, Path)) else list(bench)
    if not benches:
        raise DataError("evaluate: no benchmark file given")
    rows: list[dict[str, Any]] = []
    for b in benches:
        for r in load_bench(b, limit):
            r["bench"] = str(b)
            rows.append(r)
    for r in rows:
        if r["media"]:
            adapter.check_modality(r["media"][0]["type"])
            check_media(r["media"][0]["type"], r["media"][0]["path"])
    j = get_judge(judge)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a bad input writes nothing
    samples_path = out_dir / "samples.jsonl"
    repair_tail(samples_path)  # a crash mid-append left a torn line: cut it before appending more
    done = {(s.get("bench"), s.get("id")) for s in read_jsonl_tolerant(samples_path)}
    todo = [r for r in rows if (r["bench"], r["id"]) not in done]
    gen_cfg = {"do_sample": False, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "decoding": "greedy"}
    t0 = time.perf_counter()
    # group by modality so a batch shares its media shape; keep file order inside a group
    groups = defaultdict(list)
    for r in todo:
        groups[r["media"][0]["type"] if r["media"] else "text"].append(r)
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc="evaluate", disable=not progress,
              unit="item") as bar:
        for _, grp in groups.items():
            for i in range(0, len(grp), batch_size):
                chunk = grp[i:i + batch_size]
                responses = adapter.generate(_items(adapter, chunk), max_new_tokens=max_new_tokens)
                recs = [{"bench": r["bench"], "id": r["id"], "category": r["category"], "attack": r.get("attack"),
                         "harmful": r["harmful"], "prompt": r["prompt"], "media": r["media"], "response": resp}
                        for r, resp in zip(chunk, responses)]
                for rec, v in zip(recs, j.judge(recs)):
                    rec.update({"refused": v.refused, "unsafe": v.unsafe, "judge": j.name, "judge_raw": v.raw})
                    append_jsonl(samples_path, rec)
                crash_point("eval.batch")
                bar.update(len(chunk))
    keys = {(r["bench"], r["id"]) for r in rows}
    latest = {(s.get("bench"), s.get("id")): s for s in read_jsonl_tolerant(samples_path)}
    samples = [s for k, s in latest.items() if k in keys]
    extra = {"judge": {"name": j.name, "version": j.version}, "generation": gen_cfg,
             "benchmarks": [str(b) for b in benches], "seconds": round(time.perf_counter() - t0, 2),
             "media": "real files" if any(r["media"] for r in rows) else "absent (text only)"}
    extra.update(info or {})
    summary = summarize(samples, extra)
    atomic_write_json(out_dir / "summary.json", summary)
    log.info("evaluated %d items: ASR %s, over-refusal %s", summary["n"], summary["asr"],
             summary["refusal_rate_harmless"])
    return EvalResult(out_dir, summary)
