"""docs/config.md, generated from the config dataclasses: `python -m sea_align.cli.docs > docs/config.md`.

tests/test_config_io.py fails when the committed file differs from `render()`."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, get_type_hints

from sea_align.cli.args import flag_of, show, takes
from sea_align.cli.stages import OPTIONS
from sea_align.config import BenchSpec, Key, RunConfig, config_keys

HEADER = """# Configuration reference

<!-- Generated from src/sea_align/config.py by `python -m sea_align.cli.docs > docs/config.md`: do not edit
by hand (tests/test_config_io.py fails when this file and the dataclasses differ). -->

A run's settings are one YAML tree: `sea run --config FILE|preset` (presets in `src/sea_align/configs/`).
Every stage command reads the same tree, in this order (later wins): the defaults below, `--config`,
`key=value` overrides anywhere on the command line (`synthesize.max_steps=20`, `evaluate.bench=[a.jsonl]`),
then the command's own options (column "option"; `sea <command> --help` shows them with the same text).
An unknown key is an error that names it; entries with a fixed set of values, and numbers with a range,
are checked when the config loads, before any model does (one line naming the key, exit 2).
`${SEA_PKG}` and `${SEA_SHARED}` in paths are the installed package and the shared data folder.
A preset or YAML file may start from another with `base: NAME` (a preset, or a file beside it): sections
merge key by key, values and lists are replaced, so a file holds only what differs (`image-full.yaml`).
"""


def _type(t: Any) -> str:
    return t.__name__ if isinstance(t, type) else str(t).replace("sea_align.config.", "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _option(key: Key) -> str:
    """The command-line option that sets `key`, and the commands that take it."""
    cmds = [c for c, keys in OPTIONS.items() if takes(keys, key)]
    if not cmds:
        return ""
    flag = flag_of(key).replace("--", "--[no-]") if key.type is bool else flag_of(key)
    return f"`{flag}` ({', '.join(cmds)})"


def _table(keys: list[Key]) -> list[str]:
    out = ["| key | type | default | option | meaning |", "|---|---|---|---|---|"]
    for k in keys:
        choices = ", ".join(f"`{show(c)}`" for c in k.choices() or [])
        meaning = k.help + (f" (one of {choices})" if choices else "") + (f" (range: {k.range})" if k.range else "")
        out.append(f"| `{k.name}` | {_type(k.type)} | `{_cell(show(k.default))}` | {_option(k)} | {_cell(meaning)} |")
    return out


def render() -> str:
    """The whole of docs/config.md."""
    keys = list(config_keys())
    lines = [HEADER, "## Top level", "", (RunConfig.__doc__ or "").strip(), ""]
    lines += _table([k for k in keys if "." not in k.name])
    hints = get_type_hints(RunConfig)
    for f in fields(RunConfig):
        if is_dataclass(hints[f.name]):
            lines += ["", f"## `{f.name}`: {f.metadata['help']}", "", (hints[f.name].__doc__ or "").strip(), ""]
            lines += _table([k for k in keys if k.name.startswith(f.name + ".")])
    lines += ["", "## `evaluate.build` items", "", (BenchSpec.__doc__ or "").strip(), ""]
    lines += _table(list(config_keys(BenchSpec, "evaluate.build[].")))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
