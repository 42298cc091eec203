"""What README.md and docs/*.md name exists: every module file and module attribute (`stages/prepare.py`,
`prepare.rules_extract`), every config key (`synthesize.stop_loss`), and every option and `key=value` override
of every `sea ...` command they show."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from sea_align.cli.command import build_parser
from sea_align.config import config_keys
from sea_align.config_load import RETIRED

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "sea_align"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SECTIONS = {"prepare", "distill", "synthesize", "align", "evaluate"}
KEYS = {k.name for k in config_keys()} | set(RETIRED)  # a retired key is named as retired (experimental.md)
EXTENSIONS = {"py", "json", "jsonl", "yaml", "md", "txt", "png", "html", "csv", "safetensors", "wav", "mp4", "sh"}
SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)


def _spans(text: str) -> list[str]:
    """Inline code spans and the lines of fenced blocks."""
    blocks = FENCE.findall(text)
    inline = SPAN.findall(FENCE.sub("", text))
    return inline + [line for b in blocks for line in b.splitlines()]


def _modules() -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in PKG.rglob("*.py"):
        out.setdefault(p.stem, []).append(p)
    return out


MODULES = _modules()


def _defines(files: list[Path], name: str) -> bool:
    pat = re.compile(rf"^\s*(?:def|class)\s+{re.escape(name)}\b|^\s*{re.escape(name)}\s*[:=]", re.M)
    return any(pat.search(p.read_text(encoding="utf-8")) for p in files)


def _py_path_exists(ref: str) -> bool:
    ref = ref.split(":")[0]
    return any((base / ref).is_file() for base in (ROOT, PKG, PKG.parent)) or any(
        str(p).endswith("/" + ref) for p in PKG.rglob("*.py")
    )


def _dotted_problem(ref: str) -> str | None:
    """What is wrong with a dotted name, or None: a config key, a module's attribute, or neither."""
    if ref in KEYS or any(k.startswith(ref + ".") for k in KEYS):
        return None
    head, _, attr = ref.partition(".")
    if head not in SECTIONS and _stdlib(ref):
        return None  # `http.server`
    if head not in MODULES and head not in SECTIONS:
        return _foreign_problem(ref)
    if head in SECTIONS and not re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", attr or "-"):
        return None  # e.g. a file name that starts like a section: not a key
    if head in MODULES and "." not in attr and attr:
        return None if _defines(MODULES[head], attr) else f"module {head} has no {attr}"
    if head in SECTIONS:
        return "no such config key"
    return None


def _stdlib(ref: str) -> bool:
    import importlib.util
    import sys

    top = ref.split(".")[0]
    if top not in sys.stdlib_module_names:
        return False
    try:
        return importlib.util.find_spec(ref) is not None
    except (ImportError, ValueError):
        return False


def _foreign_problem(ref: str) -> str | None:
    """A dotted name whose head is no module of ours: an installed package must have the attribute (a name
    that moved out of such a package into ours, `datasets.refusal_for`, is caught); anything else passes."""
    import importlib

    head, _, attr = ref.partition(".")
    if head in {"torch", "transformers", "peft", "datasets", "huggingface_hub", "accelerate", "safetensors"}:
        try:
            mod = importlib.import_module(head)
        except ImportError:
            return None
        obj = mod
        for part in attr.split("."):
            if not hasattr(obj, part):
                return f"{head} has no {attr}"
            obj = getattr(obj, part)
    return None


def _sea_commands(text: str) -> list[list[str]]:
    out = []
    for span in _spans(text):
        span = span.split("#", 1)[0].strip().rstrip("\\").strip()
        for part in re.split(r"&&|\|\||;", span):
            part = part.strip()
            if part.startswith("sea ") and "..." not in part and "|" not in part:
                try:
                    out.append(shlex.split(part)[1:])
                except ValueError:
                    continue
    return out


def _subparser(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    p = build_parser()
    rest = list(argv)
    while rest and rest[0].startswith("-"):  # the top-level options: -v, --log-level LEVEL
        rest = rest[2:] if rest[0] == "--log-level" else rest[1:]
    while rest:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or rest[0] not in subs[0].choices:
            break
        p = subs[0].choices[rest.pop(0)]
    return p, rest


def _command_problems(argv: list[str]) -> list[str]:
    p, rest = _subparser(argv)
    flags = {s for a in p._actions for s in a.option_strings}
    bad = []
    for w in rest:
        if w.startswith("--"):
            name = w.split("=", 1)[0]
            if name not in flags:
                bad.append(f"unknown option {name}")
        elif "=" in w and re.fullmatch(r"[a-z_][a-z_.0-9]*=.*", w):
            key = w.split("=", 1)[0]
            if key not in KEYS:
                bad.append(f"unknown override key {key}")
    return bad


def _problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(ROOT)
    out = []
    for span in _spans(text):
        for ref in re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.py)\b", span):
            if not _py_path_exists(ref):
                out.append(f"{rel}: {ref}: no such file")
        token = span.strip()
        if re.fullmatch(r"[a-z_]+(\.[a-zA-Z_]+)+", token) and token.rsplit(".", 1)[1] not in EXTENSIONS:
            why = _dotted_problem(token)
            if why:
                out.append(f"{rel}: `{token}`: {why}")
    for argv in _sea_commands(text):
        out += [f"{rel}: sea {' '.join(argv)}: {w}" for w in _command_problems(argv)]
    return out


def test_the_checker_finds_what_it_should():
    assert _dotted_problem("prepare.rules_extract") == "module prepare has no rules_extract"  # moved to keyphrase
    assert _dotted_problem("prepare.limitz") == "module prepare has no limitz"
    assert _dotted_problem("keyphrase.rules_extract") is None
    assert _dotted_problem("named.no_such_thing") == "module named has no no_such_thing"
    assert _dotted_problem("synthesize.stop_loss") is None
    assert _dotted_problem("datasets.refusal_for") == "datasets has no refusal_for"  # moved to sources/named.py
    assert _dotted_problem("align.lead") is None  # retired, and documented so
    assert _command_problems(["export", "--adapter", "a", "--out", "o", "--nope"]) == ["unknown option --nope"]
    assert _command_problems(["run", "--config", "tiny", "--out", "r", "align.epochz=2"]) == [
        "unknown override key align.epochz"
    ]
    assert _command_problems(["run", "--config", "tiny", "--out", "r", "--plan", "align.epochs=2"]) == []
    assert not _py_path_exists("stages/no_such_stage.py") and _py_path_exists("stages/prepare.py")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_what_the_docs_name_exists(path):
    assert _problems(path) == []
