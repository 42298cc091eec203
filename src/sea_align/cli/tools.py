"""CLI plugin: `sea bench-data` (benchmark builders), `sea data fetch` (released files we may not ship),
`sea judge` (re-judge stored responses) and `sea bench` (our engine against the naive reference, tools/speed.py).
Parsers import no torch."""

from __future__ import annotations

import argparse

from sea_align.cli.args import device_spec, judge_name
from sea_align.config import config_key


def add_cli(sub: argparse._SubParsersAction) -> None:
    _add_bench_data(sub)
    _add_data(sub)
    _add_judge(sub)
    _add_agreement(sub)
    _add_bench(sub)


def _add_bench_data(sub: argparse._SubParsersAction) -> None:
    from sea_align.benchmarks.build import BENIGN_FORMS, BUILDERS
    from sea_align.sources.registry import formats

    p = sub.add_parser("bench-data", help="build a benchmark JSONL + media")
    p.add_argument("name", choices=list(BUILDERS) + list(BENIGN_FORMS), help="the builder (docs/sources.md)")
    p.add_argument(
        "--data",
        "--questions",
        dest="source",
        default="",
        help="the source: a questions folder (VA-/MM-SafetyBench), FigStep's CSV, VLGuard's test.json, "
        "a JSONL with instruction (+ key_phrase, phrase_type, category), ... (docs/sources.md; default: none, "
        "required by the harmful builders; the harmless ones use the package's own requests)",
    )
    p.add_argument(
        "--format",
        dest="fmt",
        default="",
        choices=[""] + formats(),
        metavar="NAME",
        help=f"reader of --data (default: detected from the file): {', '.join(formats())}",
    )
    p.add_argument("--out", required=True, help="output directory (bench.jsonl, media/, build_info.json)")
    p.add_argument(
        "--media",
        default=None,
        help="the authors' media: VA-SafetyBench (Video/..., Audio/...), "
        "MM-SafetyBench imgs/, FigStep's images, VLGuard's test/ (copied byte for byte; default: none, "
        "media are drawn)",
    )
    p.add_argument(
        "--form",
        default=None,
        help="for 'benign': which form (text, mm-safetybench-typo, figstep, "
        "va-safetybench-audio, va-safetybench-video; default: text)",
    )
    p.add_argument(
        "--types",
        default=None,
        help="comma-separated attack types (VA builders: default all; "
        "mm-safetybench-typo: TYPO, SD, SD_TYPO, default TYPO or all three with --media)",
    )
    p.add_argument("--limit", type=int, default=0, help="first N items per category after a seeded shuffle (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="voices, noise, fonts and animation are drawn from it")
    p.add_argument("--workers", type=int, default=2, help="media rendered in parallel")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_bench_data)


def _add_data(sub: argparse._SubParsersAction) -> None:
    from sea_align.sources.fetch import RELEASES

    p = sub.add_parser("data", help="get benchmark files this package may not ship (sea data fetch --help)")
    ds = p.add_subparsers(dest="what", required=True, metavar="ACTION")
    q = ds.add_parser("fetch", help="download a release's question files into a new folder (all or nothing)")
    q.add_argument("name", choices=list(RELEASES), help="the release")
    q.add_argument("--out", required=True, help="folder to create, e.g. DIR/data/va-safetybench (then SEA_SHARED=DIR)")
    q.add_argument(
        "--url",
        default=None,
        help="base URL of the files: a mirror or a local copy (file:///...); "
        "its files are not hash-checked (default: the authors' repository at a pinned commit, checked)",
    )
    q.add_argument("--force", action="store_true", help="replace --out if it exists")
    q.add_argument("--timeout", type=float, default=60.0, help="seconds per file")
    q.set_defaults(func=_data_fetch)


