"""`sea organism build NAME ...` (rebuild a built-in model by its recipe) and `sea organism measure NAME ...`.

Registered through the entry point "sea_align.commands" (`add_cli`). Import-light: building the parser
reads the recipes' config dataclasses (`config.py`) only; a command imports its recipe or measurement
(torch, transformers) when it runs. `python -m sea_align.organism build|measure ...` (`__main__.py`)
uses this parser too (`main`)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from sea_align.organism.config import CONFIGS, RECIPE_MODULES, STAGE_ORDER

log = logging.getLogger(__name__)
NOT_OPTIONS = ("name", "weights_dir", "llm_dir")  # NAME, --out-dir and the LLM cache set these


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `organism` to the main CLI's sub-commands."""
    p = subparsers.add_parser(
        "organism",
        help="built-in small multimodal models: rebuild one by its recipe (sea organism build --help), measure it",
    )
    add_commands(p)
    return p


def add_commands(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="organism_cmd", required=True, metavar="COMMAND")
    _add_build(sub.add_parser("build", help="rebuild a built-in model by its recipe (resumable)"))
    _add_measure(
        sub.add_parser(
            "measure",
            help="measure a built-in model: reading, text and media attack success, benign answers (docs/organism.md)",
        )
    )


def _add_name(p: argparse.ArgumentParser, verb: str) -> None:
    """The positional NAME: the built-in model to `verb`."""
    p.add_argument(
        "name",
        nargs="?",
        default="sea-tiny-vl",
        choices=sorted(CONFIGS),
        help=f"the model to {verb} (default: sea-tiny-vl)",
    )


def _add_build(b: argparse.ArgumentParser) -> None:
    _add_name(b, "rebuild")
    stages = "; ".join(f"{n}: {', '.join(s)}" for n, s in STAGE_ORDER.items())
    b.add_argument(
        "--stage",
        action="append",
        choices=sorted({s for v in STAGE_ORDER.values() for s in v}),
        metavar="STAGE",
        help=f"run only these stages (repeatable; default: all). {stages}",
    )
    b.add_argument("--out-dir", type=Path, help="where the trained parts go (default: the package's weights/NAME)")
    b.add_argument("--no-resume", action="store_true", help="ignore finished stages and checkpoints")
    for name, (typ, defaults) in recipe_options().items():
        b.add_argument(
            "--" + name.replace("_", "-"),
            type=typ,
            default=None,
            metavar="BOOL" if typ is _bool else typ.__name__.upper(),
            help="default: " + ", ".join(f"{k} {v}" for k, v in defaults.items()),
        )
    b.set_defaults(func=_build)


def recipe_options() -> dict[str, tuple[Callable[[str], Any], dict[str, Any]]]:
    """Every recipe config field as an option: {field: (argparse type, {model: its default})}."""
    out: dict[str, tuple[Callable[[str], Any], dict[str, Any]]] = {}
    for model, cls in CONFIGS.items():
        for f in fields(cls):
            if f.name in NOT_OPTIONS or f.default is MISSING:
                continue
            typ = Path if isinstance(f.default, Path) else _bool if isinstance(f.default, bool) else type(f.default)
            out.setdefault(f.name, (typ, {}))[1][model] = f.default
    return out


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _build(args: argparse.Namespace) -> int:
    from sea_align.runtime.io import DataError

    own = {f.name for f in fields(CONFIGS[args.name])}
    given = {k: getattr(args, k) for k in recipe_options() if getattr(args, k, None) is not None}
    if sorted(set(given) - own):
        log.warning("options not used by the %s recipe: %s", args.name, ", ".join(sorted(set(given) - own)))
    wrong = [s for s in args.stage or [] if s not in STAGE_ORDER[args.name]]
    if wrong:
        raise DataError(f"{args.name} has no stage {', '.join(wrong)} (stages: {', '.join(STAGE_ORDER[args.name])})")
    recipe = importlib.import_module(RECIPE_MODULES[args.name])
    res = recipe.build(
        args.name, args.out_dir, args.stage, not args.no_resume, **{k: v for k, v in given.items() if k in own}
    )
    print(json.dumps(res, indent=1))
    return 0


def _add_measure(m: argparse.ArgumentParser) -> None:
    _add_name(m, "measure")
    m.add_argument(
        "--name", "--model", dest="name_opt", choices=sorted(CONFIGS), help="the same as NAME (default: NAME)"
    )
    m.add_argument("--out", type=Path, help="output folder (default: runs/organism/measure, or measure-audio)")
    m.add_argument("--weights-dir", type=Path, help="trained parts to use (default: the committed ones)")
    m.add_argument("--per-scenario", type=int, default=12, help="VA-SafetyBench items per scenario")
    m.add_argument("--n-read", type=int, help="held-out reading phrases (default: 60 image, 100 audio)")
    m.add_argument("--threads", type=int, help="torch CPU threads (default: 2 image, 1 audio)")
    m.add_argument("--modality", choices=["image", "video"], default="image", help="sea-tiny-vl's form")
    m.add_argument(
        "--text-only",
        action="store_true",
        help="sea-tiny-vl: typed requests only (checks stage (a) alone, e.g. --weights-dir holding just lora_text)",
    )
    m.add_argument(
        "--va-dir",
        type=Path,
        help="VA-SafetyBench folder (default: data/va-safetybench in the shared folder, $SEA_SHARED)",
    )
    m.set_defaults(func=_measure)


def _measure(args: argparse.Namespace) -> int:
    import torch

    name = args.name_opt or args.name
    audio = name.endswith("-audio")
    torch.set_num_threads(args.threads or (1 if audio else 2))
    out = args.out or Path("runs/organism/measure-audio" if audio else "runs/organism/measure")
    if audio:
        from sea_align.organism import audio_measure

        adapter, info = audio_measure.load(name, args.weights_dir)
        res = audio_measure.run_measure(
            adapter, out, args.per_scenario, args.n_read or 100, va_path=args.va_dir, info=info
        )
    else:
        from sea_align.organism import measure
        from sea_align.organism.builtin import load_builtin

        bm = load_builtin(name, modality=args.modality, weights_dir=args.weights_dir)
        if args.text_only:
            res = measure.run_measure_text(bm, out, args.per_scenario, va_path=args.va_dir)
        else:
            fn = measure.run_measure_video if args.modality == "video" else measure.run_measure
            res = fn(bm, out, args.per_scenario, args.n_read or 60, va_path=args.va_dir)
    print(json.dumps(res, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`sea organism` without the main CLI (`python -m sea_align.organism`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(prog="sea organism")
    add_commands(ap)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args)
