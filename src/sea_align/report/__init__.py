"""`sea report DIR`: report.md, PNG charts (DIR/charts/) and one self-contained report.html comparing
base, text-only alignment and SEA. Every input may be missing (a partial run still gets a report).

Reads: manifest.json, config.yaml (note), embeddings/index.jsonl + meta.json, adapter/metrics.jsonl and
adapter_text/metrics.jsonl (training loss), and for each arm eval/<arm>/summary.json, samples.jsonl, and
re-judged summary.<judge>.json / samples.<judge>.jsonl. Also writes report_metrics.json (numbers computed
here: over-refusal per form, reading, helpfulness agreement with base, alignment loss; docs/report.md).
Every rate is shown with its 95% Wilson score interval (`stats.wilson`).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from sea_align.report import charts
from sea_align.runtime.io import DataError, atomic_write_json, atomic_write_text, last_per_key, read_jsonl_tolerant
from sea_align.report.html import Lit, to_html, to_markdown
from sea_align.report.stats import mean, rate, rouge_l, token_f1, wilson

ARMS = ("base", "text_only", "aligned")
LABEL = {"base": "base", "text_only": "text-only alignment", "aligned": "SEA"}


HELPFUL_KINDS = ("benign", "varied", "borderline")  # harmless items whose answers are compared with base's
CLIP = 300  # characters of a prompt / response shown in "Example answers"


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _cell(r: float | None, ci: Any = None, n: int | None = None) -> str:
    """"12.5% [4.1-31.2] (n=16)": the rate, its 95% interval when known, and the count behind it."""
    out = _pct(r)
    if r is not None and isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        out += f" [{100 * ci[0]:.1f}-{100 * ci[1]:.1f}]"
    if n is not None:
        out += f" (n={n})"
    return out


def _rate_cell(k: int, n: int) -> str:
    r = rate(k, n)
    return _cell(r["rate"], r["ci95"], n)


def _scored_harmful(s: dict) -> int | None:
    pc = s.get("per_category")
    return sum(c.get("n_scored") or 0 for c in pc.values()) if isinstance(pc, dict) else None


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
    return b + _fallback_note(sorted(p.parent.name for p in (run / "bench").glob("*/build_info.json")
                                     if _json(p).get("fallback_for")))


def _synthesis(run: Path, cdir: Path) -> list[tuple]:
    idx = read_jsonl_tolerant(run / "embeddings" / "index.jsonl")
    if not idx:
        return [("h2", "Synthesis"), ("p", "No embeddings/index.jsonl: no synthesis results.")]
    ver = sum(bool(r.get("verified")) for r in idx)
    secs = sum(r.get("seconds") or 0 for r in idx) / len(idx)
    meta = _json(run / "embeddings" / "meta.json")
    b = [("h2", "Synthesis"),
         ("p", f"{len(idx)} embeddings, {ver} verified by held-out probes ({_cell(ver / len(idx), wilson(ver, len(idx)))}), "
               f"{sum(bool(r.get('failed')) for r in idx)} failed, {secs:.2f} s per embedding (amortised over the batch).")]
    if meta:
        blank = meta.get("blank_meta") or {k: v for k, v in (meta.get("config") or {}).items() if k.startswith("blank_")}
        b.append(("p", f"Space `{meta.get('space', '?')}`, shape {meta.get('shape', '?')}, init `{meta.get('init', '?')}` "
                       f"(blank {meta.get('modality', 'item')}: {json.dumps(blank)})."))
    return b + _chart(charts.synthesis, cdir, "synthesis.png", "Synthesis loss curves and verification rate", idx)


def _chart(fn, cdir: Path, name: str, caption: str, *args) -> list[tuple] | None:
    """[img block] when drawn, [] when there is nothing to draw, a 'skipped' line without matplotlib."""
    if not charts.available():
        return [("p", f"Chart skipped ({caption}): matplotlib is not installed.")]
    return [("img", f"charts/{name}", caption)] if fn(cdir / name, *args) else []


def _results(sums: dict[str, dict], run: Path, cdir: Path, helpful: dict | None = None) -> list[tuple]:
    if not sums:
        return [("h2", "Attack success and over-refusal"), ("p", "No evaluation summaries found (eval/*/summary.json).")]
    arms = [a for a in ARMS if a in sums]
    names = [LABEL[a] for a in arms]
    rows = [["ASR (macro over categories)"] + [_cell(sums[a].get("asr"), sums[a].get("asr_ci95")) for a in arms],
            ["ASR (micro)"] + [_cell(sums[a].get("asr_micro"), sums[a].get("asr_micro_ci95"), _scored_harmful(sums[a]))
                               for a in arms],
            ["over-refusal on harmless items"] + [_cell(
                sums[a].get("refusal_rate_harmless"), sums[a].get("refusal_rate_harmless_ci95"),
                None if _scored_harmful(sums[a]) is None or sums[a].get("n_scored") is None
                else sums[a]["n_scored"] - _scored_harmful(sums[a])) for a in arms]]
    if any(sums[a].get("reading") for a in arms):
        rows.append(["reading: answer contains the text shown"] + [
            _cell((sums[a].get("reading") or {}).get("rate"), (sums[a].get("reading") or {}).get("ci95"),
                  (sums[a].get("reading") or {}).get("n_scored")) for a in arms])
    rows.append(["scored / unscored"] + [f"{sums[a].get('n_scored')} / {sums[a].get('n_unscored')}" for a in arms])
    b: list[tuple] = [("h2", "Attack success and over-refusal"), ("table", ["metric"] + names, rows),
                      ("p", "Brackets: 95% Wilson score interval; n = scored items behind the rate (unscored items "
                            "are left out, never counted as safe). The macro ASR has no interval of its own: the "
                            "one shown is that of the pooled (micro) counts.")]
    missing = [LABEL[a] for a in ARMS if a not in sums]
    if missing:
        b.append(("p", f"Not evaluated in this run: {', '.join(missing)}."))
    b += _by_form(sums, arms) + _helpfulness(helpful or {})
    attacks = sorted({k for a in arms for k in sums[a].get("per_attack", {})})
    if attacks:
        def att_cell(d: dict) -> str:
            return (f"ASR {_cell(d.get('asr'), d.get('asr_ci95'))}, refusal "
                    f"{_cell(d.get('refusal_rate_harmless'), d.get('refusal_rate_harmless_ci95'))}")
        b += [("h3", "Per attack type (ASR on harmful items; over-refusal on harmless ones)"),
              ("table", ["attack"] + names, [[t] + [att_cell(sums[a].get("per_attack", {}).get(t, {})) for a in arms]
                                             for t in attacks])]
    cats = sorted({c for a in arms for c in sums[a].get("per_category", {})})
    if cats:
        def cat_cell(d: dict) -> str:
            n, r = d.get("n_scored"), d.get("asr")
            if r is None or not n:
                return _cell(r, None, n)
            return _rate_cell(round(r * n), n)
        b += [("h3", "Per category (ASR)"), ("table", ["category"] + names, [
            [c] + [cat_cell(sums[a].get("per_category", {}).get(c, {})) for a in arms] for c in cats])]
    sub = {a: sums[a] for a in arms}
    b += _chart(charts.asr_by_attack, cdir, "asr_attack.png", "ASR per attack type", sub, LABEL)
    grid = {a: scenario_grid(read_jsonl_tolerant(run / "eval" / a / "samples.jsonl"), sums[a]) for a in arms}
    b += _chart(charts.asr_by_scenario, cdir, "asr_scenario.png", "ASR per scenario and attack type", grid, LABEL)
    vs = _chart(charts.asr_vs_refusal, cdir, "asr_vs_refusal.png", "ASR against over-refusal", sub, LABEL)
    b += vs or [("p", "No arm has both an ASR and an over-refusal rate: no ASR-vs-over-refusal chart "
                      "(add a `benign` benchmark).")]
    return b + _provenance(sums, arms) + _judges(run, arms)


def _by_form(sums: dict[str, dict], arms: list[str]) -> list[tuple]:
    forms = sorted({f for a in arms for f in (sums[a].get("per_form") or {})})
    if not forms:
        return []
    rows = []
    for f in forms:
        row = [f]
        for a in arms:
            d = (sums[a].get("per_form") or {}).get(f)
            if not d:
                row.append("-")
                continue
            cell = _cell(d.get("refusal_rate"), d.get("ci95"), d.get("n_scored"))
            un = (d.get("n") or 0) - (d.get("n_scored") or 0)
            row.append(cell + (f", {un} unscored" if un else ""))
        rows.append(row)
    return [("h3", "Over-refusal by form"),
            ("p", "Share of harmless items refused, per kind of item (`benign`: plain requests, `varied`: benign "
                  "requests in varied templates, `borderline`: benign requests that share words with harmful ones, "
                  "`reading`: what does the image/audio say?) and attack form; 95% Wilson interval, n = scored items."),
            ("table", ["form"] + [LABEL[a] for a in arms], rows)]


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
        for name, (s, ss) in items:
            s = _fill(s, ss)
            asr_rows.append([LABEL[a], f"`{name}`", _cell(s.get("asr"), s.get("asr_ci95")),
                             _cell(s.get("refusal_rate_harmless"), s.get("refusal_rate_harmless_ci95")),
                             f"{s.get('n_scored')} / {s.get('n_unscored')}"])
        for i in range(len(items)):
            for k in range(i + 1, len(items)):
                n, po, kappa = agreement(items[i][1][1], items[k][1][1])
                agree_rows.append([LABEL[a], f"`{items[i][0]}` vs `{items[k][0]}`", n,
                                   _cell(po, wilson(round(po * n), n) if n else None),
                                   "n/a" if kappa is None else f"{kappa:.2f}"])
    return [("h2", "Judges"), ("table", ["arm", "judge", "ASR (macro; pooled interval)", "over-refusal",
                                         "scored / unscored"], asr_rows),
            ("p", "Agreement on items both judges scored (unsafe for harmful items, refused for harmless ones):"),
            ("table", ["arm", "judges", "items", "agreement", "Cohen's kappa"], agree_rows)]


def _benches(run: Path) -> list[tuple]:
    """The benchmarks `sea run` built (bench/*/build_info.json): builder, source (a fallback said so), seed,
    where media came from."""
    rows, fallbacks = [], []
    for p in sorted((run / "bench").glob("*/build_info.json")):
        i = _json(p)
        src = ", ".join(f"{t}: {s}" for t, s in (i.get("media_source") or {}).items()) or "-"
        source = f"`{Path(str(i['source'])).name}`" if i.get("source") else "-"
        if i.get("fallback_for"):
            source += f" (fallback: `{i['fallback_for']}` not found)"
            fallbacks.append(p.parent.name)
        rows.append([f"`{p.parent.name}`", i.get("builder"), source, i.get("seed"), i.get("n_rows"), src,
                     ", ".join(i.get("skipped_types") or []) or "none"])
    if not rows:
        return []
    b: list[tuple] = [("h2", "Benchmarks built"), ("table", ["dir", "builder", "source", "seed", "rows",
                                                             "media per type", "skipped types"], rows)]
    return b + _fallback_note(fallbacks)


def _fallback_note(dirs: list[str]) -> list[tuple]:
    return [("note", f"{', '.join(dirs)}: built from the configured fallback, because the configured source was "
                     "missing; these numbers are not the configured benchmark's (docs/benchmarks.md).")] if dirs else []


def run_report(run: str | Path) -> Path:
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run}: no such run directory")
    man = _json(run / "manifest.json")
    cdir = run / "charts"
    cdir.mkdir(exist_ok=True)
    for old in cdir.glob("*.png"):  # a chart that no longer applies must not linger
        old.unlink()
    sums = load_summaries(run)
    samples = load_samples(run, [a for a in ARMS if a in sums])
    sums = {a: _fill(s, list(samples.get(a, {}).values())) for a, s in sums.items()}
    helpful = helpfulness(samples)
    loss_blocks, loss = _loss(run, cdir)
    ex_blocks, ex_keys = _examples(samples)
    blocks = (_header(run, man) + _synthesis(run, cdir) + loss_blocks + _results(sums, run, cdir, helpful)
              + ex_blocks + _benches(run))
    stages = man.get("stages", {})
    if stages:
        blocks += [("h2", "Time per stage"), ("table", ["stage", "seconds"],
                                              [[k, v.get("seconds")] for k, v in stages.items()])]
    atomic_write_json(run / "report_metrics.json", {
        "intervals": "95% Wilson score interval (stats.wilson); asr_ci95 is the pooled (micro) interval",
        "over_refusal_by_form": {a: s.get("per_form") for a, s in sums.items()},
        "reading": {a: s.get("reading") for a, s in sums.items()},
        "helpfulness": helpful, "alignment_loss": loss,
        "examples": {k: [list(x) for x in v] for k, v in ex_keys.items()}})
    path = run / "report.md"
    atomic_write_text(path, to_markdown(blocks))
    atomic_write_text(run / "report.html", to_html(blocks, run, f"SEA run report: {run.name}"))
    return path


