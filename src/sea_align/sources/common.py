"""Building blocks of the data readers (`sources/registry.py`): the `Reader` record, strict containers (CSV, JSON,
JSONL, parquet) whose errors name the file and the line, entry or field, and field checks.

A *table* reader is a set of column names (how it is recognised) plus a function turning one record into
rows; the same function serves CSV, JSON, JSONL and parquet files and saved Hugging Face data sets.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sea_align.runtime.io import DataError, read_jsonl

Row = dict[str, Any]  # id, category, instruction, harmful + optional fields (docs/sources.md)
Where = int | str  # a line number (CSV, JSONL) or "entry N" (JSON list) / "row N" (data set)
Convert = Callable[[dict[str, Any], str], list[Row]]  # (record, "file:where") -> rows
TABLE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
csv.field_size_limit(16 * 1024 * 1024)  # HarmBench contexts are long; the default 128 KiB cap is too low


@dataclass(frozen=True)
class Reader:
    """One source format: `detect(path)` says whether a path has its shape; `read(path, modality)` gives
    rows in the common schema. Table readers also carry their `keys` and record `convert`er."""

    name: str
    about: str  # one line for --help and docs/sources.md
    detect: Callable[[Path], bool]
    read: Callable[[Path, str], list[Row]]
    keys: frozenset[str] = frozenset()
    convert: Convert | None = None


# --- containers -----------------------------------------------------------------------------------
def read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None


def load_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    except (RecursionError, ValueError) as e:
        raise DataError(f"{path}: unreadable JSON ({type(e).__name__})") from None


def csv_records(path: Path) -> list[tuple[Where, dict[str, Any]]]:
    """Records of a CSV file with the line each starts on; a row with too many or too few fields is an error."""
    rd = csv.DictReader(io.StringIO(read_text(path), newline=""))
    if not rd.fieldnames:
        raise DataError(f"{path}: empty CSV (no header)")
    out: list[tuple[Where, dict[str, Any]]] = []
    while True:
        start = rd.line_num + 1
        try:
            rec = next(rd)
        except StopIteration:
            return out
        except csv.Error as e:
            raise DataError(f"{path}:{rd.line_num}: malformed CSV ({e})") from None
        if None in rec or None in rec.values():
            n = len(rd.fieldnames) + len(rec[None]) if None in rec else sum(v is not None for v in rec.values())
            raise DataError(f"{path}:{start}: {n} fields, the header has {len(rd.fieldnames)}")
        out.append((start, rec))


def json_records(path: Path) -> list[tuple[Where, dict[str, Any]]]:
    obj = load_json(path)
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(obj).__name__}")
    for k, rec in enumerate(obj, 1):
        if not isinstance(rec, dict):
            raise DataError(f"{path}:entry {k}: expected a JSON object, got {type(rec).__name__}")
    return [(f"entry {k}", rec) for k, rec in enumerate(obj, 1)]


def parquet_records(path: Path) -> list[tuple[Where, dict[str, Any]]]:
    pq = optional_import("pyarrow.parquet", "pyarrow", path)
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises its own error types for a bad file
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__})") from None
    return [(f"row {k}", r) for k, r in enumerate(rows, 1)]


def records(path: Path) -> list[tuple[Where, dict[str, Any]]]:
    """(where, record) for every record of a CSV, JSONL, JSON-list or parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return csv_records(path)
    if suffix == ".json":
        return json_records(path)
    if suffix == ".parquet":
        return parquet_records(path)
    return [(r.pop("_line"), r) for r in read_jsonl(path)]


def optional_import(module: str, package: str, path: Path | str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"{path}: reading this needs the package '{package}' (pip install {package})") from None


def peek_keys(path: Path) -> frozenset[str]:
    """Column names of a table file (CSV header, first JSONL line, first JSON-list entry, parquet schema);
    empty when the path is no table file or has no record. Malformed content raises DataError."""
    if not path.is_file() or path.suffix.lower() not in TABLE_SUFFIXES:
        return frozenset()
    st = path.stat()
    return _peek(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _peek(name: str, mtime_ns: int, size: int) -> frozenset[str]:
    path, suffix = Path(name), Path(name).suffix.lower()
    if suffix == ".parquet":
        pq = optional_import("pyarrow.parquet", "pyarrow", path)
        return frozenset(pq.read_schema(path).names)
    if suffix == ".json":
        obj = load_json(path)
        first = obj[0] if isinstance(obj, list) and obj else None
        return frozenset(first) if isinstance(first, dict) else frozenset()
    try:  # CSV header or first JSONL record: read only what is needed (data sets can be large)
        with open(path, encoding="utf-8-sig", newline="" if suffix == ".csv" else "\n") as f:
            if suffix == ".csv":
                return frozenset(next(csv.reader(f), []))
            for lineno, line in enumerate(f, 1):  # lines end at "\n" only, as read_jsonl splits them
                if line.strip():
                    return _keys_of_line(path, lineno, line)
            return frozenset()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start} of a block)") from None
    except csv.Error as e:
        raise DataError(f"{path}:1: malformed CSV header ({e})") from None


def _keys_of_line(path: Path, lineno: int, line: str) -> frozenset[str]:
    try:
        first = json.loads(line)
    except (ValueError, RecursionError):
        raise DataError(f"{path}:{lineno}: malformed JSON") from None
    return frozenset(first) if isinstance(first, dict) else frozenset()


# --- fields ---------------------------------------------------------------------------------------
def text(rec: dict[str, Any], key: str, loc: str, required: bool = True) -> str:
    """A string field, stripped; required ones must be non-empty."""
    v = rec.get(key)
    if v is not None and not isinstance(v, str):
        raise DataError(f"{loc}: field '{key}' must be a string, got {type(v).__name__}")
    v = (v or "").strip()
    if required and not v:
        raise DataError(f"{loc}: field '{key}' is missing or empty")
    return v


def ident(rec: dict[str, Any], key: str, loc: str) -> str:
    """An id-like field: a non-empty string or an integer."""
    v = rec.get(key)
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return text(rec, key, loc)


def flag(rec: dict[str, Any], key: str, loc: str) -> bool:
    """A boolean field: true/false, or their CSV spellings (True, false, 1, 0, yes, no)."""
    v = rec.get(key)
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    raise DataError(f"{loc}: field '{key}' must be true or false, got {str(v)[:20]!r}")


# --- table readers --------------------------------------------------------------------------------
def rows_from(recs: list[tuple[Where, dict[str, Any]]], convert: Convert, path: Path | str) -> list[Row]:
    out: list[Row] = []
    for where, rec in recs:
        for row in convert(rec, f"{path}:{where}"):
            row["_line"] = where
            out.append(row)
    return out


def table_reader(name: str, keys: set[str], convert: Convert, about: str) -> Reader:
    """A reader for records that have all of `keys`, in any table file (CSV, JSON list, JSONL, parquet)."""
    want = frozenset(keys)

    def detect(path: Path) -> bool:
        return want <= peek_keys(path)

    def read(path: Path, modality: str = "video") -> list[Row]:
        recs = records(path)
        missing = sorted(want - set(recs[0][1])) if recs else []
        if missing:
            raise DataError(f"{path}:{recs[0][0]}: not a {name} file (no field '{missing[0]}')")
        return rows_from(recs, convert, path)

    return Reader(name, about, detect, read, want, convert)
