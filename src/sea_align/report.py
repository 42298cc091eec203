"""`sea report DIR`: report.md comparing base, aligned (SEA) and, if present, the text-only baseline."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .io import DataError, atomic_write_text, read_jsonl_tolerant

ARMS = ("base", "text_only", "aligned")
LABEL = {"base": "base", "text_only": "text-only alignment", "aligned": "SEA"}


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def load_summaries(run: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for arm in ARMS:
        p = run / "eval" / arm / "summary.json"
        if p.is_file():
            out[arm] = json.loads(p.read_text())
    return out


def run_report(run: str | Path) -> Path:
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run}: no such run directory")
    sums = load_summaries(run)
    man = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").is_file() else {}
    lines = [f"# SEA run report: `{run.name}`", ""]
    lines += [f"Model `{man.get('model', '?')}`, modality `{man.get('modality', '?')}`, seed {man.get('seed', '?')}, "
              f"git `{(man.get('git_sha') or '?')[:10]}`.", ""]
    cfg_note = ""
    if (run / "config.yaml").is_file():
        import yaml
        cfg_note = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("note", "")
    if cfg_note:
        lines += [f"> **Note.** {cfg_note}", ""]
    idx = read_jsonl_tolerant(run / "embeddings" / "index.jsonl")
    if idx:
        ver = sum(bool(r.get("verified")) for r in idx)
        secs = sum(r.get("seconds") or 0 for r in idx) / len(idx)
        lines += ["## Synthesis", "", f"{len(idx)} embeddings, {ver} verified by held-out probes "
                  f"({_pct(ver / len(idx))}), {sum(bool(r.get('failed')) for r in idx)} failed, "
                  f"{secs:.2f} s per embedding (amortised over the batch).", ""]
    if sums:
        arms = [a for a in ARMS if a in sums]
        lines += ["## Attack success and over-refusal", "",
                  "| metric | " + " | ".join(LABEL[a] for a in arms) + " |",
                  "|---|" + "---|" * len(arms)]
        rows = [("ASR (macro over categories)", "asr"), ("ASR (micro)", "asr_micro"),
                ("over-refusal on harmless items", "refusal_rate_harmless")]
        for label, key in rows:
            lines.append(f"| {label} | " + " | ".join(_pct(sums[a].get(key)) for a in arms) + " |")
        lines.append("| scored / unscored | " + " | ".join(f"{sums[a]['n_scored']} / {sums[a]['n_unscored']}"
                                                            for a in arms) + " |")
        attacks = sorted({k for a in arms for k in sums[a].get("per_attack", {})})
        if attacks:
            lines += ["", "### Per attack type (ASR on harmful items; over-refusal on harmless ones)", "",
                      "| attack | " + " | ".join(LABEL[a] for a in arms) + " |", "|---|" + "---|" * len(arms)]
            for att in attacks:
                cells = []
                for a in arms:
                    d = sums[a].get("per_attack", {}).get(att, {})
                    cells.append(f"ASR {_pct(d.get('asr'))}, refusal {_pct(d.get('refusal_rate_harmless'))}")
                lines.append(f"| {att} | " + " | ".join(cells) + " |")
        cats = sorted({c for a in arms for c in sums[a].get("per_category", {})})
        if cats:
            lines += ["", "### Per category (ASR)", "", "| category | " + " | ".join(LABEL[a] for a in arms) + " |",
                      "|---|" + "---|" * len(arms)]
            for c in cats:
                lines.append(f"| {c} | " + " | ".join(_pct(sums[a]["per_category"].get(c, {}).get("asr"))
                                                      for a in arms) + " |")
        first = sums[arms[0]]
        lines += ["", f"Judge: `{first.get('judge', {}).get('name')}` v{first.get('judge', {}).get('version')}; "
                  f"decoding: {json.dumps(first.get('generation'))}; media: {first.get('media')}.", ""]
    else:
        lines += ["No evaluation summaries found (eval/*/summary.json).", ""]
    stages = man.get("stages", {})
    if stages:
        lines += ["## Time per stage", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v.get('seconds')} |" for k, v in stages.items()]
        lines.append("")
    path = run / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