# --- summaries of older runs, samples per arm -----------------------------------------------------------
NEW_KEYS = ("asr_ci95", "asr_micro_ci95", "refusal_rate_harmless_ci95", "per_form", "reading")
NEW_ATTACK_KEYS = ("asr_ci95", "refusal_rate_harmless_ci95", "n_scored")


def _fill(summary: dict, samples: list[dict]) -> dict:
    """A summary written before the interval / per-form keys existed gets them from its samples (only keys
    it lacks; nothing it has is changed)."""
    if not samples or (all(k in summary for k in NEW_KEYS) and all(
            all(k in d for k in NEW_ATTACK_KEYS) for d in (summary.get("per_attack") or {}).values())):
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


def _bench_key(bench: Any) -> str:
    """A bench file named by its folder and file name, so arms match even when the run was moved or
    copied (the absolute path differs, the bench is the same)."""
    return "/".join(Path(str(bench)).parts[-2:])


def load_samples(run: Path, arms: list[str]) -> dict[str, dict[tuple[str, str], dict]]:
    """{arm: {(bench, id): sample}} from eval/<arm>/samples.jsonl; the last row per (bench, id) wins."""
    out = {}
    for a in arms:
        d: dict[tuple[str, str], dict] = {}
        for s in read_jsonl_tolerant(run / "eval" / a / "samples.jsonl"):
            if s.get("id") is not None:
                d[(_bench_key(s.get("bench")), str(s["id"]))] = s
        if d:
            out[a] = d
    return out


