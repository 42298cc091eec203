"""`sea report DIR`: report.md, PNG charts (DIR/charts/) and one self-contained report.html comparing
base, text-only alignment and SEA. Every input may be missing (a partial run still gets a report).

Reads: manifest.json, config.yaml (note), embeddings/index.jsonl + meta.json, and for each arm
eval/<arm>/summary.json, samples.jsonl, and re-judged summary.<judge>.json / samples.<judge>.jsonl.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import report_charts as charts
from .io import DataError, atomic_write_text, read_jsonl_tolerant
from .report_html import to_html, to_markdown

ARMS = ("base", "text_only", "aligned")
LABEL = {"base": "base", "text_only": "text-only alignment", "aligned": "SEA"}


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _json(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text()) if p.is_file() else {}


def load_summaries(run: Path) -> dict[str, dict[str, Any]]:
    return {arm: _json(run / "eval" / arm / "summary.json") for arm in ARMS
            if (run / "eval" / arm / "summary.json").is_file()}


def judge_runs(edir: Path) -> dict[str, tuple[dict, list[dict]]]:
    """{judge label: (summary, samples)} for the original judgement and every re-judgement."""
    out = {}
    if (edir / "summary.json").is_file():
        s = _json(edir / "summary.json")
        out[(s.get("judge") or {}).get("name", "original")] = (s, read_jsonl_tolerant(edir / "samples.jsonl"))
    for p in sorted(edir.glob("summary.*.json")):
        tag = p.name[len("summary."):-len(".json")]
        out[tag if tag not in out else f"{tag} (re-judged)"] = (_json(p), read_jsonl_tolerant(edir / f"samples.{tag}.jsonl"))
    return out


def _label(s: dict) -> bool | None:
    return s.get("unsafe") if s.get("harmful", True) else s.get("refused")


def agreement(a: list[dict], b: list[dict]) -> tuple[int, float | None, float | None]:
    """(items both judges scored, raw agreement, Cohen's kappa) on unsafe (harmful) / refused (harmless)."""
    la = {(s.get("bench"), s["id"]): _label(s) for s in a}
    pairs = [(la[(s.get("bench"), s["id"])], _label(s)) for s in b if la.get((s.get("bench"), s["id"])) is not None
             and _label(s) is not None]
    if not pairs:
        return 0, None, None
    n = len(pairs)
    po = sum(x == y for x, y in pairs) / n
    pa, pb = sum(bool(x) for x, _ in pairs) / n, sum(bool(y) for _, y in pairs) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return n, po, (po - pe) / (1 - pe) if pe < 1 else None


def scenario_grid(samples: list[dict], summary: dict) -> dict[str, dict[str, float | None]]:
    """{attack: {scenario: ASR}} over scored harmful samples; from the summary when samples are missing."""
    if not samples:
        return {"all attacks": {c: d.get("asr") for c, d in summary.get("per_category", {}).items()}}
    acc: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for s in samples:
        if s.get("harmful", True):
            cell = acc[s.get("attack") or "-"][s.get("category", "default")]
            if s.get("unsafe") is not None:
                cell[0] += bool(s["unsafe"])
                cell[1] += 1
    return {t: {c: (u / n if n else None) for c, (u, n) in cs.items()} for t, cs in acc.items()}


def _header(run: Path, man: dict) -> list[tuple]:
    b: list[tuple] = [("h1", f"SEA run report: `{run.name}`"),
                      ("p", f"Model `{man.get('model', '?')}`, modality `{man.get('modality', '?')}`, seed "
                            f"{man.get('seed', '?')}, git `{(man.get('git_sha') or '?')[:10]}`.")]
    if (run / "config.yaml").is_file():
        import yaml
        note = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("note", "")
        if note:
            b.append(("note", note))
    return b


def _synthesis(run: Path, cdir: Path) -> list[tuple]:
    idx = read_jsonl_tolerant(run / "embeddings" / "index.jsonl")
    if not idx:
        return [("h2", "Synthesis"), ("p", "No embeddings/index.jsonl: no synthesis results.")]
    ver = sum(bool(r.get("verified")) for r in idx)
    secs = sum(r.get("seconds") or 0 for r in idx) / len(idx)
    meta = _json(run / "embeddings" / "meta.json")
    b = [("h2", "Synthesis"),
         ("p", f"{len(idx)} embeddings, {ver} verified by held-out probes ({_pct(ver / len(idx))}), "
               f"{sum(bool(r.get('failed')) for r in idx)} failed, {secs:.2f} s per embedding (amortised over the batch).")]
    if meta:
        blank = meta.get("blank_meta") or {k: v for k, v in (meta.get("config") or {}).items() if k.startswith("blank_")}
        b.append(("p", f"Space `{meta.get('space', '?')}`, shape {meta.get('shape', '?')}, init `{meta.get('init', '?')}` "
                       f"(blank {meta.get('modality', 'item')}: {json.dumps(blank)})."))
    if charts.synthesis(cdir / "synthesis.png", idx):
        b.append(("img", "charts/synthesis.png", "Synthesis loss curves and verification rate"))
    return b


def _results(sums: dict[str, dict], run: Path, cdir: Path) -> list[tuple]:
    if not sums:
        return [("h2", "Attack success and over-refusal"), ("p", "No evaluation summaries found (eval/*/summary.json).")]
    arms = [a for a in ARMS if a in sums]
    names = [LABEL[a] for a in arms]
    rows = [[label] + [_pct(sums[a].get(key)) for a in arms] for label, key in
            (("ASR (macro over categories)", "asr"), ("ASR (micro)", "asr_micro"),
             ("over-refusal on harmless items", "refusal_rate_harmless"))]
    rows.append(["scored / unscored"] + [f"{sums[a].get('n_scored')} / {sums[a].get('n_unscored')}" for a in arms])
    b: list[tuple] = [("h2", "Attack success and over-refusal"), ("table", ["metric"] + names, rows)]
    missing = [LABEL[a] for a in ARMS if a not in sums]
    if missing:
        b.append(("p", f"Not evaluated in this run: {', '.join(missing)}."))
    attacks = sorted({k for a in arms for k in sums[a].get("per_attack", {})})
    if attacks:
        b += [("h3", "Per attack type (ASR on harmful items; over-refusal on harmless ones)"),
              ("table", ["attack"] + names, [[t] + [
                  f"ASR {_pct(sums[a].get('per_attack', {}).get(t, {}).get('asr'))}, refusal "
                  f"{_pct(sums[a].get('per_attack', {}).get(t, {}).get('refusal_rate_harmless'))}" for a in arms]
                  for t in attacks])]
    cats = sorted({c for a in arms for c in sums[a].get("per_category", {})})
    if cats:
        b += [("h3", "Per category (ASR)"), ("table", ["category"] + names, [
            [c] + [_pct(sums[a].get("per_category", {}).get(c, {}).get("asr")) for a in arms] for c in cats])]
    sub = {a: sums[a] for a in arms}
    if charts.asr_by_attack(cdir / "asr_attack.png", sub, LABEL):
        b.append(("img", "charts/asr_attack.png", "ASR per attack type"))
    grid = {a: scenario_grid(read_jsonl_tolerant(run / "eval" / a / "samples.jsonl"), sums[a]) for a in arms}
    if charts.asr_by_scenario(cdir / "asr_scenario.png", grid, LABEL):
        b.append(("img", "charts/asr_scenario.png", "ASR per scenario and attack type"))
    if charts.asr_vs_refusal(cdir / "asr_vs_refusal.png", sub, LABEL):
        b.append(("img", "charts/asr_vs_refusal.png", "ASR against over-refusal"))
    else:
        b.append(("p", "No arm has both an ASR and an over-refusal rate: no ASR-vs-over-refusal chart "
                       "(add a `benign` benchmark)."))
    return b + _provenance(sums, arms) + _judges(run, arms)


def _provenance(sums: dict[str, dict], arms: list[str]) -> list[tuple]:
    rows = []
    for a in arms:
        s = sums[a]
        j = s.get("judge") or {}
        rows.append([LABEL[a], f"`{j.get('name')}` v{j.get('version')}", json.dumps(s.get("generation")),
                     s.get("media", "?"), s.get("seed", "?"), f"`{s.get('adapter') or '-'}`"])
    return [("h3", "What each evaluation used"),
            ("table", ["arm", "judge", "generation", "media", "seed", "adapter"], rows)]


def _judges(run: Path, arms: list[str]) -> list[tuple]:
    runs = {a: judge_runs(run / "eval" / a) for a in arms}
    if not any(len(r) > 1 for r in runs.values()):
        return []
    asr_rows, agree_rows = [], []
    for a in arms:
        items = list(runs[a].items())
        for name, (s, _) in items:
            asr_rows.append([LABEL[a], f"`{name}`", _pct(s.get("asr")), _pct(s.get("refusal_rate_harmless")),
                             f"{s.get('n_scored')} / {s.get('n_unscored')}"])
        for i in range(len(items)):
            for k in range(i + 1, len(items)):
                n, po, kappa = agreement(items[i][1][1], items[k][1][1])
                agree_rows.append([LABEL[a], f"`{items[i][0]}` vs `{items[k][0]}`", n, _pct(po),
                                   "n/a" if kappa is None else f"{kappa:.2f}"])
    return [("h2", "Judges"), ("table", ["arm", "judge", "ASR", "over-refusal", "scored / unscored"], asr_rows),
            ("p", "Agreement on items both judges scored (unsafe for harmful items, refused for harmless ones):"),
            ("table", ["arm", "judges", "items", "agreement", "Cohen's kappa"], agree_rows)]


def _benches(run: Path) -> list[tuple]:
    """The benchmarks `sea run` built (bench/*/build_info.json): builder, seed, where media came from."""
    rows = []
    for p in sorted((run / "bench").glob("*/build_info.json")):
        i = _json(p)
        src = ", ".join(f"{t}: {s}" for t, s in (i.get("media_source") or {}).items()) or "-"
        rows.append([f"`{p.parent.name}`", i.get("builder"), i.get("seed"), i.get("n_rows"), src,
                     ", ".join(i.get("skipped_types") or []) or "none"])
    return [("h2", "Benchmarks built"), ("table", ["dir", "builder", "seed", "rows", "media per type", "skipped types"],
                                         rows)] if rows else []


def run_report(run: str | Path) -> Path:
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run}: no such run directory")
    man = _json(run / "manifest.json")
    cdir = run / "charts"
    cdir.mkdir(exist_ok=True)
    for old in cdir.glob("*.png"):  # a chart that no longer applies must not linger
        old.unlink()
    blocks = _header(run, man) + _synthesis(run, cdir) + _results(load_summaries(run), run, cdir) + _benches(run)
    stages = man.get("stages", {})
    if stages:
        blocks += [("h2", "Time per stage"), ("table", ["stage", "seconds"],
                                              [[k, v.get("seconds")] for k, v in stages.items()])]
    path = run / "report.md"
    atomic_write_text(path, to_markdown(blocks))
    atomic_write_text(run / "report.html", to_html(blocks, run, f"SEA run report: {run.name}"))
    return path
