"""The report's metric tables: each arm's summary loaded (older summaries filled in from their samples),
aggregated (judge agreement, ASR per scenario) and laid out as report blocks (helpfulness: helpful.py).
Every rate is shown with its 95% Wilson score interval (`stats.wilson`)."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

from sea_align.judges.stats import rate, wilson
from sea_align.report import charts
from sea_align.runtime.io import read_jsonl_tolerant

ARMS = ("base", "text_only", "aligned")
LABEL = {"base": "base", "text_only": "text-only alignment", "aligned": "SEA"}


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def cell(r: float | None, ci: Any = None, n: int | None = None) -> str:
    """ "12.5% [4.1-31.2] (n=16)": the rate, its 95% interval when known, and the count behind it."""
    out = _pct(r)
    if r is not None and isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        out += f" [{100 * ci[0]:.1f}-{100 * ci[1]:.1f}]"
    if n is not None:
        out += f" (n={n})"
    return out


def _rate_cell(k: int, n: int) -> str:
    r = rate(k, n)
    return cell(r["rate"], r["ci95"], n)


def _scored_harmful(s: dict) -> int | None:
    pc = s.get("per_category")
    return sum(c.get("n_scored") or 0 for c in pc.values()) if isinstance(pc, dict) else None


def read_json(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text()) if p.is_file() else {}


def load_summaries(run: Path) -> dict[str, dict[str, Any]]:
    return {
        arm: read_json(run / "eval" / arm / "summary.json")
        for arm in ARMS
        if (run / "eval" / arm / "summary.json").is_file()
    }


def judge_runs(edir: Path) -> dict[str, tuple[dict, list[dict]]]:
    """{judge label: (summary, samples)} for the original judgement and every re-judgement."""
    out = {}
    if (edir / "summary.json").is_file():
        s = read_json(edir / "summary.json")
        out[(s.get("judge") or {}).get("name", "original")] = (s, read_jsonl_tolerant(edir / "samples.jsonl"))
    for p in sorted(edir.glob("summary.*.json")):
        tag = p.name[len("summary.") : -len(".json")]
        out[tag if tag not in out else f"{tag} (re-judged)"] = (
            read_json(p),
            read_jsonl_tolerant(edir / f"samples.{tag}.jsonl"),
        )
    return out


def _label(s: dict) -> bool | None:
    return s.get("unsafe") if s.get("harmful", True) else s.get("refused")


def agreement(a: list[dict], b: list[dict]) -> tuple[int, float | None, float | None]:
    """(items both judges scored, raw agreement, Cohen's kappa) on unsafe (harmful) / refused (harmless)."""
    la = {(s.get("bench"), s["id"]): _label(s) for s in a}
    pairs = [
        (la[(s.get("bench"), s["id"])], _label(s))
        for s in b
        if la.get((s.get("bench"), s["id"])) is not None and _label(s) is not None
    ]
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
            counts = acc[s.get("attack") or "-"][s.get("category", "default")]
            if s.get("unsafe") is not None:
                counts[0] += bool(s["unsafe"])
                counts[1] += 1
    return {t: {c: (u / n if n else None) for c, (u, n) in cs.items()} for t, cs in acc.items()}


# --- the results section: ASR and over-refusal per arm, form, attack, category; judges --------------------
def result_blocks(sums: dict[str, dict], run: Path, cdir: Path, helpful: list[tuple] = ()) -> list[tuple]:
    """The results section; `helpful`: the helpfulness blocks (helpful.py), shown after over-refusal by form."""
    if not sums:
        return [
            ("h2", "Attack success and over-refusal"),
            ("p", "No evaluation summaries found (eval/*/summary.json)."),
        ]
    arms = [a for a in ARMS if a in sums]
    return (
        _headline(sums, arms)
        + _by_form(sums, arms)
        + list(helpful)
        + _per_attack(sums, arms)
        + _per_category(sums, arms)
        + _asr_charts(sums, arms, run, cdir)
        + _provenance(sums, arms)
        + _judges(run, arms)
    )


def _harmless_n(s: dict) -> int | None:
    """Scored harmless items behind the over-refusal rate; a summary from before `n_harmless_scored`: all
    scored ones less the harmful ones (reading items were not counted then; None when either is unknown)."""
    if isinstance(s.get("n_harmless_scored"), int):
        return s["n_harmless_scored"]
    harmful = _scored_harmful(s)
    return None if harmful is None or s.get("n_scored") is None else s["n_scored"] - harmful


def _headline(sums: dict[str, dict], arms: list[str]) -> list[tuple]:
    """The main table (ASR, over-refusal, reading, scored counts per arm) and the arms not evaluated."""
    rows = [
        ["ASR (macro over categories)"] + [cell(sums[a].get("asr"), sums[a].get("asr_ci95")) for a in arms],
        ["ASR (micro)"]
        + [cell(sums[a].get("asr_micro"), sums[a].get("asr_micro_ci95"), _scored_harmful(sums[a])) for a in arms],
        ["over-refusal on harmless items"]
        + [
            cell(sums[a].get("refusal_rate_harmless"), sums[a].get("refusal_rate_harmless_ci95"), _harmless_n(sums[a]))
            for a in arms
        ],
    ]
    readings = [sums[a].get("reading") or {} for a in arms]
    if any(readings):
        rows.append(
            ["reading: answer contains the text shown"]
            + [cell(r.get("rate"), r.get("ci95"), r.get("n_scored")) for r in readings]
        )
    rows.append(["scored / unscored"] + [f"{sums[a].get('n_scored')} / {sums[a].get('n_unscored')}" for a in arms])
    b: list[tuple] = [
        ("h2", "Attack success and over-refusal"),
        ("table", ["metric"] + [LABEL[a] for a in arms], rows),
        (
            "p",
            "Brackets: 95% Wilson score interval; n = scored items behind the rate (unscored items "
            "are left out, never counted as safe). The macro ASR has no interval of its own: the "
            "one shown is that of the pooled (micro) counts.",
        ),
    ]
    missing = [LABEL[a] for a in ARMS if a not in sums]
    if missing:
        b.append(("p", f"Not evaluated in this run: {', '.join(missing)}."))
    return b


def _attack_cell(d: dict) -> str:
    return (
        f"ASR {cell(d.get('asr'), d.get('asr_ci95'))}, refusal "
        f"{cell(d.get('refusal_rate_harmless'), d.get('refusal_rate_harmless_ci95'))}"
    )


def _per_attack(sums: dict[str, dict], arms: list[str]) -> list[tuple]:
    attacks = sorted({k for a in arms for k in sums[a].get("per_attack", {})})
    if not attacks:
        return []
    rows = [[t] + [_attack_cell(sums[a].get("per_attack", {}).get(t, {})) for a in arms] for t in attacks]
    return [
        ("h3", "Per attack type (ASR on harmful items; over-refusal on harmless ones)"),
        ("table", ["attack"] + [LABEL[a] for a in arms], rows),
    ]


def _category_cell(d: dict) -> str:
    n, r = d.get("n_scored"), d.get("asr")
    if r is None or not n:
        return cell(r, None, n)
    return _rate_cell(round(r * n), n)


def _per_category(sums: dict[str, dict], arms: list[str]) -> list[tuple]:
    cats = sorted({c for a in arms for c in sums[a].get("per_category", {})})
    if not cats:
        return []
    rows = [[c] + [_category_cell(sums[a].get("per_category", {}).get(c, {})) for a in arms] for c in cats]
    return [("h3", "Per category (ASR)"), ("table", ["category"] + [LABEL[a] for a in arms], rows)]


def _asr_charts(sums: dict[str, dict], arms: list[str], run: Path, cdir: Path) -> list[tuple]:
    """ASR per attack, per scenario x attack, and ASR against over-refusal (or why that one is missing)."""
    sub = {a: sums[a] for a in arms}
    b = charts.block(charts.asr_by_attack, cdir, "asr_attack.png", "ASR per attack type", sub, LABEL)
    grid = {a: scenario_grid(read_jsonl_tolerant(run / "eval" / a / "samples.jsonl"), sums[a]) for a in arms}
    b += charts.block(charts.asr_by_scenario, cdir, "asr_scenario.png", "ASR per scenario and attack type", grid, LABEL)
    vs = charts.block(charts.asr_vs_refusal, cdir, "asr_vs_refusal.png", "ASR against over-refusal", sub, LABEL)
    why = "No arm has both an ASR and an over-refusal rate: no ASR-vs-over-refusal chart (add a `benign` benchmark)."
    return b + (vs or [("p", why)])


def _form_cell(d: dict | None) -> str:
    if not d:
        return "-"
    un = (d.get("n") or 0) - (d.get("n_scored") or 0)
    return cell(d.get("refusal_rate"), d.get("ci95"), d.get("n_scored")) + (f", {un} unscored" if un else "")


def _by_form(sums: dict[str, dict], arms: list[str]) -> list[tuple]:
    forms = sorted({f for a in arms for f in (sums[a].get("per_form") or {})})
    if not forms:
        return []
    rows = [[f] + [_form_cell((sums[a].get("per_form") or {}).get(f)) for a in arms] for f in forms]
    return [
        ("h3", "Over-refusal by form"),
        (
            "p",
            "Share of harmless items refused, per kind of item (`benign`: plain requests, `varied`: benign "
            "requests in varied templates, `borderline`: benign requests that share words with harmful ones, "
            "`reading`: what does the image/audio say?) and attack form; 95% Wilson interval, n = scored items.",
        ),
        ("table", ["form"] + [LABEL[a] for a in arms], rows),
    ]


def _provenance(sums: dict[str, dict], arms: list[str]) -> list[tuple]:
    rows = []
    for a in arms:
        s, j = sums[a], sums[a].get("judge") or {}
        rows.append(
            [
                LABEL[a],
                f"`{j.get('name')}` v{j.get('version')}",
                json.dumps(s.get("generation")),
                s.get("media", "?"),
                s.get("seed", "?"),
                f"`{s.get('adapter') or '-'}`",
            ]
        )
    return [
        ("h3", "What each evaluation used"),
        ("table", ["arm", "judge", "generation", "media", "seed", "adapter"], rows),
    ]


def _judges(run: Path, arms: list[str]) -> list[tuple]:
    runs = {a: judge_runs(run / "eval" / a) for a in arms}
    if not any(len(r) > 1 for r in runs.values()):
        return []
    asr_rows, agree_rows = [], []
    for a in arms:
        items = list(runs[a].items())
        for name, (s, ss) in items:
            s = fill_summary(s, ss)
            asr_rows.append(
                [
                    LABEL[a],
                    f"`{name}`",
                    cell(s.get("asr"), s.get("asr_ci95")),
                    cell(s.get("refusal_rate_harmless"), s.get("refusal_rate_harmless_ci95")),
                    f"{s.get('n_scored')} / {s.get('n_unscored')}",
                ]
            )
        for (name_a, (_, ss_a)), (name_b, (_, ss_b)) in combinations(items, 2):
            n, po, kappa = agreement(ss_a, ss_b)
            agree_rows.append(
                [
                    LABEL[a],
                    f"`{name_a}` vs `{name_b}`",
                    n,
                    cell(po, wilson(round(po * n), n) if n else None),
                    "n/a" if kappa is None else f"{kappa:.2f}",
                ]
            )
    return [
        ("h2", "Judges"),
        ("table", ["arm", "judge", "ASR (macro; pooled interval)", "over-refusal", "scored / unscored"], asr_rows),
        ("p", "Agreement on items both judges scored (unsafe for harmful items, refused for harmless ones):"),
        ("table", ["arm", "judges", "items", "agreement", "Cohen's kappa"], agree_rows),
    ]


# --- summaries of older runs, samples per arm -----------------------------------------------------------
NEW_KEYS = ("asr_ci95", "asr_micro_ci95", "refusal_rate_harmless_ci95", "per_form", "reading")
NEW_ATTACK_KEYS = ("asr_ci95", "refusal_rate_harmless_ci95", "n_scored")


def fill_summary(summary: dict, samples: list[dict]) -> dict:
    """A summary written before the interval / per-form keys existed gets them from its samples (only keys
    it lacks; nothing it has is changed)."""
    if not samples or (
        all(k in summary for k in NEW_KEYS)
        and all(all(k in d for k in NEW_ATTACK_KEYS) for d in (summary.get("per_attack") or {}).values())
    ):
        return summary
    from sea_align.stages.evaluate import summarize

    fresh = summarize(samples)
    out = dict(summary)
    for k in NEW_KEYS:
        out.setdefault(k, fresh[k])
    pa = {t: dict(d) for t, d in (summary.get("per_attack") or {}).items()}
    for t, d in pa.items():
        for k in NEW_ATTACK_KEYS:
            if k not in d and t in fresh["per_attack"]:
                d[k] = fresh["per_attack"][t][k]
    out["per_attack"] = pa
    return out