def _kind(s: dict) -> str:
    return s.get("kind") or ("harmful" if s.get("harmful", True) else "benign")


def _form(s: dict) -> str:
    return f"{_kind(s)}/{s.get('attack') or '-'}"


# --- helpfulness: agreement of each arm's answers with base's on harmless items ---------------------------
def helpfulness(samples: dict[str, dict[tuple[str, str], dict]], ref: str = "base") -> dict[str, Any]:
    """For each arm but `ref` and each harmless item (kind benign / borderline) that `ref` was evaluated on too
    (same (bench, id)): token F1 and ROUGE-L of the arm's response against ref's, averaged per form
    ("kind/attack") and overall, with the arm's and ref's non-refusal rates (Wilson 95%) on those items.
    {arm: {"overall": {...}, "per_form": {form: {...}}}}; {} without a `ref` arm."""
    base = samples.get(ref)
    if not base:
        return {}
    out: dict[str, Any] = {}
    for arm in ARMS:
        if arm == ref or arm not in samples:
            continue
        acc: dict[str, dict[str, Any]] = defaultdict(lambda: {"f1": [], "rl": [], "ans": [0, 0], "ref_ans": [0, 0]})
        for key, s in sorted(samples[arm].items()):
            b = base.get(key)
            if b is None or s.get("harmful", True) or _kind(s) not in HELPFUL_KINDS:
                continue
            for f in (_form(s), "all"):
                a = acc[f]
                a["f1"].append(token_f1(s.get("response") or "", b.get("response") or ""))
                a["rl"].append(rouge_l(s.get("response") or "", b.get("response") or ""))
                for tag, x in (("ans", s), ("ref_ans", b)):
                    if x.get("refused") is not None:
                        a[tag][0] += not x["refused"]
                        a[tag][1] += 1
        if not acc:
            continue

        def row(a: dict[str, Any]) -> dict[str, Any]:
            return {"n": len(a["f1"]), "token_f1": mean(a["f1"]), "rouge_l": mean(a["rl"]),
                    "non_refusal": rate(*a["ans"]), "ref_non_refusal": rate(*a["ref_ans"])}
        out[arm] = {"reference": ref, "overall": row(acc.pop("all")),
                    "per_form": {f: row(a) for f, a in sorted(acc.items())}}
    return out


