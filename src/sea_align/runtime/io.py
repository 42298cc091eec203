"""File hand-off helpers: strict JSONL reading, atomic writes.

Every stage writes through `atomic_write*` so that a crash never leaves a half-written file
under its final name: data go to a temporary `.<name>.<random>.tmp` beside it first, then `os.replace`
renames it. The final file gets the mode any other tool's output would, 0o666 less the umask
(mkstemp alone would leave it 0600), so that a team's shared outputs stay readable by the group.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad user input. The message is one line and names the file, line or field: line breaks in it (a
    value quoted from the input, e.g. an id) are shown escaped."""

    def __init__(self, msg: object = "", *args: object):
        text = str(msg)
        if "\n" in text or "\r" in text:
            text = text.replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text, *args)


def read_jsonl(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    types: dict[str, type | tuple] | None = None,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Read a JSONL file strictly: every non-blank line must be a JSON object with `required` keys."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    # split on \n only: str.splitlines() also breaks inside a JSON string at \x1c, \u2028, ...
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise DataError(f"{path}:{lineno}: JSON nested too deeply") from None
        except ValueError as e:  # e.g. an integer literal longer than Python's 4300-digit limit
            raise DataError(f"{path}:{lineno}: unreadable JSON value ({str(e).splitlines()[0][:80]})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        for key in required:
            if key not in row or row[key] is None:
                raise DataError(f"{path}:{lineno}: missing field '{key}'")
        for key, typ in (types or {}).items():
            if key in row and row[key] is not None and not isinstance(row[key], typ):
                want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
                raise DataError(f"{path}:{lineno}: field '{key}' must be {want}, got {type(row[key]).__name__}")
        row["_line"] = lineno
        rows.append(row)
    if not rows and not allow_empty:
        raise DataError(f"{path}: empty data set (no JSON lines)")
    return rows


def strip_private(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def umask() -> int:
    """The process's current umask. Read from /proc/self/status where Linux offers it (no race with
    another thread creating a file); elsewhere set and restore it at once."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def default_mode(is_dir: bool = False) -> int:
    """The mode `open()` / `mkdir()` would give a new file (0o666) or folder (0o777) under the umask."""
    return (0o777 if is_dir else 0o666) & ~umask()


def make_temp_dir(prefix: str, suffix: str, dir: str | os.PathLike) -> Path:
    """`tempfile.mkdtemp` in `dir`, but with the umask's mode instead of 0700: for a folder that is
    renamed onto its final name once complete."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=dir))
    _chmod(tmp, default_mode(is_dir=True))
    return tmp


def set_default_modes(path: str | os.PathLike) -> None:
    """Give `path`, a file or a folder and everything in it, the umask's modes: for what a library wrote
    with its own (safetensors' `save_file`, so PEFT's and transformers' `save_pretrained`, makes 0600
    files). Only for paths this process just made; links are left alone."""
    path = Path(path)
    if path.is_symlink():
        return
    if not path.is_dir():
        _chmod(path, default_mode())
        return
    dmode, fmode = default_mode(is_dir=True), default_mode()
    _chmod(path, dmode)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            if not os.path.islink(p := os.path.join(root, name)):
                _chmod(p, dmode)
        for name in files:
            if not os.path.islink(p := os.path.join(root, name)):
                _chmod(p, fmode)


def _chmod(path: str | os.PathLike, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError:  # a file system without POSIX modes: keep what it gives
        pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds. The file
    has the umask's mode (as `open()` would make it), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _chmod(tmp, default_mode())  # after the block: a writer may replace the file (safetensors does)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(
        path, "".join(json.dumps(strip_private(r), ensure_ascii=False, default=_json_default) + "\n" for r in rows)
    )


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one row and fsync: used for resumable per-sample logs (a torn last line is dropped on read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(strip_private(row), ensure_ascii=False, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def repair_tail(path: str | os.PathLike) -> None:
    """Cut a torn last line (a crash mid-append) off an append-only log, so that the next append
    starts on a fresh line instead of gluing a good row onto the fragment (which would lose both)."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        keep = 0
        pos = size
        while pos > 0:  # scan back in blocks for the last newline
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            i = block.rfind(b"\n")
            if i >= 0:
                keep = pos + i + 1
                break
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())


def last_per_key(rows: Iterable[dict[str, Any]], key: str = "id") -> list[dict[str, Any]]:
    """One row per `key`, the last one written wins, in order of first appearance."""
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:
        k = r.get(key)
        if isinstance(k, (str, int)):
            out[k] = r
    return list(out.values())


def read_jsonl_tolerant(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read an append-only log written by `append_jsonl`, dropping a torn final line (crash mid-write)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
