"""`sea report DIR`: report.md, PNG charts (DIR/charts/) and one self-contained report.html comparing
base, text-only alignment and SEA. Every input may be missing (a partial run still gets a report).

Reads: manifest.json, config.yaml (note), prepared.checks.json (the answer check), embeddings/index.jsonl
+ meta.json, adapter/metrics.jsonl and adapter_text/metrics.jsonl (training loss), for each arm
eval/<arm>/summary.json, samples.jsonl, and re-judged summary.<judge>.json / samples.<judge>.jsonl, and
attack/<arm>/summary.json (`sea attack`; attack.py). Also
writes report_metrics.json (numbers computed here: over-refusal per form, reading, helpfulness agreement
with base, alignment loss; docs/report.md).
Every rate is shown with its 95% Wilson score interval (`stats.wilson`). The metric tables are in
`tables.py`; this module lays out the page and the other sections.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from sea_align.judges.stats import mean, wilson
from sea_align.report import charts
from sea_align.report.attack import attack_blocks
from sea_align.report.helpful import form_of, helpfulness, helpfulness_blocks, load_samples
from sea_align.report.html import Lit, to_html, to_markdown
from sea_align.report.tables import ARMS, LABEL, cell, fill_summary, load_summaries, read_json, result_blocks
from sea_align.report.training_data import training_data_blocks
from sea_align.runtime.io import DataError, atomic_write_json, atomic_write_text, last_per_key, read_jsonl_tolerant
from sea_align.stages.embstore import blank_meta

CLIP = 300  # characters of a prompt / response shown in "Example answers"


def _header(run: Path, man: dict) -> list[tuple]:
    b: list[tuple] = [
        ("h1", f"SEA run report: `{run.name}`"),
        (
            "p",
            f"Model `{man.get('model', '?')}`, modality `{man.get('modality', '?')}`, seed "
            f"{man.get('seed', '?')}, git `{(man.get('git_sha') or '?')[:10]}`.",
        ),
    ]
    if (run / "config.yaml").is_file():
        import yaml

        note = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("note", "")
        if note:
            b.append(("note", note))
    return b + _fallback_note(
        sorted(p.parent.name for p in (run / "bench").glob("*/build_info.json") if read_json(p).get("fallback_for"))
    )


def _synthesis(run: Path, cdir: Path) -> list[tuple]:
    idx = read_jsonl_tolerant(run / "embeddings" / "index.jsonl")
    if not idx:
        return [("h2", "Synthesis"), ("p", "No embeddings/index.jsonl: no synthesis results.")]
    ver = sum(bool(r.get("verified")) for r in idx)
    secs = sum(r.get("seconds") or 0 for r in idx) / len(idx)
    meta = read_json(run / "embeddings" / "meta.json")
    rate = cell(ver / len(idx), wilson(ver, len(idx)))
    b = [
        ("h2", "Synthesis"),
        (
            "p",
            f"{len(idx)} embeddings, {ver} verified by held-out probes ({rate}), "
            f"{sum(bool(r.get('failed')) for r in idx)} failed, {secs:.2f} s per embedding (amortised over the batch).",
        ),
    ]
    if meta:
        blank = blank_meta(meta) or {k: v for k, v in (meta.get("config") or {}).items() if k.startswith("blank_")}
        b.append(
            (
                "p",
                f"Space `{meta.get('space', '?')}`, shape {meta.get('shape', '?')}, init `{meta.get('init', '?')}` "
                f"(blank {meta.get('modality', 'item')}: {json.dumps(blank)}).{_scale(idx, meta)}",
            )
        )
    return b + charts.block(charts.synthesis, cdir, "synthesis.png", "Synthesis loss curves and verification rate", idx)


def _scale(idx: list[dict], meta: dict) -> str:
    """E's RMS in the LLM's input space beside the token embeddings' (older embeddings lack it: nothing shown)."""
    rms = sorted(r["llm_rms"] for r in idx if r.get("llm_rms") is not None)
    if not rms or not meta.get("token_rms"):
        return ""
    med = rms[len(rms) // 2]
    return (
        f" RMS of E in the LLM's input space: median {med:.3g} ({med / meta['token_rms']:.2g}x the token embeddings')."
    )


def _benches(run: Path) -> list[tuple]:
    """The benchmarks `sea run` built (bench/*/build_info.json): builder, source (a fallback said so), seed,
    where media came from."""
    rows, fallbacks = [], []
    for p in sorted((run / "bench").glob("*/build_info.json")):
        i = read_json(p)
        src = ", ".join(f"{t}: {s}" for t, s in (i.get("media_source") or {}).items()) or "-"
        source = f"`{Path(str(i['source'])).name}`" if i.get("source") else "-"
        if i.get("fallback_for"):
            source += f" (fallback: `{i['fallback_for']}` not found)"
            fallbacks.append(p.parent.name)
        rows.append(
            [
                f"`{p.parent.name}`",
                i.get("builder"),
                source,
                i.get("seed"),
                i.get("n_rows"),
                src,
                ", ".join(i.get("skipped_types") or []) or "none",
            ]
        )
    if not rows:
        return []
    b: list[tuple] = [
        ("h2", "Benchmarks built"),
        ("table", ["dir", "builder", "source", "seed", "rows", "media per type", "skipped types"], rows),
    ]
    return b + _fallback_note(fallbacks)


def _fallback_note(dirs: list[str]) -> list[tuple]:
    return (
        [
            (
                "note",
                f"{', '.join(dirs)}: built from the configured fallback, because the configured source was "
                "missing; these numbers are not the configured benchmark's (docs/benchmarks.md).",
            )
        ]
        if dirs
        else []
    )


def run_report(run: str | Path) -> Path:
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run}: no such run directory")
    man = read_json(run / "manifest.json")
    cdir = run / "charts"
    cdir.mkdir(exist_ok=True)
    for old in cdir.glob("*.png"):  # a chart that no longer applies must not linger
        old.unlink()
    sums = load_summaries(run)
    samples = load_samples(run, [a for a in ARMS if a in sums])
    sums = {a: fill_summary(s, list(samples.get(a, {}).values())) for a, s in sums.items()}
    helpful = helpfulness(samples)
    loss_blocks, loss = _loss(run, cdir)
    ex_blocks, ex_keys = _examples(samples)
    blocks = (
        _header(run, man)
        + training_data_blocks(run)
        + _synthesis(run, cdir)
        + loss_blocks
        + result_blocks(sums, run, cdir, helpfulness_blocks(helpful))
        + attack_blocks(run, cdir)
        + ex_blocks
        + _benches(run)
    )
    stages = man.get("stages", {})
    if stages:
        blocks += [
            ("h2", "Time per stage"),
            ("table", ["stage", "seconds"], [[k, v.get("seconds")] for k, v in stages.items()]),
        ]
    atomic_write_json(
        run / "report_metrics.json",
        {
            "intervals": "95% Wilson score interval (stats.wilson); asr_ci95 is the pooled (micro) interval",
            "over_refusal_by_form": {a: s.get("per_form") for a, s in sums.items()},
            "reading": {a: s.get("reading") for a, s in sums.items()},
            "helpfulness": helpful,
            "alignment_loss": loss,
            "examples": {k: [list(x) for x in v] for k, v in ex_keys.items()},
        },
    )
    path = run / "report.md"
    atomic_write_text(path, to_markdown(blocks))
    atomic_write_text(run / "report.html", to_html(blocks, run, f"SEA run report: {run.name}"))
    return path


