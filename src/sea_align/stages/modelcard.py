"""Model cards (README.md) for an adapter or an exported model, written from what is on disk: the
adapter's `adapter_config.json` and `train_summary.json`, and, when the adapter sits in a run directory
(`sea run`: DIR/adapter, DIR/adapter_text), the run's config, manifest, benchmarks and evaluation
summaries. Nothing here loads a model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sea_align import __version__
from sea_align.runtime.io import atomic_write_text

ARM_OF = {"adapter": "aligned", "adapter_text": "text_only"}  # adapter dir name in a run -> its eval arm
PAPER = "SEA (Lu et al., ACL 2025, arXiv 2502.12562)"


def is_builtin(model: str) -> bool:
    """A model sea-align builds (no hub id): a registered built-in name, or a tiny random test model."""
    from sea_align.models.registry import is_builtin as registered

    return model.startswith("tiny-random-") or registered(model)


def adapter_note(model: str) -> str:
    """How to load base + adapter (the card of an adapter directory)."""
    if is_builtin(model):
        return (
            f"`{model}` is built by sea-align, not downloaded: load base + adapter with "
            f"`sea_align.models.load_adapter({model!r}, adapter_dir=DIR)` or `sea evaluate --model {model} "
            "--adapter DIR`."
        )
    return (
        f"Load: `PeftModel.from_pretrained(<its transformers class>.from_pretrained({model!r}), DIR)`, or "
        f"`sea evaluate --model {model} --adapter DIR`."
    )


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file's content; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class CardInfo:
    base_model: str
    train: dict[str, Any]  # train_summary.json
    run: Path | None = None  # the run directory holding the adapter, if any
    arm: str | None = None  # its evaluation arm in that run
    commands: list[str] = field(default_factory=list)
    merged: bool = False
    notes: list[str] = field(default_factory=list)  # how to load, what was (not) saved


def collect(adapter_dir: str | Path, base_model: str | None = None) -> CardInfo:
    """What the card says, read from `adapter_dir` (and its run directory when it is in one)."""
    adir = Path(adapter_dir)
    base = base_model or read_json(adir / "adapter_config.json").get("base_model_name_or_path") or "unknown"
    run = adir.parent if (adir.parent / "manifest.json").is_file() and adir.name in ARM_OF else None
    info = CardInfo(
        base_model=str(base),
        train=read_json(adir / "train_summary.json"),
        run=run,
        arm=ARM_OF.get(adir.name) if run else None,
        notes=[adapter_note(str(base))],
    )
    cmd = read_json(run / "manifest.json").get("command") if run else None
    if cmd:
        info.commands.append(cmd)
    return info


def _method(train: dict[str, Any]) -> list[str]:
    if not train:
        return ["No train_summary.json beside the adapter: training details unknown."]
    c = train.get("config") or {}
    kind = (
        "text-only alignment (the paper's baseline: no synthetic embeddings)"
        if train.get("text_only")
        else f"{PAPER}: LoRA on the language model, trained on synthetic "
        f"{train.get('modality') or 'media'} embeddings + text"
    )
    return [
        f"{kind}.",
        f"Objective `{train.get('method')}`; LoRA r={c.get('lora_r')}, alpha={c.get('lora_alpha')} on "
        f"{', '.join(c.get('lora_targets') or [])}; {c.get('epochs')} epochs, lr {c.get('lr')}, batch "
        f"{c.get('batch_size')}, retain {c.get('retain', 0)}; {train.get('steps')} steps, final loss "
        f"{_num(train.get('final_loss'))}.",
        f"Training examples per kind: `{json.dumps(train.get('counts') or {})}`.",
    ]


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "?"


def _data(info: CardInfo) -> list[str]:
    if not info.run:
        return ["Not recorded (the adapter is not inside a `sea run` directory)."]
    cfg = yaml.safe_load((info.run / "config.yaml").read_text()) if (info.run / "config.yaml").is_file() else {}
    prep = (read_json(info.run / "manifest.json").get("stages") or {}).get("prepare") or {}
    data = (cfg or {}).get("data", "?")
    from sea_align.sources.named import CARD

    named = f" ({CARD[data]})" if data in CARD else ""
    return [
        f"Text safety set `{data}`{named}: {prep.get('n_harmful', '?')} harmful and {prep.get('n_benign', '?')} "
        f"benign rows prepared; {prep.get('dropped_overlapping_eval', 0)} rows dropped as overlapping the "
        "evaluation phrases."
    ]


def _pct(x: Any, ci: Any = None) -> str:
    if not isinstance(x, (int, float)):
        return "n/a"
    ok = isinstance(ci, list) and len(ci) == 2 and None not in ci
    return f"{100 * x:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ok else "")


def _results(info: CardInfo) -> list[str]:
    if not info.run:
        return ["Not measured here (the adapter is not inside a `sea run` directory)."]
    arms = [a for a in ("base", info.arm) if a and (info.run / "eval" / a / "summary.json").is_file()]
    if info.arm not in arms:
        return ["Not evaluated yet (no eval summary for this adapter in its run directory)."]
    rows = ["| model | ASR (macro) | over-refusal on harmless items | scored / unscored |", "|---|---|---|---|"]
    for a in arms:
        s = read_json(info.run / "eval" / a / "summary.json")
        rows.append(
            f"| {'base model' if a == 'base' else 'this model'} | {_pct(s.get('asr'), s.get('asr_ci95'))} | "
            f"{_pct(s.get('refusal_rate_harmless'), s.get('refusal_rate_harmless_ci95'))} | "
            f"{s.get('n_scored')} / {s.get('n_unscored')} |"
        )
    judge = (read_json(info.run / "eval" / info.arm / "summary.json").get("judge") or {}).get("name", "?")
    return (
        rows + ["", f"Judge `{judge}`; brackets: 95% Wilson interval (pooled counts). Benchmarks:"] + _benches(info.run)
    )


def _benches(run: Path) -> list[str]:
    out = []
    for p in sorted((run / "bench").glob("*/build_info.json")):
        i = read_json(p)
        fb = f" (fallback: {i['fallback_for']} was missing)" if i.get("fallback_for") else ""
        out.append(
            f"- `{p.parent.name}`: {i.get('n_rows')} rows, builder `{i.get('builder')}`, source `{i.get('source')}`{fb}"
        )
    return out


def _bullets(lines: list[str]) -> list[str]:
    return [f"- {x}" for x in lines]


def render(info: CardInfo) -> str:
    lib = "transformers" if info.merged else "peft"
    what = "merged model (LoRA folded into the weights)" if info.merged else "LoRA adapter (PEFT)"
    lines = [
        "---",
        f"library_name: {lib}",
        f"base_model: {json.dumps(info.base_model)}",
        "tags: [sea-align, safety-alignment, lora]",
        "---",
        f"# Safety-aligned {what} for `{info.base_model}`",
        "",
        f"Made with sea-align {__version__}, an implementation of {PAPER}.",
        "",
        "## Base model",
        f"`{info.base_model}`.",
        "",
        *_bullets(info.notes),
        "",
        "## Method",
        *_bullets(_method(info.train)),
        "",
        "## Data",
        *_data(info),
        "",
        "## Measured",
        *_results(info),
        "",
    ]
    if info.commands:
        lines += ["## Commands that made it", "```bash", *info.commands, "```", ""]
    return "\n".join(lines)


def write_card(out_dir: str | Path, info: CardInfo) -> Path:
    path = Path(out_dir) / "README.md"
    atomic_write_text(path, render(info))
    return path


def refresh(adapter_dir: str | Path) -> Path:
    """Rewrite an adapter's README.md from what is on disk now (e.g. after its evaluation)."""
    return write_card(adapter_dir, collect(adapter_dir))
