"""runtime/checks.py: `refuse_overwrite` refuses an output that is an input, contains one, or lies inside an
input folder; anything else passes."""

from pathlib import Path

import pytest

from sea_align.runtime.checks import refuse_overwrite
from sea_align.runtime.io import DataError


def test_refuse_overwrite(tmp_path, monkeypatch):
    data = tmp_path / "in" / "set.jsonl"
    data.parent.mkdir()
    data.write_text("{}\n")
    media = tmp_path / "media"
    media.mkdir()
    monkeypatch.chdir(tmp_path)
    for out, why in (
        ("in/set.jsonl", "is the input"),  # the same file, spelt differently
        (tmp_path / "in" / ".." / "in" / "set.jsonl", "is the input"),
        (tmp_path / "in", "contains the input"),  # a folder output holding an input file
        (tmp_path, "contains the input"),
        (media / "bench", "inside the input"),  # written into an input folder
    ):
        with pytest.raises(DataError, match=f"--out {out}: .*{why}") as e:
            refuse_overwrite(out, data, None, "", media, what="--out")
        assert "\n" not in str(e.value)
    link = tmp_path / "alias.jsonl"
    link.symlink_to(data)
    with pytest.raises(DataError, match="is the input"):
        refuse_overwrite(link, data)
    for out in (tmp_path / "out", tmp_path / "in2" / "set.jsonl", tmp_path / "mediabench"):
        refuse_overwrite(out, data, media)  # siblings, a name that only starts like an input: fine
    refuse_overwrite(tmp_path / "out")  # no inputs


HISTORY = r"(?i)\b(?:session|sprint|issue|ticket|work period)s?[ -]#?\d+|(?:^|[\s(])#\d+\b|\bmust[ -]show\b"


def _repo_text_files(root: Path) -> list[Path]:
    files = [root / "README.md", *root.glob("docs/*.md")]
    return files + [
        p
        for d in ("src", "tests", "scripts")
        for p in (root / d).rglob("*")
        if p.suffix in (".py", ".md", ".yaml", ".sh") and "egg-info" not in p.parts[-2]
    ]


def test_the_history_pattern_catches_what_it_should():
    import re

    pattern = re.compile(HISTORY)
    for hit in ("session 12's run", "(issue 13)", "Issue-3 bar", "see #31", "the must-show", "Sessions 7"):
        assert pattern.search(hit), hit
    for fine in ('color="#444"', "a session-scoped fixture", "the issue's wording", "recipe v4", "step 13"):
        assert not pattern.search(fine), fine


def _repo_lines_matching(pattern: str, skip: tuple[str, ...] = ()) -> list[str]:
    """FILE:LINE: text of every line of the repo's text files that `pattern` finds."""
    import re

    found = re.compile(pattern)
    root = Path(__file__).resolve().parents[1]
    return [
        f"{p.relative_to(root)}:{n}: {line.strip()[:80]}"
        for p in _repo_text_files(root)
        if p.name not in skip
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if found.search(line)
    ]


def test_no_development_history_in_the_repo():
    """README, docs, code, configs, tests and scripts speak of the product: experiments are dated
    (docs/experiments.md), never named after a work period or a ticket (this file holds the pattern's samples)."""
    hits = _repo_lines_matching(HISTORY, skip=("test_checks.py",))
    assert not hits, hits


def test_no_absolute_machine_path_in_the_repo():
    """Tests and docs name paths relative to the checkout (`../shared`, `${SEA_SHARED}`, `runs/...`), never a
    folder of one machine: a fresh clone elsewhere must read the same."""
    hits = _repo_lines_matching(r"(?<![\w.~])/(" + "|".join(["work", "root", "home", "tmp", "mnt"]) + r")\b")
    assert not hits, hits


@pytest.mark.parametrize(
    "argv",
    [
        ["synthesize", "--model", "tiny-random-llava", "--data", "p.jsonl", "--out", "p.jsonl"],
        ["align", "--model", "tiny-random-llava", "--data", "d/p.jsonl", "--embeddings", "e", "--out", "d"],
        ["evaluate", "--model", "tiny-random-llava", "--bench", "b.jsonl", "--out", "b.jsonl"],
    ],
)
def test_stage_commands_refuse_an_out_that_is_an_input(tmp_path, monkeypatch, capsys, argv):
    from sea_align.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    for name in ("p.jsonl", "d/p.jsonl", "b.jsonl"):
        (tmp_path / name).write_text('{"x": 1}\n')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose another output path" in err, err
    assert (tmp_path / "d" / "p.jsonl").read_text() == '{"x": 1}\n'


def test_every_data_file_in_the_package_ships_in_the_wheel():
    """A file the package reads at run time (rates for `--plan`, presets, data sets) must match a package-data
    glob of pyproject.toml, or an installed (non-editable) package cannot find it."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    root = Path(__file__).resolve().parents[1]
    pkg = root / "src" / "sea_align"
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sea_align"]
    shipped = {f for g in globs for f in pkg.glob(g) if f.is_file()}
    files = {
        f for f in pkg.rglob("*") if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts
    }
    assert sorted(str(f.relative_to(pkg)) for f in files - shipped) == []
