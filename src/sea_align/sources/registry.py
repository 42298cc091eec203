"""Data readers ("sources"): one registry for `sea prepare` (text safety sets) and `sea bench-data`
(benchmark items). A reader has a `detect(path)` (does this file or folder have my shape?) and a
`read(path, modality)` that returns rows in one schema: `id`, `category`, `instruction`, `harmful`, and
where known `key_phrase`, `phrase_type`, `response`, `rejected`, `questions` (prompt per attack type),
`scenario`, `key`, `statement` (FigStep's drawn text), `media_rel` (released media per attack type,
relative to --media DIR). Formats are listed in docs/sources.md; `--format NAME` (config: `format:`)
skips detection. Bad input raises a one-line DataError naming the file and the line, entry or field.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sea_align.runtime.io import DataError, read_jsonl
from sea_align.sources.common import (
    Reader,
    Row,
    flag,
    optional_import,
    parquet_records,
    peek_keys,
    records,
    rows_from,
    text,
)
from sea_align.sources.releases import READERS as RELEASE_READERS
from sea_align.sources.text import READERS as TEXT_READERS

log = logging.getLogger(__name__)
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")  # what save_to_disk writes


# --- our own rows ---------------------------------------------------------------------------------
def _own(rec: dict[str, Any], loc: str) -> list[Row]:
    """A record already in our schema (from CSV, JSON, parquet or a data set): types checked."""
    row = {k: v for k, v in rec.items() if v is not None and v != ""}
    row["instruction"] = text(rec, "instruction", loc)
    for key in ("response", "rejected", "key_phrase", "phrase_type", "category"):
        if key in row:
            row[key] = text(rec, key, loc)
    if "harmful" in row:
        row["harmful"] = flag(rec, "harmful", loc)
    return [row]


def _own_detect(path: Path) -> bool:
    keys = peek_keys(path)
    return "instruction" in keys or (path.suffix.lower() == ".jsonl" and not keys)


def _own_read(path: Path, modality: str = "video") -> list[Row]:
    if path.suffix.lower() != ".jsonl":
        return rows_from(records(path), _own, path)
    return read_jsonl(
        path, required=("instruction",), types={"instruction": str, "response": str, "harmful": bool, "rejected": str}
    )


SEA = Reader(
    "sea",
    "our own rows: JSONL (or CSV, JSON list, parquet) with instruction [, response, harmful, "
    "rejected, key_phrase, phrase_type, category, id]",
    _own_detect,
    _own_read,
    frozenset({"instruction"}),
    _own,
)


# --- Hugging Face data sets -----------------------------------------------------------------------
def _hf_detect(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in HF_MARKERS)


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def _hf_records(path: Path) -> list[tuple[Any, dict[str, Any]]]:
    """Records of a parquet file, a `save_to_disk` folder (split `train` or the first) or, online only,
    a hub data set `owner/name[:split]`."""
    if path.is_file() and path.suffix.lower() == ".parquet":
        return parquet_records(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: not a saved data set folder or a parquet file")
    ds_lib = optional_import("datasets", "datasets", path)
    if path.is_dir():
        try:
            ds = ds_lib.load_from_disk(str(path))
        except Exception as e:  # datasets raises several types for a folder it cannot read
            raise DataError(f"{path}: not a readable saved data set ({type(e).__name__})") from None
    else:
        name, _, split = str(path).partition(":")
        if _offline():
            raise DataError(
                f"{name}: no such local path, and the Hugging Face hub is off (HF_DATASETS_OFFLINE/"
                "HF_HUB_OFFLINE): save the data set with save_to_disk and pass that folder"
            )
        try:
            ds = ds_lib.load_dataset(name, split=split or "train")
        except Exception as e:  # network, auth and format errors all end here
            raise DataError(
                f"{name}: cannot load from the hub ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})"
            ) from None
    if hasattr(ds, "keys"):  # a DatasetDict: the train split, else the first one
        ds = ds["train"] if "train" in ds else ds[next(iter(ds.keys()))]
    return [(f"row {k}", dict(r)) for k, r in enumerate(ds, 1)]


def _hf_read(path: Path, modality: str = "video") -> list[Row]:
    recs = _hf_records(path)
    if not recs:
        raise DataError(f"{path}: empty data set")
    keys = set(recs[0][1])
    for reader in REGISTRY.values():
        if reader.convert and reader.keys <= keys:
            log.info("%s: rows read as %s", path, reader.name)
            return rows_from(recs, reader.convert, path)
    raise DataError(f"{path}: columns {', '.join(sorted(keys)[:8])} match no reader (see docs/sources.md)")


DATASETS = Reader(
    "datasets",
    "a Hugging Face data set: save_to_disk folder, parquet file, or (online, "
    "--format datasets) a hub name owner/name[:split]; rows read by the shape readers",
    _hf_detect,
    _hf_read,
)

# --- the registry: detection tries readers in this order (specific shapes first, `sea` last) -------
REGISTRY: dict[str, Reader] = {r.name: r for r in (*RELEASE_READERS, DATASETS, *TEXT_READERS, SEA)}


def register(reader: Reader) -> None:
    """Add a reader; it is tried before the catch-all `sea` reader."""
    REGISTRY.pop(SEA.name)
    REGISTRY[reader.name] = reader
    REGISTRY[SEA.name] = SEA


def formats() -> list[str]:
    return list(REGISTRY)


def check_format(fmt: str) -> None:
    if fmt and fmt not in REGISTRY:
        raise DataError(f"unknown data format '{fmt}' (known: {', '.join(REGISTRY)})")


def detect_format(path: str | Path) -> str:
    """The name of the first reader whose `detect` accepts `path`; DataError if none does."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found (a Hugging Face hub data set needs --format datasets)")
    for reader in REGISTRY.values():
        if reader.detect(p):
            return reader.name
    keys = sorted(peek_keys(p))
    shown = f" (fields: {', '.join(keys[:8])})" if keys else ""
    raise DataError(
        f"{p}: no reader recognises this {'folder' if p.is_dir() else 'file'}{shown}; "
        f"name one with --format ({', '.join(REGISTRY)})"
    )


