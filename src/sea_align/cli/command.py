"""The `sea` command: a thin layer over the stage functions (`run_<stage>`). It owns the console.

Building the parser imports no torch, so `sea --help` and `sea <stage> --help` answer at once: the
stage and tool parsers (cli/stages.py, cli/tools.py) are import-light, and so is every plugin's
`add_cli(subparsers)`, found through the "sea_align.commands" entry points (e.g. `sea organism`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import EntryPoint, entry_points

from sea_align import __version__
from sea_align.cli import stages, tools
from sea_align.cli.args import Parser, add_logging, finish

log = logging.getLogger(__name__)
PLUGIN_GROUP = "sea_align.commands"  # entry point name = command, value = its add_cli(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """The whole `sea` parser: the stage and tool commands, then each installed plugin's."""
    ap = Parser(prog="sea", description="SEA: multimodal safety alignment from text-only data")
    ap.add_argument("--version", action="version", version=f"sea-align {__version__}")
    add_logging(ap, top=True)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    stages.add_cli(sub)
    tools.add_cli(sub)
    seen = set()
    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.name not in seen:  # the same package found twice on the path registers once
            seen.add(ep.name)
            _add_plugin(ep, sub)
    finish(ap)
    return ap


def _add_plugin(ep: EntryPoint, sub: argparse._SubParsersAction) -> None:
    """The plugin's add_cli(sub); one whose own module (or its package) is not installed is skipped with a
    warning; any other import error, e.g. a dependency the plugin lacks, is raised."""
    try:
        add_cli = ep.load()
    except ModuleNotFoundError as e:
        if not e.name or not (ep.module == e.name or ep.module.startswith(e.name + ".")):
            raise
        log.warning("command %r not available: its module %s is not installed", ep.name, ep.module)
        return
    add_cli(sub)


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
    args = parse(build_parser(), argv)
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