def _add_judge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("judge", help="re-judge an evaluation's stored responses (no generation)")
    p.add_argument("eval_dir", help="an evaluation directory with samples.jsonl + summary.json")
    p.add_argument("--judge", required=True, type=judge_name, metavar="NAME", help=config_key("evaluate.judge").help)
    p.add_argument(
        "--judge-model",
        default=None,
        help="openai: model name; hf-classifier: local model path (default: the judge's own)",
    )
    p.add_argument(
        "--judge-base-url",
        default=None,
        help="openai: base URL of the chat-completions endpoint (default: the judge's own)",
    )
    p.add_argument(
        "--judge-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra judge keyword (repeatable), e.g. timeout=30 retries=3 workers=4 (default: none)",
    )
    p.add_argument("--tag", default=None, help="file suffix (default: the judge name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_judge)


def _add_agreement(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("judge-agreement", help="how often a judge agrees with answers labelled by hand")
    p.add_argument("labels", help="JSONL of labelled answers: response, harmful, label (comply|refuse), request")
    p.add_argument("--judge", required=True, type=judge_name, metavar="NAME", help=config_key("evaluate.judge").help)
    p.add_argument(
        "--judge-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="judge setting, repeatable (default: none)",
    )
    p.add_argument("--out", default=None, help="JSON file for the rates and every row's verdict (default: none)")
    p.set_defaults(func=_agreement)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time our engine against the naive reference (JSON report)")
    bs = p.add_subparsers(dest="what", required=True)
    for what, text in (
        ("synthesize", "synthesis: batched, early-stopping engine vs one sample at a time"),
        ("evaluate", "evaluation: batched greedy generation vs one item at a time"),
        ("dtype", "evaluation in float32 vs a lower dtype: seconds per item and the verdicts' agreement"),
    ):
        q = bs.add_parser(what, help=text)
        q.add_argument("--model", required=True, help="model name or directory (as `sea synthesize --model`)")
        q.add_argument("--n", type=int, default=32, help="samples (harmful rows of --data)")
        q.add_argument("--out", required=True, help="JSON report to write")
        q.add_argument(
            "--modality",
            default=None,
            choices=config_key("modality").choices(),
            help="media form (default: the model's first)",
        )
        q.add_argument(
            "--data", default="", help="text safety set, any format of docs/sources.md (default: the shipped AdvBench)"
        )
        q.add_argument(
            "--config",
            default="default",
            help="preset or YAML whose `synthesize` section is our "
            "engine's setting (default: the main job's); the flags below override it",
        )
        q.add_argument("--device", default="auto", type=device_spec, metavar="DEVICE", help=config_key("device").help)
        q.add_argument("--dtype", default="auto", choices=config_key("dtype").choices(), help=config_key("dtype").help)
        _add_bench_engine(q)
        if what == "synthesize":
            q.add_argument(
                "--reference",
                default="naive",
                choices=["naive", "preset"],
                help="what ours is timed against: naive (one sample at a time, blank start, every step) or preset "
                "(our engine with the --config preset's setting as it is, same --max-steps and --max-new-tokens: "
                "what the flags change, measured in one run)",
            )
        if what == "dtype":
            q.add_argument(
                "--low", default="bfloat16", choices=["bfloat16", "float16"], help="the dtype timed against float32"
            )
        q.set_defaults(func=_bench)
    _add_bench_align(bs)


def _add_bench_align(bs: argparse._SubParsersAction) -> None:
    q = bs.add_parser("align", help="alignment step: one shared aligned pass vs one pass per loss term")
    q.add_argument("--model", required=True, help="model name or directory (as `sea align --model`)")
    q.add_argument("--data", required=True, help="prepared.jsonl (as `sea align --data`)")
    q.add_argument("--embeddings", required=True, help="embeddings directory (as `sea align --embeddings`)")
    q.add_argument("--out", required=True, help="JSON report to write")
    q.add_argument(
        "--config", default="default", help="preset or YAML whose `align` section is used (default: the main job's)"
    )
    q.add_argument("--steps", type=int, default=8, help="SFT steps timed, each run by both (default: 8)")
    q.add_argument(
        "--retain", type=float, default=None, help=f"{config_key('align.retain').help} (default: the preset's)"
    )
    q.add_argument(
        "--consistency",
        type=float,
        default=None,
        help=f"{config_key('align.experimental.consistency').help} (default: the preset's)",
    )
    q.add_argument("--batch-size", type=int, default=None, help="examples per step (default: the preset's)")
    q.add_argument("--device", default="auto", type=device_spec, metavar="DEVICE", help=config_key("device").help)
    q.add_argument("--dtype", default="auto", choices=config_key("dtype").choices(), help=config_key("dtype").help)
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_bench_align)


def _bench_align(args: argparse.Namespace) -> int:
    from sea_align.tools.speed import run_align_cli

    return run_align_cli(args)


def _add_bench_engine(q: argparse.ArgumentParser) -> None:
    """`sea bench` options of the two engines (None: the preset's value)."""
    q.add_argument("--batch-size", type=int, default=None, help="ours (default: the preset's)")
    q.add_argument("--max-steps", type=int, default=60, help="our step cap; the naive engine runs this many")
    q.add_argument("--max-new-tokens", type=int, default=40, help="probe / generation length, both engines")
    q.add_argument("--lr", type=float, default=None, help="Adam lr (relative), both engines (default: the preset's)")
    q.add_argument("--init", default=None, choices=_choices("init"), help="ours (naive: blank; default: the preset's)")
    q.add_argument(
        "--init-text",
        default=None,
        help="ours, init text: the text written into the slots ({phrase}, {targets}; default: the preset's)",
    )
    q.add_argument(
        "--autocast",
        default=None,
        choices=_choices("autocast"),
        help="our loss pass in bf16 (auto: when the CPU/GPU supports bf16; naive: float32; default: the preset's)",
    )
    q.add_argument(
        "--stop-loss",
        type=float,
        default=None,
        help="ours: stop once CE <= this and both targets are reproduced (default: the preset's)",
    )
    q.add_argument(
        "--warmup", type=int, default=None, help="ours: per-sample linear lr warm-up steps (default: the preset's)"
    )
    q.add_argument(
        "--lr-adapt",
        default=None,
        help="ours: per-sample step-size control 'up,down,cap' (e.g. 1.1,0.7,3; '' = off; default: the preset's)",
    )
    q.add_argument("--chunk", type=int, default=16, help="samples per interleaving round (ours, then naive)")
    q.add_argument(
        "--attention",
        default=None,
        choices=_choices("experimental.attention"),
        help="ours: loss-pass attention kernel (default: the preset's)",
    )
    q.add_argument("--no-lowp-weights", action="store_true", help="ours: let autocast cast the weights per call")
    q.add_argument(
        "--stop-on",
        default=None,
        choices=_choices("experimental.stop_on"),
        help="ours: the pairs that gate a sample's stop (default: the preset's)",
    )
    q.add_argument("--quiet", action="store_true", help="no progress bars")


def _choices(name: str) -> list[str] | None:
    return config_key("synthesize." + name).choices()


def _bench(args: argparse.Namespace) -> int:
    from sea_align.tools.speed import run_cli

    return run_cli(args)


def _bench_data(args: argparse.Namespace) -> int:
    import json

    from sea_align.benchmarks.build import build

    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    path = build(
        args.name,
        args.out,
        args.source,
        args.limit,
        args.seed,
        media_dir=args.media,
        form=args.form,
        types=types,
        workers=args.workers,
        progress=not args.quiet,
        fmt=args.fmt,
    )
    info = json.loads((path.parent / "build_info.json").read_text())
    print(f"{info['n_rows']} rows from {info['n_items']} items {info['rows_per_attack']} -> {path}")
    if info["skipped_types"]:
        print(f"skipped types (need the authors' media, --media DIR): {', '.join(info['skipped_types'])}")
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from sea_align.sources.fetch import RELEASES, fetch

    out = fetch(args.name, args.out, url=args.url, force=args.force, timeout=args.timeout)
    print(f"{args.name}: {len(RELEASES[args.name].sha256)} files -> {out} (licence: {RELEASES[args.name].licence})")
    return 0


def _agreement(args: argparse.Namespace) -> int:
    from sea_align.judges import judge_kwargs
    from sea_align.runtime.io import atomic_write_json
    from sea_align.tools.agreement import TABLE_HEAD, agreement, table_row

    res = agreement(args.labels, args.judge, judge_kwargs(args.judge_arg))
    if args.out:
        atomic_write_json(args.out, res)
    print(TABLE_HEAD + "\n" + table_row(args.judge, res))
    return 0


def _judge(args: argparse.Namespace) -> int:
    from sea_align.judges import judge_kwargs
    from sea_align.tools.rejudge import run_judge

    kw = judge_kwargs(args.judge_arg)
    if args.judge_model:
        kw["model"] = args.judge_model
    if args.judge_base_url:
        kw["base_url"] = args.judge_base_url
    res = run_judge(args.eval_dir, args.judge, judge_kwargs=kw, tag=args.tag, progress=not args.quiet)
    s = res.summary
    print(
        f"judge {s['judge']['name']}: n={s['n']} scored={s['n_scored']} unscored={s['n_unscored']} "
        f"ASR={s['asr']} over-refusal={s['refusal_rate_harmless']} -> {res.summary_path}"
    )
    return 0
