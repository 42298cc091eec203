"""Argument-parsing helpers shared by the `sea` sub-commands. Import-light on purpose: building the
parser and printing `--help` must not import torch or transformers (tests/test_cli.py checks it).

- `Parser`: an ArgumentParser whose errors are one line (`sea: error: ...`), exit code 2.
- `HelpFormatter`: shows every option's default.
- `config_options`: the options of a command, generated from the config dataclasses (config.py): one per
  entry (`synthesize.max_steps` -> --max-steps) with the field's help, type, choices and default; a value
  given wins over `--config` and `key=value` overrides (`config_flags`).
- `device_spec`, `judge_name`: validate names at parse time, before any model loads.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from sea_align.config import Key, config_keys

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


def show(value: Any) -> str:
    """A default as the help and docs/config.md show it: YAML-like (true, "", [a, b])."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return '""' if value == "" else str(value)


def floats(text: str) -> list[float]:
    """argparse type of a list of numbers: 'a,b,c' ('' = the empty list)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


# Config keys whose form a function checks as the arguments are parsed (a registry, not a fixed list).
CHECKS = {"device": (device_spec, "DEVICE"), "evaluate.judge": (judge_name, "NAME")}


def option_kind(key: Key) -> dict[str, Any] | None:
    """add_argument's type/action/choices/metavar for a config entry; None: not on a command line."""
    metavar = key.name.rsplit(".", 1)[-1].upper()
    if key.name in CHECKS:
        return {"type": CHECKS[key.name][0], "metavar": CHECKS[key.name][1]}
    if key.type is bool:
        return {"action": argparse.BooleanOptionalAction}
    if key.type in (int, float):
        return {"type": key.type, "metavar": metavar}
    if key.type == list[str]:
        return {"action": "append", "metavar": metavar}
    if key.type == list[float]:
        return {"type": floats, "metavar": "A,B,..."}
    if key.type is not str:
        return None  # e.g. evaluate.build: a list of sections, YAML only
    choices = key.choices()
    if choices is None:
        return {"metavar": metavar}
    return {"choices": choices, **({"metavar": metavar} if len(choices) > 4 or "" in choices else {})}


def flag_of(key: Key) -> str:
    """The option of a config entry: its field name, dashed (`synthesize.max_steps` -> --max-steps)."""
    return "--" + key.name.rsplit(".", 1)[-1].replace("_", "-")


def takes(keys: Sequence[str], key: Key) -> bool:
    """Whether a command whose config options are `keys` (entries or whole sections) has one for `key`."""
    return (key.name in keys or key.name.rsplit(".", 1)[0] in keys) and option_kind(key) is not None


def config_options(p: argparse.ArgumentParser, keys: Sequence[str], shown: dict[str, str] | None = None) -> None:
    """An option for each config entry in `keys` (a section name: each of its entries a command line can hold),
    named after the field (`synthesize.max_steps` -> --max-steps), with the field's help, type, choices and
    default; `shown` replaces a shown default (a command whose default is not the config's)."""
    for key in config_keys():
        if takes(keys, key):
            config_option(p, key, option_kind(key), (shown or {}).get(key.name))


def config_option(p: argparse.ArgumentParser, key: Key, kw: dict[str, Any], shown: str | None = None) -> None:
    """`--<field>` sets config entry `key`; its help is the field's, with the default, choices and key."""
    choices = [c or "''" for c in key.choices() or []]
    more = f"; one of {', '.join(choices)}" if "metavar" in kw and choices else ""
    more += "; repeatable" if kw.get("action") == "append" else ""
    more += f"; {key.range}" if key.range else ""
    text = f"{key.help} (default: {shown or show(key.default)}{more}; config key {key.name})"
    p.add_argument(flag_of(key), dest=CFG + key.name, default=None, help=text.replace("%", "%%"), **kw)


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """{config key: value} of the config options given on the command line."""
    return {k[len(CFG) :]: v for k, v in vars(args).items() if k.startswith(CFG) and v is not None}


def add_config_source(p: argparse.ArgumentParser, required: bool = False) -> None:
    """--config FILE|preset and trailing key=value overrides, as `sea run` takes them."""
    p.add_argument(
        "--config",
        required=required,
        default=None,
        help="YAML file or preset name (tiny, default, video, ...)"
        + ("" if required else " (default: none, the built-in defaults)"),
    )
    p.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. synthesize.max_steps=20 (options given as flags win)",
    )


def add_runtime(p: argparse.ArgumentParser) -> None:
    """--device and --dtype (config keys `device`, `dtype`)."""
    config_options(p, ("device", "dtype"))


def add_logging(p: argparse.ArgumentParser, top: bool) -> None:
    """-v / --log-level on every parser; below the top one they default to SUPPRESS, so that the
    sub-command does not reset a level given before it (`sea -v evaluate` and `sea evaluate -v` both work)."""
    default = "WARNING" if top else argparse.SUPPRESS
    p.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const="INFO",
        default=default,
        help="log progress (same as --log-level INFO)",
    )
    p.add_argument(
        "--log-level",
        dest="log_level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        help="logging level (default: WARNING)",
    )


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
