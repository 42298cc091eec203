"""The stage sub-commands (prepare, synthesize, align, evaluate), `attack`, and `run`, `report`.

Each stage command reads its settings as `sea run` does: `--config FILE|preset`, then `key=value`
overrides, then its own options (which win). The options that set a config entry are generated from the
config dataclasses (`OPTIONS`, `config_options`): name, help, type, choices and default come from the field.
Parsers are built without importing torch; each command imports what it runs."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from sea_align.cli.args import add_config_source, config_flags, config_options
from sea_align.config import RunConfig, config_key
from sea_align.runtime.checks import refuse_overwrite
from sea_align.runtime.io import DataError

log = logging.getLogger(__name__)
MODALITIES = config_key("modality").choices()


# The config entries each command takes as options (a section name: all of its entries), generated from
# the dataclasses by `config_options`; everything else is reachable through --config and key=value.
OPTIONS = {
    "prepare": ("data", "prepare"),
    "synthesize": ("model", "modality", "synthesize", "device", "dtype"),
    "align": ("model", "align", "device", "dtype"),
    "evaluate": ("model", "evaluate", "device", "dtype"),
    "attack": ("model", "attack", "device", "dtype"),
    "run": ("align.report_to", "device", "dtype"),
    "export": ("model", "device", "dtype"),
}


def add_cli(sub: argparse._SubParsersAction) -> None:
    for add in (_add_prepare, _add_synthesize, _add_align, _add_evaluate, _add_attack, _add_run, _add_export):
        add(sub)
    p = sub.add_parser("report", help="write report.md, PNG charts and report.html for a run directory")
    p.add_argument("dir", help="a run directory (what `sea run --out` wrote)")
    p.set_defaults(func=_report)
    p = sub.add_parser(
        "tradeoff",
        help="chart attack success against harmless refusal across runs (one point per arm, one colour per model)",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (what `sea run --out` wrote)")
    p.add_argument("--out", required=True, help="the chart (PNG); its points go to the same name with .json")
    p.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="RUN=NAME",
        help="colour RUN (its folder name) as NAME, e.g. a model size (default: the run's model); repeatable",
    )
    p.add_argument(
        "--attack",
        default="",
        help="one attack form's ASR (e.g. TYPO, KPT) instead of the macro ASR (default: the macro ASR)",
    )
    p.set_defaults(func=_tradeoff)


def _common(p: argparse.ArgumentParser, cmd: str, required: bool = False, shown: dict[str, str] | None = None) -> None:
    """The command's config options, --config and key=value overrides, and --quiet."""
    config_options(p, OPTIONS[cmd], shown)
    add_config_source(p, required)
    if cmd != "export":
        p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="extract key phrases, detoxify, build auxiliary pairs")
    p.add_argument("--out", required=True, help="prepared.jsonl to write")
    _common(p, "prepare")
    p.set_defaults(func=_prepare)


def _add_synthesize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synthesize", help="optimise one synthetic embedding per prepared sample")
    p.add_argument("--data", required=True, help="prepared.jsonl (from `sea prepare`)")
    p.add_argument("--out", required=True, help="embeddings directory (resumable)")
    _common(p, "synthesize")
    p.set_defaults(func=_synthesize)


def _add_align(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="LoRA safety alignment with the synthetic embeddings")
    p.add_argument("--data", required=True, help="prepared.jsonl (from `sea prepare`)")
    p.add_argument(
        "--embeddings", default=None, metavar="DIR", help="embeddings directory (default: none; not with --text-only)"
    )
    p.add_argument("--out", required=True, help="adapter directory (PEFT format)")
    _common(p, "align")
    p.set_defaults(func=_align)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="generate on a benchmark and judge")
    p.add_argument("--adapter", default=None, help="PEFT adapter directory (default: none, the base model)")
    p.add_argument("--out", required=True, help="evaluation directory (samples.jsonl, summary.json; resumable)")
    p.add_argument(
        "--modality", default=None, choices=MODALITIES, help="the model's media form (default: the benches' media type)"
    )
    _common(p, "evaluate")
    p.set_defaults(func=_evaluate)


