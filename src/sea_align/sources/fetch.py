"""`sea data fetch NAME --out DIR`: download a benchmark's released files that this package may not ship
(VA-SafetyBench's questions are CC BY-NC 4.0). Stdlib only, so `sea --help` stays import-light.

The files land in a temporary folder beside DIR and are renamed onto DIR only when all of them are in and
check out (each parses as a JSON object; with the default URL, each has the SHA-256 of the pinned
release), so an interrupted or failed fetch leaves nothing under DIR. `--url` takes a mirror or a local
copy (`file:///...`); its files are not hash-checked (a mirror may carry another revision).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sea_align.runtime.io import DataError, atomic_write_json, make_temp_dir

log = logging.getLogger(__name__)
VA_COMMIT = "881e7e9308ff22b54d1d2219799856d224b917f1"  # ZeroNLP/SEA, the authors' repository
VA_SCENARIOS = (
    "1-IllegalActivitiy",
    "2-HateSpeech",
    "3-MalwareGeneration",
    "4-PhysicalHarm",
    "5-EconomicHarm",
    "6-Fraud",
    "7-Sex",
    "8-PrivacyViolence",
)  # "Activitiy" is the authors' spelling
VA_SHA256 = {  # the files at VA_COMMIT (the project's ../shared/data/va-safetybench copy has the same bytes)
    "Audio_questions/1-IllegalActivitiy.json": "9d3a533b3924c6bcee0c707f88f42255e6cc480ca32b31a0771a1880cf66a57a",
    "Audio_questions/2-HateSpeech.json": "222ec3b4aaf70c1fd5505b495179a914093c1f7f0a4b1243e5ca6b5c586c4519",
    "Audio_questions/3-MalwareGeneration.json": "227aeb82110616fdfd574f1f55679947149bec67ff3d4923c6f97bb8c6bd236f",
    "Audio_questions/4-PhysicalHarm.json": "4a300a5fbdf3e7a077b863f349b53f1b46bb10160238201567d1f0f9616d60b7",
    "Audio_questions/5-EconomicHarm.json": "539d92bdf3eb5a26f0bd7e3365cf507ec0580337f781194e33e1fad118770301",
    "Audio_questions/6-Fraud.json": "7b775c0e942f75df0157bf8970437ddcb1fac6b63de88c382bc1e672fe2b767a",
    "Audio_questions/7-Sex.json": "254676f3eecdd101c193d12c12fe2dccb8f5430a2d9614e0d1d70f31ef4d29d3",
    "Audio_questions/8-PrivacyViolence.json": "1293e6007b56d57c61472aa77fc96f70194222dde81467f2370bb1cf59f20563",
    "Video_questions/1-IllegalActivitiy.json": "d2b8c1e60b176daaa02164cc52ac3e2a5c6eeb0ae113c4799f8dd75c1c6d7403",
    "Video_questions/2-HateSpeech.json": "ad21041f2bb56c233cc8a50edc5015a84f796ee11334e0176daad3e8a5c3f863",
    "Video_questions/3-MalwareGeneration.json": "bd74900ecbe59f6ddc8fa2f0f8ab3218f90bbae9d7d49d18b44f136ed106b23f",
    "Video_questions/4-PhysicalHarm.json": "fbfdbe17fb8977936111ac2a735563d0601aa363c481e86b0dc580382c0179a3",
    "Video_questions/5-EconomicHarm.json": "95ec8cd8bb56aaef362ed50c4c0e1aa26493fd8d1c264c0d5a2a4bef4a7ebdc5",
    "Video_questions/6-Fraud.json": "b445fa846989bcea4f200495fd3afcf1c7a07f52a48e29e0c1cb976b5b2d7862",
    "Video_questions/7-Sex.json": "9eb4195923ecf6fda2155e7eca052516a642694993eec630c83cf7d04b50be3f",
    "Video_questions/8-PrivacyViolence.json": "b6154a9d55bab340acbde3050ca893f26394658936f9857bd931eedd5df5526c",
}


@dataclass(frozen=True)
class Release:
    name: str
    url: str  # base URL: each file is fetched from <url>/<relative path>
    sha256: dict[str, str]  # relative path -> SHA-256 at `url`
    licence: str
    home: str
    title: str


RELEASES = {
    "va-safetybench": Release(
        name="va-safetybench",
        url=f"https://raw.githubusercontent.com/ZeroNLP/SEA/{VA_COMMIT}/VA-SafetyBench",
        sha256=VA_SHA256,
        licence="CC BY-NC 4.0 (evaluation only; derived from MM-SafetyBench)",
        home="https://github.com/ZeroNLP/SEA",
        title="VA-SafetyBench's questions",
    )
}


def missing_hint(source: str | Path) -> str | None:
    """How to get a missing source a preset names (one line), or None when it is no known release."""
    for rel in RELEASES.values():
        if Path(source).name == rel.name:
            return (
                f"{rel.title} are not shipped ({rel.licence.split(' (')[0]}): get them with "
                f"`sea data fetch {rel.name} --out DIR/data/{rel.name}` and set SEA_SHARED=DIR"
            )
    return None


def _download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code}"
    except urllib.error.URLError as e:
        reason = str(e.reason)
    except (OSError, ValueError) as e:  # timeouts, reset connections, a malformed URL
        reason = str(e) or type(e).__name__
    raise DataError(
        f"data fetch: cannot download {url} ({' '.join(reason.split())[:120]}); offline? "
        "give a mirror or a local copy with --url"
    )


def _check(url: str, data: bytes, digest: str | None) -> None:
    """The file must be a JSON object; with a pinned digest, those exact bytes."""
    if digest and hashlib.sha256(data).hexdigest() != digest:
        raise DataError(f"data fetch: {url}: SHA-256 differs from the pinned release (changed upstream?)")
    try:
        ok = isinstance(json.loads(data.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError, RecursionError):
        ok = False
    if not ok:
        raise DataError(f"data fetch: {url}: not a JSON object (not the release's question file)")


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the complete `tmp` onto `out`; an old `out` (--force) goes only once the new one is in place."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def fetch(name: str, out: str | Path, url: str | None = None, force: bool = False, timeout: float = 60.0) -> Path:
    """Download release `name` into `out` (all files, checked, or nothing). Returns `out`."""
    if name not in RELEASES:
        raise DataError(f"data fetch: unknown release {name!r} (known: {', '.join(RELEASES)})")
    rel, out = RELEASES[name], Path(out)
    if out.exists() and not force:
        raise DataError(f"data fetch: {out} already exists (remove it, or --force to replace it)")
    base = (url or rel.url).rstrip("/")
    pinned = base == rel.url
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(f".{out.name}.", ".partial", out.parent)
    except OSError as e:
        raise DataError(f"data fetch: cannot write under {out.parent} ({e.strerror or type(e).__name__})") from None
    try:
        for path, digest in rel.sha256.items():
            data = _download(f"{base}/{path}", timeout)
            _check(f"{base}/{path}", data, digest if pinned else None)
            (tmp / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp / path).write_bytes(data)
        atomic_write_json(
            tmp / "SOURCE.json",
            {
                "release": name,
                "url": base,
                "sha256_checked": pinned,
                "licence": rel.licence,
                "home": rel.home,
                "files": {p: hashlib.sha256((tmp / p).read_bytes()).hexdigest() for p in rel.sha256},
            },
        )
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: %d files -> %s", name, len(rel.sha256), out)
    return out
