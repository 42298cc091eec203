"""What each of a run's stage outputs was made under, so a resumed `sea run` reuses an output only when
the settings that shaped it are the same.

`RUN/fingerprints.json` holds, per stage, the flat settings that shaped its output (`prepare.limit`,
`model`, the data file's digest, ...) and a digest of them. A stage's settings include the digests of the
stages it reads (`after.prepare`, ...), so a stage made again makes the ones that read it run again too.
On a resume:
- same settings: the output is reused;
- other settings: one line names the first setting that changed, the old output is removed and the stage
  runs again;
- no record (a run made before fingerprints existed): the output is reused and its settings recorded, with
  one line saying so.
Settings are recorded before a stage starts, so a stage stopped half-way resumes only under its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sea_align.runtime.io import atomic_write_json

log = logging.getLogger(__name__)

FILE = "fingerprints.json"


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and scalars are leaves (JSON-normalised)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.loads(json.dumps(d, default=str))}


def digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """sha256 (16 hex) of a file's bytes; '' when it is not a file (a named set, a hub id)."""
    p = Path(path)
    if not p.is_file():
        return ""
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _show(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first difference, in words: "prepare.limit 24 -> 40", else "prepare was made again" (a stage's
    own settings are named before the stages it reads)."""
    for k in sorted(set(old) | set(new), key=lambda k: (k.startswith("after."), k)):
        if old.get(k, "<unset>") != new.get(k, "<unset>"):
            if k.startswith("after."):
                return f"{k[len('after.') :]} was made again"
            a = _show(old[k]) if k in old else "unset"
            b = _show(new[k]) if k in new else "unset"
            return f"{k} {a} -> {b}"
    return ""


def same_but_new_defaults(old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """True when `old` and `new` differ only in settings one of them lacks, each at its default: a run made
    before a setting existed was made as its default makes it now (a new setting's default keeps the old
    behaviour), so upgrading the package does not make a resumed run redo its stages."""
    missing = object()
    for k in set(old) | set(new):
        a, b = old.get(k, missing), new.get(k, missing)
        if a is missing or b is missing:
            if (b if a is missing else a) != defaults.get(k, missing):
                return False
        elif a != b:
            return False
    return True


class Fingerprints:
    """The run's record of each stage's settings (RUN/fingerprints.json). `defaults`: every setting's
    default, flattened as the settings are ("prepare.figstep": False); a record lacking a setting that is
    at its default now still matches."""

    def __init__(self, run_dir: str | Path, defaults: dict[str, Any] | None = None):
        self.path = Path(run_dir) / FILE
        self.defaults = defaults or {}
        self.data: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def digest_of(self, stage: str) -> str:
        return self.data.get(stage, {}).get("digest", "")

    def claim(self, stage: str, settings: dict[str, Any], outputs: Iterable[str | Path]) -> bool:
        """Before `stage` runs (or resumes): outputs made under other settings are removed, with one line
        naming the first setting that changed, and `settings` are recorded as those of what it writes now.
        True when outputs that are there were kept (the stage's own resume then decides what is left)."""
        present = [p for p in map(Path, outputs) if p.exists()]
        rec = self.data.get(stage)
        if rec is not None and rec.get("digest") != digest(settings):
            if same_but_new_defaults(rec.get("settings", {}), settings, self.defaults):
                # the record stays as it is: its digest is what the stages that read this one recorded
                return bool(present)
        kept = bool(present)
        if present and rec is None:
            log.warning("%s: keeping %s, made before settings were recorded; recording them now", stage, present[0])
        elif present and rec.get("digest") != digest(settings):
            log.warning("%s runs again: %s", stage, changed(rec.get("settings", {}), settings) or "settings changed")
            for p in present:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            kept = False
        if rec is None or rec.get("digest") != digest(settings):
            self.data[stage] = {"digest": digest(settings), "settings": settings}
            atomic_write_json(self.path, self.data)
        return kept