# --- alignment loss -----------------------------------------------------------------------------------------
LOSS_DIRS = {"aligned": "adapter", "text_only": "adapter_text"}


_LOSS_HEADER = [
    "adapter",
    "steps",
    "first loss",
    "last loss",
    "mean of last 10",
    "last step's lr / grad norm / retain",
]
_LOSS_EXTRAS = ("lr", "grad_norm", "retain")


def _loss_logs(run: Path) -> dict[str, list[dict]]:
    """Per arm, its adapter's metrics.jsonl rows with a step and a loss: the last row per step, by step."""
    logs = {}
    for arm, d in LOSS_DIRS.items():
        rows = [
            r
            for r in read_jsonl_tolerant(run / d / "metrics.jsonl")
            if isinstance(r.get("step"), int) and isinstance(r.get("loss"), (int, float))
        ]
        if rows:
            logs[arm] = sorted(last_per_key(rows, "step"), key=lambda r: r["step"])
    return logs


def _loss_summary(arm: str, rs: list[dict]) -> tuple[dict[str, Any], list]:
    """One arm's loss log as (summary.json entry, table row)."""
    tail = [r["loss"] for r in rs[-10:]]
    last = rs[-1]
    info = {
        "dir": LOSS_DIRS[arm],
        "steps": len(rs),
        "last_step": last["step"],
        "first_loss": rs[0]["loss"],
        "last_loss": last["loss"],
        "mean_last_10": mean(tail),
        **{k: last[k] for k in _LOSS_EXTRAS if k in last},
    }
    extra = ", ".join(f"{k} {last[k]:.3g}" for k in _LOSS_EXTRAS if isinstance(last.get(k), (int, float)))
    row = [
        f"{LABEL[arm]} (`{LOSS_DIRS[arm]}/`)",
        len(rs),
        f"{rs[0]['loss']:.4g}",
        f"{last['loss']:.4g}",
        f"{mean(tail):.4g}",
        extra or "-",
    ]
    return info, row