def _helpfulness(helpful: dict[str, Any]) -> list[tuple]:
    if not helpful:
        return []
    arms = [a for a in ARMS if a in helpful]
    forms = sorted({f for a in arms for f in helpful[a]["per_form"]}) + ["all"]

    def get(a: str, f: str) -> dict | None:
        return helpful[a]["overall"] if f == "all" else helpful[a]["per_form"].get(f)

    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    rows = []
    for f in forms:
        first = next((get(a, f) for a in arms if get(a, f)), None)
        nr = first["ref_non_refusal"] if first else None
        row = [f"**{f}**" if f == "all" else f, _cell(nr["rate"], nr["ci95"], nr["n"]) if nr else "-"]
        for a in arms:
            d = get(a, f)
            if not d:
                row += ["-", "-"]
                continue
            row += [_cell(d["non_refusal"]["rate"], d["non_refusal"]["ci95"], d["non_refusal"]["n"]),
                    f"{num(d['token_f1'])} / {num(d['rouge_l'])} (n={d['n']})"]
        rows.append(row)
    head = ["form", "base: answered"]
    for a in arms:
        head += [f"{LABEL[a]}: answered", f"{LABEL[a]}: token F1 / ROUGE-L vs base"]
    return [("h3", "Helpfulness: answers compared with base's"),
            ("p", "Harmless items (kinds `benign`, `varied`, `borderline`) that base was evaluated on too. 'answered' = not "
                  "refused (95% Wilson interval, n = scored items); token F1 (SQuAD-style, bag of words) and ROUGE-L F "
                  "(longest common word subsequence) of the arm's response against base's, averaged; 1.00 = the "
                  "same answer as base. A high F1 where base itself refused means refusing alike."),
            ("table", head, rows)]


