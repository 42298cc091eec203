"""CLI plugin: `sea bench-data` (benchmark builders) and `sea judge` (re-judge stored responses)."""
from __future__ import annotations

import argparse


def add_cli(sub: argparse._SubParsersAction) -> None:
    from .benchdata import BENIGN_FORMS, BUILDERS
    from .readers import formats
    p = sub.add_parser("bench-data", help="build a benchmark JSONL + media")
    p.add_argument("name", choices=list(BUILDERS) + list(BENIGN_FORMS))
    p.add_argument("--data", "--questions", dest="source", default="",
                   help="the source: a questions folder (VA-/MM-SafetyBench), FigStep's CSV, VLGuard's test.json, "
                        "a JSONL with instruction (+ key_phrase, phrase_type, category), ... (docs/sources.md)")
    p.add_argument("--format", dest="fmt", default="", choices=[""] + formats(), metavar="NAME",
                   help=f"reader of --data (default: detected): {', '.join(formats())}")
    p.add_argument("--out", required=True, help="output directory (bench.jsonl, media/, build_info.json)")
    p.add_argument("--media", default=None, help="the authors' media: VA-SafetyBench (Video/..., Audio/...), "
                   "MM-SafetyBench imgs/, FigStep's images, VLGuard's test/ (copied byte for byte)")
    p.add_argument("--form", default=None, help="for 'benign': which form (text, mm-safetybench-typo, figstep, "
                                                  "va-safetybench-audio, va-safetybench-video)")
    p.add_argument("--types", default=None, help="comma-separated attack types (VA builders: default all; "
                   "mm-safetybench-typo: TYPO, SD, SD_TYPO, default TYPO or all three with --media)")
    p.add_argument("--limit", type=int, default=0, help="first N items per category after a seeded shuffle (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="voices, noise, fonts and animation are drawn from it")
    p.add_argument("--workers", type=int, default=2, help="media rendered in parallel")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_bench_data)

    p = sub.add_parser("judge", help="re-judge an evaluation's stored responses (no generation)")
    p.add_argument("eval_dir", help="an evaluation directory with samples.jsonl + summary.json")
    p.add_argument("--judge", required=True, help="judge name (refusal, openai, hf-classifier)")
    p.add_argument("--judge-model", default=None, help="openai: model name; hf-classifier: local model path")
    p.add_argument("--judge-base-url", default=None, help="openai: base URL of the chat-completions endpoint")
    p.add_argument("--judge-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra judge keyword (repeatable), e.g. timeout=30 retries=3 workers=4")
    p.add_argument("--tag", default=None, help="file suffix (default: the judge name)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_judge)


def _bench_data(args: argparse.Namespace) -> int:
    import json
    from .benchdata import build
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    path = build(args.name, args.out, args.source, args.limit, args.seed, media_dir=args.media, form=args.form,
                 types=types, workers=args.workers, progress=not args.quiet, fmt=args.fmt)
    info = json.loads((path.parent / "build_info.json").read_text())
    print(f"{info['n_rows']} rows from {info['n_items']} items {info['rows_per_attack']} -> {path}")
    if info["skipped_types"]:
        print(f"skipped types (need the authors' media, --media DIR): {', '.join(info['skipped_types'])}")
    return 0


def _judge(args: argparse.Namespace) -> int:
    from .rejudge import parse_kwargs, run_judge
    kw = parse_kwargs(args.judge_arg)
    if args.judge_model:
        kw["model"] = args.judge_model
    if args.judge_base_url:
        kw["base_url"] = args.judge_base_url
    res = run_judge(args.eval_dir, args.judge, judge_kwargs=kw, tag=args.tag, progress=not args.quiet)
    s = res.summary
    print(f"judge {s['judge']['name']}: n={s['n']} scored={s['n_scored']} unscored={s['n_unscored']} "
          f"ASR={s['asr']} over-refusal={s['refusal_rate_harmless']} -> {res.summary_path}")
    return 0