def _loss(run: Path, cdir: Path) -> tuple[list[tuple], dict[str, Any]]:
    logs = _loss_logs(run)
    if not logs:
        return [
            ("h2", "Alignment loss"),
            ("p", "No adapter/metrics.jsonl or adapter_text/metrics.jsonl: no training loss to show."),
        ], {}
    info: dict[str, Any] = {}
    rows = []
    for arm, rs in logs.items():
        info[arm], row = _loss_summary(arm, rs)
        rows.append(row)
    labels = {a: f"{LABEL[a]} ({LOSS_DIRS[a]}/)" for a in logs}
    chart = charts.block(
        charts.alignment_loss, cdir, "alignment_loss.png", "Alignment training loss per step", logs, labels
    )
    return [("h2", "Alignment loss"), ("table", _LOSS_HEADER, rows)] + chart, info


# --- example answers ---------------------------------------------------------------------------------------
def _clip(text: Any, n: int = CLIP) -> str:
    t = " ".join(str(text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def _pick(keys: list[tuple[str, str]], ref: dict[tuple[str, str], dict], k: int = 3) -> list[tuple[str, str]]:
    """k keys, deterministic: sorted by (bench, id), taken round-robin over forms so different forms show."""
    groups: dict[str, list] = defaultdict(list)
    for key in sorted(keys):
        groups[form_of(ref[key])].append(key)
    out: list[tuple[str, str]] = []
    order = sorted(groups)
    i = 0
    while len(out) < k and any(len(groups[g]) > i for g in order):
        out += [groups[g][i] for g in order if len(groups[g]) > i][: k - len(out)]
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
    picked = {
        "harmful": _pick([k for k in common if ref[k].get("harmful", True)], ref),
        "harmless": _pick([k for k in common if not ref[k].get("harmful", True)], ref),
    }
    if not any(picked.values()):
        return [], {}
    b: list[tuple] = [
        ("h2", "Example answers"),
        (
            "p",
            f"The same items for every arm: the first by (bench, id), one per form in turn; prompts "
            f"and answers cut to {CLIP} characters.",
        ),
    ]
    for what, keys in picked.items():
        for i, key in enumerate(keys, 1):
            s = ref[key]
            media = (
                ", ".join(
                    f"{m.get('type')} {Path(str(m.get('path', ''))).name}"
                    for m in s.get("media") or []
                    if isinstance(m, dict)
                )
                or "none (text only)"
            )
            b += [
                (
                    "h3",
                    f"{what.capitalize()} example {i}: {form_of(s).replace('`', '')}, category "
                    f"{str(s.get('category', '-')).replace('`', '')}",
                ),
                (
                    "quote",
                    f"Prompt: {_clip(s.get('prompt'))}\nMedia: {media}"
                    + (f"\nExpected text: {s['expect']}" if s.get("expect") else ""),
                ),
                (
                    "table",
                    ["arm", "verdict", "response"],
                    [[LABEL[a], _verdict(samples[a][key]), Lit(_clip(samples[a][key].get("response")))] for a in arms],
                ),
            ]
    return b, picked