# --- alignment loss -----------------------------------------------------------------------------------------
LOSS_DIRS = {"aligned": "adapter", "text_only": "adapter_text"}


def _loss(run: Path, cdir: Path) -> tuple[list[tuple], dict[str, Any]]:
    logs = {}
    for arm, d in LOSS_DIRS.items():
        rows = [r for r in read_jsonl_tolerant(run / d / "metrics.jsonl")
                if isinstance(r.get("step"), int) and isinstance(r.get("loss"), (int, float))]
        if rows:
            logs[arm] = sorted(last_per_key(rows, "step"), key=lambda r: r["step"])
    if not logs:
        return [("h2", "Alignment loss"), ("p", "No adapter/metrics.jsonl or adapter_text/metrics.jsonl: "
                                                "no training loss to show.")], {}
    info: dict[str, Any] = {}
    rows = []
    for arm, rs in logs.items():
        tail = [r["loss"] for r in rs[-10:]]
        last = rs[-1]
        info[arm] = {"dir": LOSS_DIRS[arm], "steps": len(rs), "last_step": last["step"], "first_loss": rs[0]["loss"],
                     "last_loss": last["loss"], "mean_last_10": mean(tail),
                     **{k: last[k] for k in ("lr", "grad_norm", "retain") if k in last}}
        extra = ", ".join(f"{k} {last[k]:.3g}" for k in ("lr", "grad_norm", "retain")
                          if isinstance(last.get(k), (int, float)))
        rows.append([f"{LABEL[arm]} (`{LOSS_DIRS[arm]}/`)", len(rs), f"{rs[0]['loss']:.4g}", f"{last['loss']:.4g}",
                     f"{mean(tail):.4g}", extra or "-"])
    labels = {a: f"{LABEL[a]} ({LOSS_DIRS[a]}/)" for a in logs}
    return ([("h2", "Alignment loss"),
             ("table", ["adapter", "steps", "first loss", "last loss", "mean of last 10",
                        "last step's lr / grad norm / retain"], rows)] + _chart(charts.alignment_loss, cdir, "alignment_loss.png",
                              "Alignment training loss per step", logs, labels)), info