def _add_attack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack", help="white-box attack on the media input: attack success against the perturbation budget"
    )
    p.add_argument("--bench", required=True, help="benchmark JSONL: its harmful items with media are attacked")
    p.add_argument("--adapter", default=None, help="PEFT adapter directory (default: none, the base model)")
    p.add_argument("--out", required=True, help="attack directory (attack.jsonl, inputs/, summary.json; resumable)")
    p.add_argument(
        "--label", default="", help="the arm's name in rows and reports (default: base, or the adapter's folder)"
    )
    _common(p, "attack")
    p.set_defaults(func=_attack)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="prepare -> synthesize -> align -> evaluate -> report (resumable)")
    p.add_argument("--out", required=True, help="run directory (resumable: finished stages are not redone)")
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the stages, row and item counts, the memory the model needs and a time estimate, then exit "
        "(no model loads)",
    )
    _common(p, "run", required=True)
    p.set_defaults(func=_run)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write an aligned model for other tools: the adapter with its base named, "
        "or (--merge) a merged Hugging Face model; either way with a model card",
    )
    p.add_argument(
        "--adapter",
        required=True,
        help="PEFT adapter directory (e.g. RUN/adapter: the card then "
        "carries that run's measured ASR and over-refusal)",
    )
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument(
        "--merge",
        action="store_true",
        help="fold the LoRA into the weights and save the whole model (loads with transformers' from_pretrained)",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    _common(
        p, "export", shown={"model": "the base the adapter names (adapter_config.json, else its run's config.yaml)"}
    )
    p.set_defaults(func=_export)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (for manifests and model cards)."""
    import shlex
    import sys

    return " ".join(["sea"] + [shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:])])


# ----- commands -------------------------------------------------------------------------------------
def stage_config(args: argparse.Namespace) -> RunConfig:
    """The command's config: --config (default: none), key=value overrides, then its own options."""
    from sea_align.config_load import load_config

    return load_config(args.config, args.overrides, flags=config_flags(args))


def _runtime(cfg: RunConfig) -> tuple[str, str]:
    """(device, dtype) for this machine; an unavailable device is a one-line error before any model loads."""
    from sea_align.runtime.device import choose

    device, dtype = choose(cfg.device, cfg.dtype, model=cfg.model)
    log.info("device %s, dtype %s", device, dtype)
    return device, dtype


def _load(
    cfg: RunConfig, runtime: tuple[str, str], modality: str | None, adapter: str | None = None, device_map: str = ""
):
    from sea_align.models import load_adapter

    device, dtype = runtime
    return load_adapter(
        cfg.model, dtype=dtype, adapter_dir=adapter, modality=modality, device=device, device_map=device_map or None
    )


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False)


def _prepare(args: argparse.Namespace) -> int:
    from sea_align.sources.named import NAMED, materialise
    from sea_align.stages.answer_check import describe
    from sea_align.stages.prepare import answer_judge, answer_judge_arg, run_prepare

    cfg = stage_config(args)
    if not cfg.data:
        raise DataError("prepare: no text safety set (give --data FILE, or data: in --config)")
    data, pcfg = cfg.data, cfg.prepare
    if data in NAMED:  # `sea run` also drops rows overlapping its evaluation phrases; here there are none
        data = str(materialise(data, Path(args.out).with_suffix(".source.jsonl"))[0])
        pcfg = replace(pcfg, format="sea")
    res = run_prepare(data, args.out, pcfg, judge=answer_judge(cfg), judge_arg=answer_judge_arg(cfg))
    print(f"prepared {res.n} rows ({res.n_harmful} harmful, {res.n_benign} benign) -> {res.path}")
    for _, line in describe(res.checks):
        print(line)
    return 0


def _synthesize(args: argparse.Namespace) -> int:
    from sea_align.stages.records import read_prepared
    from sea_align.stages.synthesize import run_synthesize

    cfg = stage_config(args)
    refuse_overwrite(args.out, args.data)
    rt = _runtime(cfg)
    rows = read_prepared(args.data, cfg.modality)
    res = run_synthesize(
        _load(cfg, rt, cfg.modality),
        rows,
        args.out,
        cfg.modality,
        cfg.synthesize,
        model_name=cfg.model,
        progress=_progress(args),
    )
    print(
        f"{res.n} embeddings ({res.n_done_before} already done), {res.n_verified} verified, "
        f"{res.n_failed} failed -> {res.out_dir}"
    )
    return 0


def _align(args: argparse.Namespace) -> int:
    from sea_align.runtime.tracking import check as check_tracker
    from sea_align.stages.align import run_align
    from sea_align.stages.records import read_prepared

    cfg = stage_config(args)
    refuse_overwrite(args.out, args.data, args.embeddings)  # align replaces its --out folder whole
    check_tracker(cfg.align.report_to)
    rt = _runtime(cfg)
    rows = read_prepared(args.data)
    modality = None if cfg.align.text_only else embeddings_modality(args.embeddings)
    res = run_align(
        _load(cfg, rt, modality),
        rows,
        args.embeddings,
        args.out,
        cfg.align,
        progress=_progress(args),
        base_model=cfg.model,
    )
    print(
        f"aligned ({res.method}) on {res.n_train} samples {res.counts}; final loss {res.final_loss:.4f} "
        f"-> {res.out_dir}"
    )
    return 0


