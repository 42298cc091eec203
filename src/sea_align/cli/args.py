"""Argument-parsing helpers shared by the `sea` sub-commands. Import-light on purpose: building the
parser and printing `--help` must not import torch or transformers (tests/test_cli.py checks it).

- `Parser`: an ArgumentParser whose errors are one line (`sea: error: ...`), exit code 2.
- `HelpFormatter`: shows every option's default.
- `config_option`: an option that sets a config key (`synthesize.max_steps`); its shown default is the
  config's, and the value, when given, wins over `--config` and `key=value` overrides (`config_flags`).
- `device_spec`, `judge_name`: validate names at parse time, before any model loads.
"""
from __future__ import annotations

import argparse
from typing import Any, NoReturn

CFG = "cfg:"  # dest prefix of the options that set a config key
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class Parser(argparse.ArgumentParser):
    """One-line parse errors, in the style of the CLI's other errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sea: error: {message} (see '{self.prog} --help')\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends '(default: X)' unless the help already says it or there is nothing to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        empty = action.default is None or action.default is argparse.SUPPRESS or action.default in ("", [])
        if "default" in text or action.required or action.nargs == 0 or empty:
            return text
        return super()._get_help_string(action)


def device_spec(text: str) -> str:
    """argparse type of --device: the form only (auto|cpu|cuda|cuda:N|mps); availability is checked at run time."""
    from sea_align.runtime.device import DeviceError, check_spec
    try:
        return check_spec(text)
    except DeviceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def judge_name(text: str) -> str:
    """argparse type of --judge: a registered judge (judges.py imports no torch)."""
    from sea_align.judges import JUDGES
    if text not in JUDGES:
        raise argparse.ArgumentTypeError(f"unknown judge '{text}' (known: {', '.join(sorted(JUDGES))})")
    return text


def config_default(key: str) -> Any:
    """The default of a dotted config key in `RunConfig` (e.g. 'synthesize.lr')."""
    from sea_align.config import RunConfig
    node: Any = RunConfig()
    for part in key.split("."):
        node = getattr(node, part)
    return node


def config_option(p: argparse.ArgumentParser, flag: str, key: str, help: str, shown: str | None = None,
                  **kw: Any) -> None:
    """`flag` sets config key `key`; the help shows the config's default (or `shown`) and the key."""
    default = config_default(key)
    if "action" not in kw and "type" not in kw and isinstance(default, (int, float)) and not isinstance(default, bool):
        kw["type"] = type(default)
    show = shown if shown is not None else (default if default != "" else '""')
    if "action" not in kw and "choices" not in kw:
        kw.setdefault("metavar", flag.lstrip("-").upper().replace("-", "_"))
    p.add_argument(flag, dest=CFG + key, default=None, help=f"{help} (default: {show}; config key {key})", **kw)


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """{config key: value} of the config options given on the command line."""
    return {k[len(CFG):]: v for k, v in vars(args).items() if k.startswith(CFG) and v is not None}


def add_config_source(p: argparse.ArgumentParser, required: bool = False) -> None:
    """--config FILE|preset and trailing key=value overrides, as `sea run` takes them."""
    p.add_argument("--config", required=required, default=None,
                   help="YAML file or preset name (tiny, default, video, ...)" +
                   ("" if required else " (default: none, the built-in defaults)"))
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. synthesize.max_steps=20 (options given as flags win)")


def add_runtime(p: argparse.ArgumentParser) -> None:
    """--device and --dtype (config keys `device`, `dtype`)."""
    config_option(p, "--device", "device", "where the model runs: auto (the GPU when there is one: cuda, "
                  "then mps, else cpu), cpu, cuda, cuda:N or mps", type=device_spec, metavar="DEVICE")
    config_option(p, "--dtype", "dtype", "weights' dtype; auto = bfloat16 on a CUDA card with native bf16, "
                  "else float32", choices=["auto", "float32", "bfloat16", "float16"])


def add_logging(p: argparse.ArgumentParser, top: bool) -> None:
    """-v / --log-level on every parser; below the top one they default to SUPPRESS, so that the
    sub-command does not reset a level given before it (`sea -v evaluate` and `sea evaluate -v` both work)."""
    default = "WARNING" if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="INFO", default=default,
                   help="log progress (same as --log-level INFO)")
    p.add_argument("--log-level", dest="log_level", type=str.upper, choices=LOG_LEVELS, default=default,
                   help="logging level (default: WARNING)")


def finish(p: argparse.ArgumentParser, top: bool = True) -> None:
    """Walk the parser tree: defaults in every help, each sub-command's help as its description,
    logging options everywhere."""
    p.formatter_class = HelpFormatter
    if not top:
        add_logging(p, top=False)
    for act in p._actions:  # argparse keeps sub-parsers here; there is no public accessor
        if isinstance(act, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in act._choices_actions}
            for name, sp in act.choices.items():
                if sp.description is None:
                    sp.description = helps.get(name)
                finish(sp, top=False)


def command_of(argv: list[str]) -> str | None:
    """The sub-command named in `argv`: the first word that is neither an option nor --log-level's value."""
    words = iter(argv)
    for w in words:
        if w == "--log-level":
            next(words, None)
        elif not w.startswith("-"):
            return w
    return None
