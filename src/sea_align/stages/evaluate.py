"""Stage 4 — evaluation on a generic benchmark file.

Benchmark JSONL rows: `id`, `category`, `prompt`, `media` (list of {"type": image|video|audio,
"path": ...}, relative paths resolve against the benchmark file's folder; empty = text only),
`harmful` (bool); optional `attack`. Output: `samples.jsonl` (appended per batch: a rerun resumes)
and `summary.json` (schema in docs/stages.md)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sea_align.config import EvaluateConfig
from sea_align.judges import JUDGES, get_judge, judge_kwargs
from sea_align.models.base import Item, ModelAdapter
from sea_align.models.media import check_media
from sea_align.runtime.faults import crash_point
from sea_align.runtime.io import (
    DataError,
    append_jsonl,
    atomic_write_json,
    read_jsonl,
    read_jsonl_tolerant,
    repair_tail,
)
from sea_align.stages.eval_summary import summarize
from sea_align.stages.records import validate_eval_record

log = logging.getLogger(__name__)
# optional bench fields copied into each sample record: `kind` (harmful | benign | borderline | reading)
# splits rates by what the item is; `expect` is the text a reading item's answer must contain; `request` is
# the request in words (for a media item, what the image, video or clip carries), which the `harm` judge reads
PASS_THROUGH = ("kind", "expect", "request")


@dataclass
class EvalResult:
    out_dir: Path
    summary: dict[str, Any]


def load_bench(path: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    path = Path(path)
    rows = read_jsonl(
        path,
        required=("id", "prompt", "harmful"),
        types={"prompt": str, "harmful": bool, "media": list, "category": str},
    )
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
            if (
                not isinstance(m, dict)
                or m.get("type") not in ("image", "video", "audio")
                or not isinstance(m.get("path"), str)
                or not m["path"]
                or "\0" in m["path"]
            ):
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


def media_modality(rows: Iterable[dict[str, Any]]) -> str | None:
    """The media type all `rows` share (image | video | audio), which picks the form a model loads in
    (sea-tiny-vl is LLaVA for images, LLaVA-NeXT-Video for video). None: text only, or a mix of types
    (the model's default form then; items it cannot take are an error)."""
    kinds = {m["type"] for r in rows for m in r.get("media") or []}
    if len(kinds) > 1:
        log.warning("benchmarks mix %s media: the model loads in its default form", " and ".join(sorted(kinds)))
    return kinds.pop() if len(kinds) == 1 else None


def _items(adapter: ModelAdapter, rows: list[dict[str, Any]]) -> list[Item]:
    items = []
    for r in rows:
        if r["media"]:
            m = r["media"][0]
            feats = adapter.encode(m["type"], [m["path"]])[0]
            items.append(Item(r["prompt"], m["type"], adapter.to_llm(m["type"], feats), feats.meta))
        else:
            items.append(Item(r["prompt"]))
    return items


def _batches(rows: list[dict[str, Any]], batch_size: int) -> list[list[dict[str, Any]]]:
    """The one-process batches in run order: rows grouped by modality (a batch shares its media shape),
    file order inside a group, `batch_size` rows each. A sharded run hands these whole batches round-robin
    to the processes, so every batch (and its padding) is the one a single process runs."""
    groups = defaultdict(list)
    for r in rows:
        groups[r["media"][0]["type"] if r["media"] else "text"].append(r)
    return [grp[i : i + batch_size] for grp in groups.values() for i in range(0, len(grp), batch_size)]


def _sample_keys(path: Path) -> set[tuple[Any, Any]]:
    return {(s.get("bench"), s.get("id")) for s in read_jsonl_tolerant(path)}


def _run_order(rows: list[dict[str, Any]], done: set[tuple[Any, Any]], batch_size: int) -> dict[tuple[Any, Any], int]:
    """Position of each not-yet-done item in the one-process run order (the merge order of rank files)."""
    todo = [r for r in rows if (r["bench"], r["id"]) not in done]
    return {(r["bench"], r["id"]): i for i, r in enumerate(r for b in _batches(todo, batch_size) for r in b)}


def _rank_files(out_dir: Path) -> list[Path]:
    found = []
    for p in out_dir.glob("samples.rank*.jsonl"):
        k = p.name[len("samples.rank") : -len(".jsonl")]
        if k.isdigit():
            found.append((int(k), p))
    return [p for _, p in sorted(found)]


def _merge_rank_files(samples_path: Path, order: dict[tuple[Any, Any], int]) -> int:
    """Append the records of the per-process files `samples.rank<k>.jsonl` to samples.jsonl in `order`
    (the one-process order; unknown keys last, by rank and line), in one write + fsync, then delete the
    files. Keys samples.jsonl already holds are skipped, so a merge killed before the deletes is redone
    without duplicates; a torn last line (a process killed mid-append) is dropped. Returns rows added."""
    parts = _rank_files(samples_path.parent)
    if not parts:
        return 0
    repair_tail(samples_path)
    have = _sample_keys(samples_path)
    recs = [
        ((order.get((s.get("bench"), s.get("id")), len(order)), k, i), s)
        for k, p in enumerate(parts)
        for i, s in enumerate(read_jsonl_tolerant(p))
    ]
    lines = []
    for _, s in sorted(recs, key=lambda x: x[0]):
        key = (s.get("bench"), s.get("id"))
        if key not in have:
            have.add(key)
            lines.append(json.dumps(s, ensure_ascii=False) + "\n")
    if lines:
        with open(samples_path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
    for p in parts:
        p.unlink()
    return len(lines)


def _answer_and_judge(
    adapter: ModelAdapter, judge: Any, chunk: list[dict[str, Any]], max_new_tokens: int
) -> list[dict[str, Any]]:
    """One batch: greedy answers, then the judge's verdicts, as sample records."""
    responses = adapter.generate(_items(adapter, chunk), max_new_tokens=max_new_tokens)
    recs = [
        {
            "bench": r["bench"],
            "id": r["id"],
            "category": r["category"],
            "attack": r.get("attack"),
            "harmful": r["harmful"],
            "prompt": r["prompt"],
            "media": r["media"],
            "response": resp,
            **{k: r[k] for k in PASS_THROUGH if r.get(k) is not None},
        }
        for r, resp in zip(chunk, responses)
    ]
    for rec, v in zip(recs, judge.judge(recs)):
        rec.update({"refused": v.refused, "unsafe": v.unsafe, "judge": judge.name, "judge_raw": v.raw})
    return [validate_eval_record(rec, "evaluate") for rec in recs]


def run_evaluate(
    adapter: ModelAdapter,
    bench: str | Path | list[str],
    out_dir: str | Path,
    cfg: EvaluateConfig,
    info: dict[str, Any] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Generate and judge every benchmark item not yet in `out_dir/samples.jsonl`, then write summary.json.
    `bench`: the benchmark files (`sea run`'s include the ones it built); judge, decoding length, batch size
    and limit come from `cfg`; `info` is copied into the summary.
    Under `accelerate launch` / torchrun (world > 1) the one-process batches are dealt round-robin to the
    processes (batch k -> process k mod N); each appends to `samples.rank<k>.jsonl`, and after a barrier
    the main process merges them into samples.jsonl in the one-process order and writes the summary
    (docs/scale.md). One process writes samples.jsonl directly, as it always did."""
    from sea_align.runtime.distributed import dist_state, place

    out_dir = Path(out_dir)
    benches = [bench] if isinstance(bench, (str, Path)) else list(bench)
    rows = _load_rows(adapter, benches, cfg.limit)
    j = get_judge(cfg.judge, **judge_kwargs(cfg.judge_arg))
    dist = dist_state()
    place(adapter, dist)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a bad input writes nothing
    samples_path = out_dir / "samples.jsonl"
    if dist.is_main:
        repair_tail(samples_path)  # a crash mid-append left a torn line: cut it before appending more
        if _rank_files(out_dir):  # a killed sharded run: keep its processes' records, in the order it had
            n_rec = _merge_rank_files(samples_path, _run_order(rows, _sample_keys(samples_path), cfg.batch_size))
            log.info("recovered %d samples from per-process files of an interrupted run", n_rec)
        changed = judge_changed(out_dir, cfg)
        if changed:  # the answers stay; verdicts made under other judge settings are made again
            log.warning("%s: %s: judging the stored answers again", out_dir, changed)
            _rejudge_stored(samples_path, j)
    dist.barrier()  # every process sees the same samples.jsonl before choosing work
    done = _sample_keys(samples_path)
    order = _run_order(rows, done, cfg.batch_size)
    t0 = time.perf_counter()
    _generate(adapter, j, rows, done, out_dir, cfg, dist, progress)
    dist.barrier()  # every process has written its part
    if dist.is_main:
        _merge_rank_files(samples_path, order)
        extra = {
            "judge": {
                "name": j.name,
                "version": j.version,
                "judge_arg": list(cfg.judge_arg),
                **getattr(j, "config", {}),
            },
            "generation": {
                "do_sample": False,
                "max_new_tokens": cfg.max_new_tokens,
                "batch_size": cfg.batch_size,
                "decoding": "greedy",
            },
            "benchmarks": [str(b) for b in benches],
            "seconds": round(time.perf_counter() - t0, 2),
            "media": "real files" if any(r["media"] for r in rows) else "absent (text only)",
            "processes": dist.world,
        }
        summary = _write_summary(out_dir, rows, {**extra, **(info or {})})
    dist.barrier()  # the summary is written
    if not dist.is_main:
        summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    return EvalResult(out_dir, summary)


def judge_changed(out_dir: Path, cfg: EvaluateConfig) -> str | None:
    """Which judge setting differs from the one the stored verdicts in `out_dir` were made under (None: same,
    or nothing stored). Read from summary.json, else from the records' judge name."""
    summary = Path(out_dir) / "summary.json"
    if summary.is_file():
        prev = json.loads(summary.read_text(encoding="utf-8")).get("judge") or {}
        if prev.get("name") != cfg.judge:
            return f"evaluate.judge changed ({prev.get('name')} -> {cfg.judge})"
        if list(prev.get("judge_arg", [])) != list(cfg.judge_arg):
            return f"evaluate.judge_arg changed ({prev.get('judge_arg', [])} -> {list(cfg.judge_arg)})"
        now = getattr(JUDGES.get(cfg.judge), "version", None)  # the class attribute: no model is loaded
        if now is not None and prev.get("version") not in (None, now):
            return f"judge {cfg.judge} changed its reading (version {prev.get('version')} -> {now})"
        return None
    names = {r.get("judge") for r in read_jsonl_tolerant(Path(out_dir) / "samples.jsonl")}
    other = names - {cfg.judge}
    return f"evaluate.judge changed ({', '.join(sorted(map(str, other)))} -> {cfg.judge})" if other else None


def _rejudge_stored(samples_path: Path, judge: Any, batch_size: int = 16) -> None:
    """Every stored record judged again by `judge` (answers unchanged), the file rewritten in one step."""
    from sea_align.runtime.io import atomic_write_jsonl

    recs = read_jsonl_tolerant(samples_path)
    for i in range(0, len(recs), batch_size):
        chunk = recs[i : i + batch_size]
        for rec, v in zip(chunk, judge.judge(chunk)):
            rec.update({"refused": v.refused, "unsafe": v.unsafe, "judge": judge.name, "judge_raw": v.raw})
    atomic_write_jsonl(samples_path, recs)


def _load_rows(adapter: ModelAdapter, benches: list[str | Path], limit: int) -> list[dict[str, Any]]:
    """The rows of every benchmark (each tagged with its file), media checked against the model and on disk."""
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
    return rows


def _generate(
    adapter: ModelAdapter,
    judge: Any,
    rows: list[dict[str, Any]],
    done: set[tuple[Any, Any]],
    out_dir: Path,
    cfg: EvaluateConfig,
    dist: Any,
    progress: bool,
) -> None:
    """Answer and judge the rows not `done`, this process's batches only, appending records as they come."""
    todo = [r for r in rows if (r["bench"], r["id"]) not in done]
    batches = _batches(todo, cfg.batch_size)
    write_path = out_dir / ("samples.jsonl" if dist.world == 1 else f"samples.rank{dist.rank}.jsonl")
    with tqdm(
        total=len(rows),
        initial=len(rows) - len(todo),
        desc="evaluate",
        disable=not progress or not dist.is_main,
        unit="item",
    ) as bar:
        for first in range(0, len(batches), dist.world):  # one round: batch first + k on process k
            round_ = batches[first : first + dist.world]
            if dist.rank < len(round_):
                for rec in _answer_and_judge(adapter, judge, round_[dist.rank], cfg.max_new_tokens):
                    append_jsonl(write_path, rec)
                crash_point("eval.batch")
            bar.update(sum(len(c) for c in round_))


def _write_summary(out_dir: Path, rows: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """summary.json over the latest record of each of `rows` in samples.jsonl; returns the summary."""
    keys = {(r["bench"], r["id"]) for r in rows}
    latest = {(s.get("bench"), s.get("id")): s for s in read_jsonl_tolerant(out_dir / "samples.jsonl")}
    summary = summarize([s for k, s in latest.items() if k in keys], extra)
    atomic_write_json(out_dir / "summary.json", summary)
    log.info(
        "evaluated %d items: ASR %s, over-refusal %s", summary["n"], summary["asr"], summary["refusal_rate_harmless"]
    )
    return summary
