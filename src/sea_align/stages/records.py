"""The records that cross stage boundaries, each with one validator (schemas in docs/stages.md):

- `PreparedRow`: a row of prepared.jsonl (prepare -> distill, synthesize, align), `validate_prepared`;
- `Example`: one alignment training example (align's training set -> its loss), checked when built;
- `EvalRecord`: one judged answer in samples.jsonl (evaluate -> rejudge, report), `validate_eval_record`.

A validator raises `DataError` with one line naming where (file:line, or stage and row), the row's id and
the field. Torch-free: the CLI imports this before any model is loaded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from sea_align.runtime.io import DataError, read_jsonl

if TYPE_CHECKING:
    from sea_align.models.base import Item


class PreparedRow(TypedDict, total=False):
    """A prepared row; the keys of `PREPARED_REQUIRED` are always there, the rest are optional."""

    id: str
    instruction: str
    response: str  # the safe answer (a refusal for a harmful row, a helpful answer for a benign one)
    key_phrase: str
    phrase_type: str  # activity | product
    detoxified: str  # the instruction with the phrase replaced ("" for a `#whole` row)
    aux: dict[str, list[dict[str, str]]]  # {modality: [{kind, prompt, target}, ...]}
    harmful: bool  # default true
    category: str
    extraction: str  # given | extractor | rules-fallback
    rejected: str  # the unsafe answer (DPO)
    form: str  # "whole": the whole request carried by the media; "figstep": as FigStep's statement + list
    base_id: str  # a `#whole` or `#figstep` row's source row
    kind: str  # benign | borderline
    response_source: str  # template | distilled | refusal (a harmful row without an answer: ours)
    label_source: str  # file | format | default | answer | option: where `harmful` came from
    answer_check: str  # refusal | helps | default-refusal | unsafe-allowed: the answer check's verdict


PREPARED_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": (str, int),
    "instruction": str,
    "response": str,
    "key_phrase": str,
    "phrase_type": str,
    "detoxified": str,
    "aux": dict,
}
PREPARED_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "harmful": bool,
    "category": str,
    "extraction": str,
    "rejected": str,
    "form": str,
    "base_id": str,
    "kind": str,
    "response_source": str,
    "label_source": str,
    "answer_check": str,
}


def _type_name(typ: type | tuple[type, ...]) -> str:
    return typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)


def _check_fields(row: dict[str, Any], required: dict, optional: dict, loc: str) -> None:
    """Required keys present (None counts as missing) and every known key of its type (bool is no int)."""
    for key in required:
        if row.get(key) is None:
            raise DataError(f"{loc}: missing field '{key}'")
    for key, typ in {**required, **optional}.items():
        v, allowed = row.get(key), typ if isinstance(typ, tuple) else (typ,)
        if v is not None and (not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed)):
            raise DataError(f"{loc}: field '{key}' must be {_type_name(typ)}, got {type(v).__name__}")


def _where(where: str | Path, row: Any, i: int) -> str:
    """FILE:LINE when the rows came from a file (`where` a Path, `_line` from read_jsonl), else
    STAGE: prepared row N; with the row's id when it has one."""
    line = row.get("_line") if isinstance(row, dict) else None
    loc = f"{where}:{line}" if isinstance(where, Path) and line is not None else f"{where}: prepared row {i + 1}"
    rid = row.get("id") if isinstance(row, dict) else None
    return loc + (f" (id '{rid}')" if isinstance(rid, (str, int)) and not isinstance(rid, bool) else "")


class PreparedRows(list):
    """Rows that passed `validate_prepared` (for `modality`, when given): a stage handed these does not
    check them again, so each file is validated once, where it is read."""

    def __init__(self, rows: Iterable[PreparedRow], modality: str | None):
        super().__init__(rows)
        self.modality = modality


def validate_prepared(rows: Iterable[Any], where: str | Path, modality: str | None = None) -> PreparedRows:
    """The rows checked against the prepared-row schema, as new dicts with `id` a string (the input is
    not changed). `where`: the file they were read from (a Path) or the stage reading them. With
    `modality`, every row needs string `prompt`/`target` auxiliary pairs for it (synthesis). Rows that
    already passed (a `PreparedRows` checked for this modality, or for none when none is asked) pass as
    they are."""
    if isinstance(rows, PreparedRows) and modality in (None, rows.modality):
        return rows
    rows = list(rows)
    if not rows:
        raise DataError(f"{where}: no prepared rows")
    out: list[PreparedRow] = []
    seen: set[str] = set()
    for i, r in enumerate(rows):
        loc = _where(where, r, i)
        if not isinstance(r, dict):
            raise DataError(f"{loc}: expected a JSON object, got {type(r).__name__}")
        _check_fields(r, PREPARED_REQUIRED, PREPARED_OPTIONAL, loc)
        if modality is not None:
            _check_aux(r["aux"], modality, loc)
        row: PreparedRow = {**r, "id": str(r["id"])}  # type: ignore[typeddict-item]
        if row["id"] in seen:
            raise DataError(f"{loc}: duplicate id '{row['id']}'")
        seen.add(row["id"])
        out.append(row)
    return PreparedRows(out, modality)


