"""The `sea` command: a thin layer over the stage functions (`run_<stage>`). It owns the console."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__

# Sub-command plugins: each module defines add_cli(subparsers) and sets `func` on its parsers.
PLUGINS = ["sea_align.organism.recipe", "sea_align.organism.audio_recipe", "sea_align.cli_bench", "sea_align.bench"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])


def _add_stage_parsers(sub) -> None:
    """One sub-command per pipeline stage: prepare, synthesize, align, evaluate."""
    from .readers import formats
    p = sub.add_parser("prepare", help="extract key phrases, detoxify, build auxiliary pairs")
    p.add_argument("--data", required=True, help="text safety set: our JSONL (instruction, response, ...), HarmBench "
                   "or AdvBench CSV, PKU-SafeRLHF, BeaverTails, chat JSONL, ... (docs/sources.md)")
    p.add_argument("--format", dest="fmt", default="", choices=[""] + formats(), metavar="NAME",
                   help=f"reader of --data (default: detected): {', '.join(formats())}")
    p.add_argument("--out", required=True, help="prepared.jsonl to write")
    p.add_argument("--extractor", default="rules", choices=["rules", "openai"])
    p.add_argument("--openai-base-url", default=None)
    p.add_argument("--openai-model", default=None)
    p.add_argument("--limit", type=int, default=0)
    _common(p)

    p = sub.add_parser("synthesize", help="optimise one synthetic embedding per prepared sample")
    p.add_argument("--model", required=True)
    p.add_argument("--modality", required=True, choices=["image", "video", "audio"])
    p.add_argument("--data", required=True, help="prepared.jsonl")
    p.add_argument("--out", required=True, help="embeddings directory")
    p.add_argument("--space", default=None, choices=["encoder", "llm"])
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--stop-loss", type=float, default=None, help="stop a sample once reproduced and CE below this")
    p.add_argument("--init", default=None, choices=["blank", "text"], help="start E from the blank item or the phrase")
    p.add_argument("--init-text", default=None, help="with --init text: the text written into the slots ({phrase}, "
                   "{targets}; default {phrase})")
    p.add_argument("--autocast", default=None, choices=["none", "bf16", "auto"], help="bf16 loss pass")
    p.add_argument("--seed", type=int, default=None)
    _common(p)

    p = sub.add_parser("align", help="LoRA safety alignment with the synthetic embeddings")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="prepared.jsonl")
    p.add_argument("--embeddings", default=None, help="embeddings directory (not needed with --text-only)")
    p.add_argument("--out", required=True, help="adapter directory (PEFT format)")
    p.add_argument("--text-only", action="store_true", help="train the text-only alignment baseline")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--method", default=None, choices=["auto", "sft", "dpo"])
    _common(p)

    p = sub.add_parser("evaluate", help="generate on a benchmark and judge")
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", default=None, help="PEFT adapter directory")
    p.add_argument("--bench", required=True, action="append", help="benchmark JSONL (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--judge", default="refusal")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=0)
    _common(p)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sea", description="SEA: multimodal safety alignment from text-only data")
    ap.add_argument("--version", action="version", version=f"sea-align {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    _add_stage_parsers(sub)

    p = sub.add_parser("run", help="prepare -> synthesize -> align -> evaluate -> report (resumable)")
    p.add_argument("--config", required=True, help="YAML file or preset name (tiny, default, ...)")
    p.add_argument("--out", required=True)
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. synthesize.max_steps=20")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("report", help="write report.md, PNG charts and report.html for a run directory")
    p.add_argument("dir")

    for name in PLUGINS:  # modules that add their own sub-commands with add_cli(subparsers)
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        mod.add_cli(sub)
    return ap


def _load(args, model: str, adapter: str | None = None, modality: str | None = None):
    from .models import load_adapter
    return load_adapter(model, dtype=args.dtype, adapter_dir=adapter, modality=modality)


def dispatch(args: argparse.Namespace) -> int:
    from .config import AlignConfig, PrepareConfig, SynthesizeConfig
    from .io import read_jsonl
    progress = not getattr(args, "quiet", False)
    if args.cmd == "prepare":
        from .prepare import run_prepare
        cfg = PrepareConfig(extractor=args.extractor, limit=args.limit, format=args.fmt)
        if args.openai_base_url:
            cfg.openai_base_url = args.openai_base_url
        if args.openai_model:
            cfg.openai_model = args.openai_model
        res = run_prepare(args.data, args.out, cfg)
        print(f"prepared {res.n} rows ({res.n_harmful} harmful, {res.n_benign} benign) -> {res.path}")
    elif args.cmd == "synthesize":
        from .synthesize import run_synthesize
        cfg = SynthesizeConfig()
        for k in ("space", "max_steps", "batch_size", "lr", "stop_loss", "seed", "init", "init_text", "autocast"):
            if getattr(args, k) is not None:
                setattr(cfg, k, getattr(args, k))
        rows = read_jsonl(args.data, required=("id", "key_phrase", "aux"))
        res = run_synthesize(_load(args, args.model, modality=args.modality), rows, args.out, args.modality, cfg,
                             model_name=args.model, progress=progress)
        print(f"{res.n} embeddings ({res.n_done_before} already done), {res.n_verified} verified, "
              f"{res.n_failed} failed -> {res.out_dir}")
    elif args.cmd == "align":
        from .align import run_align
        cfg = AlignConfig(text_only=args.text_only)
        for k in ("epochs", "lr", "method"):
            if getattr(args, k) is not None:
                setattr(cfg, k, getattr(args, k))
        rows = read_jsonl(args.data, required=("id", "instruction", "response", "detoxified"))
        res = run_align(_load(args, args.model), rows, args.embeddings, args.out, cfg, progress=progress)
        print(f"aligned ({res.method}) on {res.n_train} samples {res.counts}; final loss {res.final_loss:.4f} "
              f"-> {res.out_dir}")
    elif args.cmd == "evaluate":
        from .evaluate import run_evaluate
        res = run_evaluate(_load(args, args.model, args.adapter), args.bench, args.out, judge=args.judge,
                           max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, limit=args.limit,
                           info={"model": args.model, "adapter": args.adapter}, progress=progress)
        s = res.summary
        print(f"n={s['n']} scored={s['n_scored']} unscored={s['n_unscored']} ASR={s['asr']} "
              f"over-refusal={s['refusal_rate_harmless']} -> {res.out_dir / 'summary.json'}")
    elif args.cmd == "run":
        from .config import load_config
        from .run import run_pipeline
        cfg = load_config(args.config, args.overrides)
        man = run_pipeline(cfg, args.out, progress=progress)
        print(json.dumps({k: v.get("seconds") for k, v in man["stages"].items()}))
        print(f"report: {Path(args.out) / 'report.md'}")
    elif args.cmd == "report":
        from .report import run_report
        print(run_report(args.dir))
    elif hasattr(args, "func"):
        return int(args.func(args) or 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .io import DataError
    from .models.base import ModelError
    try:
        return dispatch(args)
    except (DataError, ModelError) as e:
        print(f"sea: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sea: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
