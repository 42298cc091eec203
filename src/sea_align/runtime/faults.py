"""Deterministic crash points for the kill tests.

`SEA_CRASH_AT=<point>:<n>` makes the process SIGKILL itself the n-th time (1-based) it passes
`crash_point(<point>)`: no `finally`, no atexit, no flush — the same as `kill -9` from outside, but at a
known place (e.g. between writing a shard's temp file and renaming it). Unset, a crash point costs one
dict lookup. Points: synth.shard_tmp, synth.shard_written, synth.finished, synth.verified,
align.step, align.ckpt_tmp, eval.batch.
"""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("SEA_CRASH_AT")
    if not spec:
        return
    point, _, n = spec.rpartition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