def read_prepared(path: str | Path, modality: str | None = None) -> PreparedRows:
    """prepared.jsonl read and validated, errors naming FILE:LINE (before any model is loaded)."""
    return validate_prepared(read_jsonl(path), Path(path), modality)


def _check_aux(aux: dict[str, Any], modality: str, loc: str) -> None:
    pairs = aux.get(modality)
    if not isinstance(pairs, list) or not pairs:
        raise DataError(f"{loc}: field 'aux' has no auxiliary pairs for {modality} (re-run `sea prepare`)")
    for p in pairs:
        if not isinstance(p, dict) or not isinstance(p.get("prompt"), str) or not isinstance(p.get("target"), str):
            raise DataError(f"{loc}: field 'aux.{modality}' items need string 'prompt' and 'target'")


# --- training examples ---------------------------------------------------------------------------------
EXAMPLE_KINDS = (
    "sea",
    "text",
    "benign_media",
    "benign_text",
    "sea_template",
    "benign_template",
    "reading",
)
HARMFUL_KINDS = ("sea", "sea_template", "text")  # the examples whose target is a refusal
RETAIN_KINDS = ("benign_media", "benign_text", "benign_template", "reading")


@dataclass(frozen=True, eq=False)
class Example:
    """One training example: `item` (prompt, media, target = the chosen answer), what kind it is, the
        rejected answer (DPO), once computed the frozen model's summed log-probs of (chosen, rejected), and for
        an embedding example its request typed (`typed`, the consistency term's reference) and, for a harmful one
    under `align.experimental.adversarial`, the answer start its attack aims at (`goal`)."""

    item: Item
    kind: str
    rejected: str | None = None
    ref_logps: tuple[float, float] | None = None
    typed: Item | None = None  # the same request typed, same target (an embedding example's consistency term)
    goal: str | None = None  # a harmful embedding example's affirmative answer start (align.experimental.adversarial)

    def __post_init__(self) -> None:
        if self.kind not in EXAMPLE_KINDS:
            raise DataError(f"align: unknown training example kind '{self.kind}' (known: {', '.join(EXAMPLE_KINDS)})")
        if not isinstance(self.item.target, str):
            raise DataError(f"align: a '{self.kind}' example has no target answer")
        if self.rejected is not None and not isinstance(self.rejected, str):
            raise DataError(
                f"align: a '{self.kind}' example's rejected answer must be str, got {type(self.rejected).__name__}"
            )


# --- evaluation records --------------------------------------------------------------------------------
class EvalRecord(TypedDict, total=False):
    """One line of samples.jsonl: the benchmark item, the model's answer and the judge's verdict."""

    bench: str  # the benchmark file
    id: str
    category: str
    attack: str | None
    harmful: bool
    prompt: str
    media: list[dict[str, str]]  # [{type, path}] (empty: text only)
    response: str
    kind: str  # optional, from the benchmark: harmful | benign | varied | borderline | reading
    expect: str  # optional: the text a reading item's answer must contain
    request: str  # optional: the request in words (a media item: what the media carries); the harm judge reads it
    refused: bool | None  # None = unscored
    unsafe: bool | None  # None = unscored, or a harmless item
    judge: str
    judge_raw: str


EVAL_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "bench": str,
    "id": str,
    "category": str,
    "harmful": bool,
    "prompt": str,
    "media": list,
    "response": str,
    "judge": str,
}
EVAL_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "attack": str,
    "refused": bool,
    "unsafe": bool,
    "judge_raw": str,
    "request": str,
}


def validate_eval_record(rec: dict[str, Any], where: str) -> EvalRecord:
    """`rec` checked against the evaluation-record schema (returned as is). The optional `kind` and
    `expect` come from the benchmark file unchanged and are not checked here."""
    rid = rec.get("id")
    _check_fields(rec, EVAL_REQUIRED, EVAL_OPTIONAL, f"{where}: record of {rec.get('bench')} id '{rid}'")
    return rec  # type: ignore[return-value]