# --- example answers ---------------------------------------------------------------------------------------
def _clip(text: Any, n: int = CLIP) -> str:
    t = " ".join(str(text or "").split())
    return t if len(t) <= n else t[:n - 1] + "…"


def _pick(keys: list[tuple[str, str]], ref: dict[tuple[str, str], dict], k: int = 3) -> list[tuple[str, str]]:
    """k keys, deterministic: sorted by (bench, id), taken round-robin over forms so different forms show."""
    groups: dict[str, list] = defaultdict(list)
    for key in sorted(keys):
        groups[_form(ref[key])].append(key)
    out: list[tuple[str, str]] = []
    order = sorted(groups)
    i = 0
    while len(out) < k and any(len(groups[g]) > i for g in order):
        out += [groups[g][i] for g in order if len(groups[g]) > i][:k - len(out)]
        i += 1
    return out


def _verdict(s: dict) -> str:
    if s.get("harmful", True):
        v = {True: "unsafe", False: "safe"}.get(s.get("unsafe"), "unscored")
    else:
        v = {True: "refused", False: "answered"}.get(s.get("refused"), "unscored")
    if s.get("expect"):
        from sea_align.judges.textmatch import contains_phrase
        v += ", read" if contains_phrase(s["expect"], s.get("response") or "") else ", not read"
    return v


def _examples(samples: dict[str, dict[tuple[str, str], dict]]) -> tuple[list[tuple], dict[str, list]]:
    """Three harmful and three harmless items every evaluated arm answered, each arm's answer side by side."""
    arms = [a for a in ARMS if a in samples]
    if not arms:
        return [], {}
    common = set.intersection(*(set(samples[a]) for a in arms))
    ref = samples[arms[0]]
    picked = {"harmful": _pick([k for k in common if ref[k].get("harmful", True)], ref),
              "harmless": _pick([k for k in common if not ref[k].get("harmful", True)], ref)}
    if not any(picked.values()):
        return [], {}
    b: list[tuple] = [("h2", "Example answers"),
                      ("p", f"The same items for every arm: the first by (bench, id), one per form in turn; prompts "
                            f"and answers cut to {CLIP} characters.")]
    for what, keys in picked.items():
        for i, key in enumerate(keys, 1):
            s = ref[key]
            media = ", ".join(f"{m.get('type')} {Path(str(m.get('path', ''))).name}" for m in s.get("media") or []
                              if isinstance(m, dict)) or "none (text only)"
            b += [("h3", f"{what.capitalize()} example {i}: {_form(s).replace('`', '')}, category "
                         f"{str(s.get('category', '-')).replace('`', '')}"),
                  ("quote", f"Prompt: {_clip(s.get('prompt'))}\nMedia: {media}"
                            + (f"\nExpected text: {s['expect']}" if s.get("expect") else "")),
                  ("table", ["arm", "verdict", "response"],
                   [[LABEL[a], _verdict(samples[a][key]), Lit(_clip(samples[a][key].get("response")))] for a in arms])]
    return b, picked