MAX_FIELD_CHARS = 16_384  # a longer text field is an error: no request or answer of a safety set is that long


def read_source(path: str | Path, fmt: str = "", modality: str = "video") -> list[Row]:
    """Rows of a source in the common schema, read by `fmt` or by the detected format. Every row gets
    `source_format`; rows of a format without ids get `<format>-NNN` (our own JSONL keeps prepare's default).
    A text field longer than MAX_FIELD_CHARS is an error naming FILE:LINE and the field."""
    check_format(fmt)
    name = fmt or detect_format(path)
    rows = REGISTRY[name].read(Path(path), modality)
    if not rows:
        raise DataError(f"{path}: no rows ({name})")
    for i, r in enumerate(rows):
        for key, value in r.items():
            if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                raise DataError(
                    f"{path}:{r.get('_line', i + 1)}: field '{key}' is {len(value)} characters long "
                    f"(limit {MAX_FIELD_CHARS})"
                )
        if name != SEA.name:
            r.setdefault("id", f"{name}-{i:03d}")
        r["source_format"] = name
    log.info("%s: %d rows (%s)", path, len(rows), name)
    return rows


LABELS = ("", "benign", "harmful")  # prepare.label: what an unlabelled row (chat, ShareGPT) is taken to be


def read_safety_set(path: str | Path, fmt: str = "", label: str = "") -> list[Row]:
    """Rows for `prepare`, each labelled as its format or file says (`label_source`); an unlabelled row
    (no `harmful`: chat, ShareGPT) takes `label` when given ("benign"/"harmful", `label_source: option`),
    else stays unlabelled for the answer check. Our own JSONL must give every response (as always); in
    other formats a harmful row without a safe answer gets a refusal (`named.refusal_for`,
    `response_source: refusal`)."""
    from sea_align.sources.named import refusal_for

    if label not in LABELS:
        raise DataError(f"unknown label '{label}' (known: benign, harmful)")
    rows = read_source(path, fmt)
    for r in rows:
        own = r["source_format"] == SEA.name
        if r.get("harmful") is not None:
            r.setdefault("label_source", "file" if own else "format")
        elif own:  # our format's documented default: a row without `harmful` is harmful
            r.update(harmful=True, label_source="default")
        else:
            r.pop("harmful", None)
            if label:
                r.update(harmful=label == "harmful", label_source="option")
        if r.get("response"):
            continue
        where = f"{path}:{r.get('_line', '?')}"
        if r["source_format"] == SEA.name and r.get("response") is None:
            raise DataError(f"{where}: missing field 'response'")
        if r.get("harmful") is False:
            raise DataError(f"{where}: benign row '{r.get('id')}' has no response")
        if r.get("harmful") and r["source_format"] != SEA.name:
            r["response"], r["response_source"] = refusal_for(r["instruction"]), "refusal"
    return rows
