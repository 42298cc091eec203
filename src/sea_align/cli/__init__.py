"""The `sea` command: a thin layer over the stage functions (`run_<stage>`). It owns the console.

Building the parser imports no torch, so `sea --help` and `sea <stage> --help` answer at once:
the stage and bench parsers are import-light (cli_stages.py, cli_bench.py), and the plugins whose
modules import torch at the top (the built-in models' recipes) are imported only when their command is
the one being run; otherwise their command is listed by name and help only."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from sea_align import __version__
from sea_align.cli.args import Parser, add_logging, command_of, finish

# Import-light modules with add_cli(subparsers): imported for every command.
PLUGINS = ["sea_align.cli.stages", "sea_align.cli.bench"]
# Heavy plugins (torch at import): command -> (modules, help), imported only when the command runs.
LAZY_PLUGINS = {
    "organism": (["sea_align.organism.recipe", "sea_align.organism.audio_recipe"],
                 "built-in small multimodal models: rebuild one by its recipe (sea organism build --help)"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole `sea` parser. With `argv`, only the heavy plugin that argv's command needs is imported;
    without it (library use, tests) every plugin is."""
    ap = Parser(prog="sea", description="SEA: multimodal safety alignment from text-only data")
    ap.add_argument("--version", action="version", version=f"sea-align {__version__}")
    add_logging(ap, top=True)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name in PLUGINS:
        importlib.import_module(name).add_cli(sub)
    wanted = None if argv is None else command_of(list(argv))
    for cmd, (modules, text) in LAZY_PLUGINS.items():
        if argv is None or cmd == wanted:
            _import_plugins(modules, sub)
        else:
            sub.add_parser(cmd, help=text)
    finish(ap)
    return ap


def _import_plugins(modules: list[str], sub: argparse._SubParsersAction) -> None:
    """Each module's add_cli(sub); a plugin whose own module is not installed is skipped."""
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        mod.add_cli(sub)


def parse(ap: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, except that `key=value` overrides may also come between or after the options
    (argparse alone takes one run of positionals: `sea run a=1 --out D b=2` would reject b=2)."""
    args, extra = ap.parse_known_args(argv)
    stray = [w for w in extra if w.startswith("-") or "=" not in w]
    if stray or (extra and not isinstance(getattr(args, "overrides", None), list)):
        ap.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides += extra
    return args


def _user_error(e: BaseException) -> bool:
    """Bad input or an unusable model: printed as one line. ModelError is looked up only if the model
    code was imported (it can only have been raised then), so this check imports no torch."""
    from sea_align.runtime.io import DataError
    base = sys.modules.get("sea_align.models.base")
    return isinstance(e, DataError) or (base is not None and isinstance(e, base.ModelError))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(build_parser(argv), argv)
    args.argv = argv  # for the manifests and model cards that record the command
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("sea: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not _user_error(e):
            raise
        print(f"sea: error: {e}", file=sys.stderr)
        return 2