def embeddings_modality(emb_dir: str | None) -> str | None:
    """The modality an embeddings directory was made for (its meta.json), so the model loads in that form."""
    meta = Path(emb_dir) / "meta.json" if emb_dir else None
    if meta is None or not meta.is_file():
        return None  # run_align reports the missing directory
    try:
        return json.loads(meta.read_text()).get("modality")
    except (OSError, ValueError, AttributeError):
        raise DataError(f"{meta}: unreadable embeddings meta.json") from None


def _evaluate(args: argparse.Namespace) -> int:
    from sea_align.stages.evaluate import load_bench, media_modality, run_evaluate

    cfg = stage_config(args)
    ev = cfg.evaluate
    if not ev.bench:
        raise DataError("evaluate: no benchmark (give --bench FILE, or evaluate.bench in --config)")
    refuse_overwrite(args.out, *ev.bench, args.adapter)
    rt = _runtime(cfg)
    modality = args.modality or media_modality(r for b in ev.bench for r in load_bench(b, ev.limit))
    ad = _load(cfg, rt, modality, args.adapter, ev.device_map)
    info = {"model": cfg.model, "adapter": args.adapter, "device": rt[0], "dtype": rt[1], "modality": modality}
    res = run_evaluate(ad, ev.bench, args.out, ev, info=info, progress=_progress(args))
    s = res.summary
    print(
        f"n={s['n']} scored={s['n_scored']} unscored={s['n_unscored']} ASR={s['asr']} "
        f"over-refusal={s['refusal_rate_harmless']} -> {res.out_dir / 'summary.json'}"
    )
    return 0


def _attack(args: argparse.Namespace) -> int:
    from sea_align.stages.attack import attack_modality, attack_rows, check_attack, run_attack

    cfg = stage_config(args)
    refuse_overwrite(args.out, args.bench, args.adapter)
    modality = attack_modality(args.bench, attack_rows(args.bench, cfg.attack.limit, cfg.attack.per_category))
    check_attack(cfg.attack, modality)  # before the model loads
    rt = _runtime(cfg)
    ad = _load(cfg, rt, modality, args.adapter)
    res = run_attack(
        ad, args.bench, args.out, cfg.attack, cfg.model, args.adapter, args.label, rt[1], progress=_progress(args)
    )
    s = res.summary
    for p in s["per_eps"]:
        print(f"eps={p['eps']:g}: ASR={p['asr']} {p['ci95']} n={p['n']} unscored={p['n_unscored']}")
    print(
        f"{s['arm']}: budget to 50% ASR {s['budget_50']} (within: {s['budget_50_within']}; {s['eps_unit']}) -> "
        f"{res.out_dir / 'summary.json'}"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from sea_align.pipeline import run_pipeline

    if args.plan:
        from sea_align.plan import make_plan, render

        print(render(make_plan(stage_config(args))))
        return 0
    man = run_pipeline(stage_config(args), args.out, progress=_progress(args), command=command_line(args))
    print(json.dumps({k: v.get("seconds") for k, v in man["stages"].items()}))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sea_align.tools.export import base_of, run_export

    cfg = stage_config(args)
    given = "model" in config_flags(args) or args.config or any(o.startswith("model=") for o in args.overrides)
    model = cfg.model if given else base_of(args.adapter) or cfg.model  # default: the base the adapter names
    device, dtype = _runtime(cfg) if args.merge else ("cpu", "float32")  # only a merge loads the model
    out = run_export(
        model,
        args.adapter,
        args.out,
        merge=args.merge,
        device=device,
        dtype=dtype,
        command=command_line(args),
        force=args.force,
    )
    print(
        f"exported {'merged model' if args.merge else 'adapter'} of {model} -> {out} (model card: {out / 'README.md'})"
    )
    return 0


def _tradeoff(args: argparse.Namespace) -> int:
    from sea_align.report.tradeoff import run_tradeoff

    bad = [g for g in args.group if "=" not in g]
    if bad:
        raise DataError(f"--group {bad[0]}: expected RUN=NAME")
    out = run_tradeoff(args.runs, args.out, dict(g.split("=", 1) for g in args.group), args.attack)
    print(f"trade-off chart of {len(args.runs)} run(s) -> {out} (points: {out.with_suffix('.json')})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from sea_align.report import run_report

    print(run_report(args.dir))
    return 0


__all__ = ["add_cli", "embeddings_modality", "stage_config"]
