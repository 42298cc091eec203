"""Readers of the benchmark releases: VA-SafetyBench and MM-SafetyBench question folders, FigStep's
`safebench.csv` and VLGuard's `test.json` (docs/sources.md). Rows that have released media name it in
`media_rel` ({attack: path relative to the user's --media folder}); `authors_file` finds it there."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sea_align.runtime.io import DataError
from sea_align.sources.common import Reader, Row, flag, ident, load_json, table_reader, text
from sea_align.sources.keyphrase import rules_extract

MM_TYPES = ("TYPO", "SD", "SD_TYPO")  # MM-SafetyBench image types; SD and SD_TYPO only from the authors' media
# folders under --media DIR where releases keep their files: MM-SafetyBench `imgs/`, FigStep `SafeBench/`
MEDIA_ROOTS = ("", "imgs", "SafeBench", "images/SafeBench", "data/images/SafeBench", "test")


def authors_file(media_dir: Path, rel: str) -> Path:
    """The released file `rel` under --media DIR (or one of the release's usual sub-folders)."""
    for root in MEDIA_ROOTS:
        p = media_dir / root / rel
        if p.is_file():
            return p
    raise DataError(f"--media {media_dir}: missing {media_dir / rel}")


def _first_item(path: Path) -> dict[str, Any] | None:
    """First question of a scenario file (or of the first *.json file of a folder): {field: text}."""
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            return None
        path = files[0]
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    obj = load_json(path)
    first = next(iter(obj.values()), None) if isinstance(obj, dict) else None
    return first if isinstance(first, dict) else None


# --- VA-SafetyBench --------------------------------------------------------------------------------
def _words(s: str) -> list[str]:
    return s.strip().rstrip(".?!").split()


def recover_phrase(text_only: str, rephrased: str) -> str | None:
    """Key phrase = what `Text_only` has where the rephrased question says 'this activity/product'."""
    q = re.split(r"(?<=\.)\s+", rephrased.strip(), maxsplit=1)[-1]  # drop "The video shows a phrase of ..."
    a, b = _words(text_only), _words(q)
    i = 0
    while i < min(len(a), len(b)) and a[i].lower() == b[i].lower():
        i += 1
    j = 0
    while j < min(len(a), len(b)) - i and a[-1 - j].lower() == b[-1 - j].lower():
        j += 1
    core = a[i : len(a) - j]
    if i == 0 or not core or len(core) > 14:
        return None
    return " ".join(core)


def _va_detect(path: Path) -> bool:
    if path.is_dir() and any((path / s).is_dir() for s in ("Video_questions", "Audio_questions")):
        return True
    return "Text_only" in (_first_item(path) or {})


def _keyed_rows(files: list[Path], row: Callable[[Path, str, Any], Row]) -> list[Row]:
    """`row(file, key, item)` for every item of JSON files that each hold one object keyed by item id (the
    layout of VA-SafetyBench's and MM-SafetyBench's question files)."""
    out = []
    for f in files:
        data = load_json(f)
        if not isinstance(data, dict):
            raise DataError(f"{f}: expected a JSON object keyed by item id")
        out += [row(f, str(key), q) for key, q in data.items()]
    return out


def va_items(qdir: str | Path, modality: str = "video") -> list[Row]:
    """VA-SafetyBench questions (a folder with Video_questions/ and Audio_questions/, a folder of scenario
    files, or one file): id `<scenario>/<key>`, the key phrase recovered from Text_only."""
    qdir = Path(qdir)
    sub = qdir / ("Video_questions" if modality == "video" else "Audio_questions")
    files = [qdir] if qdir.is_file() else sorted((sub if sub.is_dir() else qdir).glob("*.json"))
    if not files:
        raise DataError(f"{qdir}: no VA-SafetyBench question files (*.json) found")
    return _keyed_rows(files, _va_row)


def _va_row(f: Path, key: str, q: Any) -> Row:
    if not isinstance(q, dict) or not q.get("Text_only"):
        raise DataError(f"{f}: item '{key}' has no Text_only question")
    reph = q.get("TYPO") or q.get("KPT") or q.get("DM") or ""
    phrase = recover_phrase(q["Text_only"], reph) if reph else None
    ptype = "product" if "product" in reph.lower() else "activity"
    if not phrase:
        phrase, _ = rules_extract(q["Text_only"])
    return {
        "id": f"{f.stem}/{key}",
        "category": f.stem,
        "instruction": q["Text_only"],
        "key_phrase": phrase,
        "phrase_type": ptype,
        "questions": q,
        "scenario": f.stem,
        "key": key,
        "harmful": True,
        "_line": f"item {key}",
    }


# --- MM-SafetyBench processed_questions -----------------------------------------------------------
MM_SUBDIRS = ("", "processed_questions", "data/processed_questions")


def _mm_dir(path: Path) -> Path:
    for sub in MM_SUBDIRS:
        if path.is_dir() and sorted((path / sub).glob("*.json")):
            return path / sub
    return path


def _mm_detect(path: Path) -> bool:
    item = _first_item(_mm_dir(path)) or {}
    return "Key Phrase" in item and "Changed Question" in item


def mm_items(path: Path, modality: str = "video") -> list[Row]:
    """MM-SafetyBench `<NN-Scenario>.json` files: id `<scenario>/<id>`, instruction = Changed Question."""
    files = [path] if path.is_file() else sorted(_mm_dir(path).glob("*.json"))
    if not files:
        raise DataError(f"{path}: no MM-SafetyBench question files (<NN-Scenario>.json) found")
    return _keyed_rows(files, _mm_row)


def _mm_row(f: Path, key: str, q: Any) -> Row:
    loc = f"{f}: item '{key}'"
    if not isinstance(q, dict):
        raise DataError(f"{loc}: expected an object, got {type(q).__name__}")
    changed, reph = text(q, "Changed Question", loc), text(q, "Rephrased Question", loc)
    scen = f.stem
    return {
        "id": f"{scen}/{key}",
        "category": scen,
        "scenario": scen,
        "key": key,
        "instruction": changed,
        "key_phrase": text(q, "Key Phrase", loc),
        "phrase_type": text(q, "Phrase Type", loc, False) or "activity",
        "harmful": True,
        "_line": f"item {key}",
        "questions": {
            "Text_only": changed,
            "TYPO": reph,
            "SD_TYPO": reph,
            "SD": text(q, "Rephrased Question(SD)", loc),
        },
        "media_rel": {t: f"{scen}/{t}/{key}.jpg" for t in MM_TYPES},
    }


# --- FigStep and VLGuard (table files) ------------------------------------------------------------
def _figstep(rec: dict[str, Any], loc: str) -> list[Row]:
    rid = "_".join(ident(rec, k, loc) for k in ("dataset", "category_id", "task_id"))
    return [
        {
            "id": rid,
            "category": text(rec, "category_name", loc, False) or ident(rec, "category_id", loc),
            "instruction": text(rec, "question", loc),
            "statement": text(rec, "instruction", loc),
            "harmful": True,
            "media_rel": {"FigStep": f"query_{rid}_6.png"},
        }
    ]


def _vlguard(rec: dict[str, Any], loc: str) -> list[Row]:
    """One image: unsafe ones hold {instruction, response} pairs (all harmful); safe ones a
    {safe_instruction, response} (benign) and an {unsafe_instruction, response} (harmful)."""
    iid, image, safe = ident(rec, "id", loc), text(rec, "image", loc), flag(rec, "safe", loc)
    pairs = rec.get("instr-resp")
    if not isinstance(pairs, list) or not pairs:
        raise DataError(f"{loc}: field 'instr-resp' must be a non-empty list")
    category = text(rec, "harmful_category", loc, False) or ("safe" if safe else "unsafe")
    out = []
    for k, pair in enumerate(pairs):
        ploc = f"{loc}: instr-resp[{k}]"
        keys = [
            f for f in ("instruction", "safe_instruction", "unsafe_instruction") if isinstance(pair, dict) and f in pair
        ]
        if len(keys) != 1:
            raise DataError(f"{ploc}: expected one of instruction, safe_instruction, unsafe_instruction")
        row = {
            "id": f"{iid}/{k}",
            "category": category,
            "instruction": text(pair, keys[0], ploc),
            "harmful": keys[0] != "safe_instruction",
            "image_safe": safe,
            "media_rel": {"VLGuard": image},
        }
        if text(pair, "response", ploc, False):
            row["response"] = text(pair, "response", ploc)
        out.append(row)
    return out


READERS = (
    Reader(
        "va-safetybench",
        "VA-SafetyBench questions: folder with Video_questions/ + Audio_questions/, or "
        "scenario files {id: {Text_only, KPT, TYPO, ...}}",
        _va_detect,
        va_items,
    ),
    Reader(
        "mm-safetybench",
        "MM-SafetyBench processed_questions: folder of <NN-Scenario>.json or one file "
        "{id: {Changed Question, Key Phrase, Rephrased Question, ...}}",
        _mm_detect,
        mm_items,
    ),
    table_reader(
        "figstep",
        {"dataset", "category_id", "task_id", "question", "instruction"},
        _figstep,
        "FigStep safebench.csv (dataset, category_id, task_id, category_name, question, instruction)",
    ),
    table_reader(
        "vlguard",
        {"image", "instr-resp"},
        _vlguard,
        "VLGuard test.json: [{id, image, safe, harmful_category, instr-resp: [...]}]",
    ),
)
