"""The machinery under the typed configs of config.py, generic over dataclasses: declaring a field
(`opt`), walking the settable entries (`Key`, `walk_keys`), reading a mapping into a dataclass with each
value checked and coerced to its field's type (`from_dict`), and checking declared choices and ranges."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints

from sea_align.runtime.io import DataError

Choices = Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class Range:
    """The values a number may take: `lo` <= (or <, `lo_open`) x <= (or <, `hi_open`) `hi`; None = unbounded.
    A list of numbers has the range for each of its items."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)

    def __str__(self) -> str:
        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else str(v)

        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        return f"{'<' if self.hi_open else '<='} {num(self.hi)}" if self.hi is not None else "any number"


def opt(
    default: Any,
    help: str,
    choices: Choices | None = None,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    brief: str = "",
) -> Any:
    """A config field: its default (a list is copied per instance, a dataclass type is a section), its help
    (docs/config.md; `--help` shows `brief`, a few words, when the help is longer), where the values are fixed
    its choices (a callable: a registry), and for a number its range (`ge`/`gt` below, `le`/`lt` above),
    checked when a config loads."""
    meta: dict[str, Any] = {"help": help, **({"choices": choices} if choices is not None else {})}
    if brief:
        meta["brief"] = brief
    if (ge, gt, le, lt) != (None,) * 4:
        meta["range"] = Range(gt if ge is None else ge, lt if le is None else le, gt is not None, lt is not None)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    if isinstance(default, type):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Key:
    """One settable config entry: its dotted name (`synthesize.lr`), dataclass field and resolved type."""

    name: str
    field: dataclasses.Field
    type: Any

    @property
    def help(self) -> str:
        return self.field.metadata.get("help", "")

    @property
    def brief(self) -> str:
        """The few words `--help` shows (the help itself when it declares none)."""
        return self.field.metadata.get("brief") or self.help

    @property
    def default(self) -> Any:
        f = self.field
        return f.default_factory() if f.default is dataclasses.MISSING else f.default

    @property
    def range(self) -> Range | None:
        """The declared range of a number (or of each number of a list); None: not a bounded number."""
        return self.field.metadata.get("range")

    def choices(self) -> list[str] | None:
        """The allowed values (a registry's looked up now); None: any value of the type."""
        c = self.field.metadata.get("choices")
        return None if c is None else list(c() if callable(c) else c)


def walk_keys(cls: type, prefix: str = "") -> Iterator[Key]:
    """Every leaf entry of `cls`, sections walked, in declaration order (`evaluate.build` is one entry)."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            yield from walk_keys(hints[f.name], prefix + f.name + ".")
        else:
            yield Key(prefix + f.name, f, hints[f.name])


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = getattr(typ, "__origin__", None)
    if is_dataclass(typ):
        if not isinstance(value, dict):
            raise DataError(f"config: '{key}' must be a mapping")
        return from_dict(typ, value, prefix=key + ".")
    if origin is list and typ.__args__ and is_dataclass(typ.__args__[0]):
        if not isinstance(value, list):
            raise DataError(f"config: '{key}' must be a list")
        return [_coerce(v, typ.__args__[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise DataError(f"config: '{key}' must be a list")
        elem = typ.__args__[0] if typ.__args__ else str
        if elem in (int, float):
            return [_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
        return [str(v) for v in value]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise DataError(f"config: '{key}' must be true or false, got {_short(value)}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DataError(f"config: '{key}' must be an integer, got {_short(value)}")
        try:
            return int(value)
        except ValueError:
            raise DataError(f"config: '{key}' must be an integer, got {_short(value)}") from None
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise DataError(f"config: '{key}' must be a number, got {_short(value)}")
        try:
            out = float(value)
        except (ValueError, OverflowError):
            raise DataError(f"config: '{key}' must be a number, got {_short(value)}") from None
        if not math.isfinite(out):
            raise DataError(f"config: '{key}' must be a finite number, got {_short(value)}")
        return out
    if typ is str:
        if isinstance(value, (dict, list)):
            raise DataError(f"config: '{key}' must be a string")
        return "" if value is None else str(value)
    return value


def printable(text: str, limit: int = 60) -> str:
    """User text shown in an error: control characters escaped (the message stays one line), bounded."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any) -> str:
    """A one-line, bounded repr for error messages."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """`cls` built from `data`, each value coerced to its field's type; an unknown key or an unusable
    value is a DataError naming the dotted key (`prefix` + key)."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            shown = printable(key) if isinstance(key, (str, int, float, bool)) or key is None else type(key).__name__
            raise DataError(f"config: unknown key '{prefix}{shown}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for k, v in data.items():
        try:
            kwargs[k] = _coerce(v, hints[k], prefix + k)
        except (ValueError, OverflowError, TypeError, RecursionError) as e:  # not already a DataError
            if isinstance(e, DataError):
                raise
            raise DataError(f"config: '{prefix}{k}' has an unusable value ({type(e).__name__})") from None
    return cls(**kwargs)


def check_choices(node: Any, prefix: str = "") -> None:
    """Every field declared with choices holds one of them, and every number with a range lies in it
    (sections and `evaluate.build` items walked)."""
    for f in fields(node):
        value, key = getattr(node, f.name), prefix + f.name
        if is_dataclass(value):
            check_choices(value, key + ".")
        elif isinstance(value, list) and any(is_dataclass(item) for item in value):
            for i, item in enumerate(value):
                check_choices(item, f"{key}[{i}].")
        elif "choices" in f.metadata:
            choices = Key(key, f, str).choices() or []
            for i, x in enumerate(value if isinstance(value, list) else [value]):  # a list: each item
                if x not in choices:
                    where = f"{key}[{i}]" if isinstance(value, list) else key
                    raise DataError(f"config: '{where}' must be {_one_of(choices)}, got {printable(x)!r}")
        elif "range" in f.metadata:
            _check_range(key, value, f.metadata["range"])


def _check_range(key: str, value: Any, rng: Range) -> None:
    for i, x in enumerate(value if isinstance(value, list) else [value]):
        if isinstance(x, (int, float)) and not rng.holds(x):
            where = f"{key}[{i}]" if isinstance(value, list) else key
            raise DataError(f"config: '{where}' must be {rng}, got {_short(x)}")


def _one_of(choices: list[str]) -> str:
    """'a, b or c' ('' shown as ''); 'one of a, b, ...' for a long list."""
    shown = [c or "''" for c in choices]
    if len(shown) > 4:
        return "one of " + ", ".join(shown)
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
