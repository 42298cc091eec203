"""Checks on a command's paths before anything is written."""

from __future__ import annotations

from pathlib import Path

from sea_align.runtime.io import DataError


def refuse_overwrite(out: str | Path, *inputs: str | Path | None, what: str = "--out") -> None:
    """DataError (one line) when the output `out` is an input (same resolved path), contains one (a folder
    output) or lies inside an input folder; empty inputs (None, "") are ignored."""
    dst = Path(out).resolve()
    for given in inputs:
        if not given:
            continue
        src = Path(given).resolve()
        if dst == src:
            why = "is the input"
        elif dst in src.parents:
            why = "contains the input"
        elif src in dst.parents:
            why = "lies inside the input folder"
        else:
            continue
        raise DataError(f"{what} {out}: {why} {given}; choose another output path")
