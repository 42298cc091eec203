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
    """Appends '(default: X)' unless the help already says it or there is nothing to show; the help column
    starts late enough that an option and its few words share a line."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, width)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, argparse.BooleanOptionalAction):  # --[no-]name, not "--name, --no-name"
            return "--[no-]" + action.option_strings[0][2:]
        return super()._format_action_invocation(action)

    def _format_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None) -> str:
        """A stage command's usage: its required options, then [options] [KEY=VALUE ...]."""
        if usage is None and any(a.dest.startswith(CFG) for a in actions):
            must = [a for a in actions if a.required and a.option_strings]
            args = " ".join(f"{a.option_strings[0]} {a.metavar or a.dest.upper()}" for a in must)
            usage = f"{self._prog} {args} [options] [KEY=VALUE ...]".replace("  ", " ")
        return super()._format_usage(usage, actions, groups, prefix)

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
CHECKS = {
    "device": (device_spec, "DEVICE"),
    "evaluate.judge": (judge_name, "NAME"),
    "attack.judge": (judge_name, "NAME"),
}


def option_kind(key: Key) -> dict[str, Any] | None:
    """add_argument's type/action/choices/metavar for a config entry; None: not on a command line."""
    metavar = {int: "N", float: "X"}.get(key.type, "TEXT")
    if key.name in CHECKS:
        return {"type": CHECKS[key.name][0], "metavar": CHECKS[key.name][1]}
    if key.type is bool:
        return {"action": argparse.BooleanOptionalAction}
    if key.type in (int, float):
        return {"type": key.type, "metavar": metavar}
    if key.type == list[str]:
        return {"action": "append", "metavar": "NAME"}
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


EXPERIMENTAL = "experimental"  # the sub-section of a stage's research knobs (`align.experimental.*`)


def takes(keys: Sequence[str], key: Key) -> bool:
    """Whether a command whose config options are `keys` (entries or whole sections) has one for `key`."""
    return (key.name in keys or key.name.rsplit(".", 1)[0] in keys) and option_kind(key) is not None


def experimental_keys(keys: Sequence[str]) -> list[Key]:
    """The research knobs of the sections in `keys` (`S.experimental.*` for each section S)."""
    return [k for k in config_keys() if takes([f"{s}.{EXPERIMENTAL}" for s in keys], k)]


def config_options(p: argparse.ArgumentParser, keys: Sequence[str], shown: dict[str, str] | None = None) -> None:
    """An option for each config entry in `keys` (a section name: each of its entries a command line can hold),
    named after the field (`synthesize.max_steps` -> --max-steps), with the field's brief help, type, choices
    and default; `shown` replaces a shown default (a command whose default is not the config's). A section's
    research knobs (`experimental`) are options too, shown only by `--help-experimental`."""
    for key in config_keys():
        if takes(keys, key):
            config_option(p, key, option_kind(key), (shown or {}).get(key.name))
    knobs = experimental_keys(keys)
    for key in knobs:
        config_option(p, key, option_kind(key), hidden=True)
    if knobs:
        p.add_argument(
            "--help-experimental",
            action=_ShowExperimental,
            knobs=knobs,
            help="list the research knobs and exit",
        )


def config_option(
    p: argparse.ArgumentParser, key: Key, kw: dict[str, Any], shown: str | None = None, hidden: bool = False
) -> None:
    """`--<field>` sets config entry `key`; its help is the field's brief, with the default and choices."""
    text = f"{key.brief} (default: {shown or show(key.default)}{_more(key, kw)})".replace("%", "%%")
    p.add_argument(flag_of(key), dest=CFG + key.name, default=None, help=argparse.SUPPRESS if hidden else text, **kw)


def _more(key: Key, kw: dict[str, Any]) -> str:
    choices = [c or "''" for c in key.choices() or []]
    more = f"; one of {', '.join(choices)}" if "metavar" in kw and choices else ""
    return more + ("; repeatable" if kw.get("action") == "append" else "")


class _ShowExperimental(argparse.Action):
    """`--help-experimental`: each research knob of the command, its option, config key, default, range and
    full help; then exit."""

    def __init__(self, option_strings: list[str], dest: str, knobs: list[Key], help: str | None = None):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)
        self.knobs = knobs

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import textwrap

        lines = [
            f"{parser.prog}: research knobs. Each was measured and is adopted by no preset unless the preset sets",
            "it; what each one did is in docs/experimental.md. Set one as an option, as KEY=VALUE or in YAML.",
            "",
        ]
        for k in self.knobs:
            kw = option_kind(k) or {}
            rng = f"; {k.range}" if k.range else ""
            lines.append(f"  {flag_of(k)}  (config key {k.name}; default: {show(k.default)}{_more(k, kw)}{rng})")
            lines += textwrap.wrap(k.help, 100, initial_indent="      ", subsequent_indent="      ")
        print("\n".join(lines))  # to stdout, as --help
        parser.exit(0)


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """{config key: value} of the config options given on the command line."""
    return {k[len(CFG) :]: v for k, v in vars(args).items() if k.startswith(CFG) and v is not None}


def add_config_source(p: argparse.ArgumentParser, required: bool = False) -> None:
    """--config FILE|preset and trailing key=value overrides, as `sea run` takes them."""
    p.add_argument(
        "--config",
        required=required,
        default=None,
        help="YAML file or preset (tiny, default, ...)" + ("" if required else " (default: none)"),
    )
    p.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. align.epochs=2",
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
