"""The alignment examples of one synthetic embedding (stage 3, docs/stages.md): its own (`MediaItems`: the
row's request beside E -> its response) and the same media under other request templates (`variants`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from sea_align.models.base import Item, ModelAdapter
from sea_align.stages.embstore import blank_meta, load_embeddings
from sea_align.stages.records import Example, PreparedRow
from sea_align.stages.templates import prefix


def variants(
    row: PreparedRow, media: Item, pool: dict[str, list[str]], n: int, side: str, rejected: str | None
) -> list[Example]:
    """The `<side>_template` examples of one embedding (side: sea | benign)."""
    return [Example(x, f"{side}_template", rejected) for x in template_items(row, media, pool, n)]


def template_pool(rows: list[PreparedRow]) -> dict[str, list[str]]:
    """The benign rows' request templates (their `detoxified` text) by phrase type, sorted and unique; a
    harmful row's template may carry harm of its own ("... without leaving evidence"), so it never enters."""
    pool: dict[str, set[str]] = {}
    for r in rows:
        if not r.get("harmful", True) and not r.get("form") and r.get("detoxified"):
            pool.setdefault(r["phrase_type"], set()).add(r["detoxified"])
    return {k: sorted(v) for k, v in pool.items()}


def template_items(row: PreparedRow, media: Item, pool: dict[str, list[str]], n: int) -> list[Item]:
    """`media` (the row's embedding and target) asked under `n` other templates of its phrase type, chosen by
    the row id: harmful and benign embeddings then share every template, so only the media tells them apart."""
    if n <= 0 or row.get("form"):
        return []
    options = [t for t in pool.get(row["phrase_type"], []) if t != row["detoxified"]]
    ranked = sorted(options, key=lambda t: hashlib.sha256(f"{row['id']}:{t}".encode()).hexdigest())
    head = prefix(media.modality, row["phrase_type"]) + " "
    return [Item(head + t, media.modality, media.mm, media.meta, target=media.target) for t in ranked[:n]]


def typed(r: PreparedRow, it: Item) -> Item:
    """The row's request typed, with the embedding example's target: the consistency term's reference."""
    return Item(r["instruction"], target=it.target)


def media_request(modality: str, r: PreparedRow) -> str:
    """The text beside the media in an embedding sample: prefix + detoxified request; nothing for a
    whole-request row (Audio_only); FigStep's prompt for a FigStep row."""
    form = r.get("form")
    if form == "figstep":
        from sea_align.benchmarks.rows import FIGSTEP_PROMPT

        return FIGSTEP_PROMPT
    return "" if form == "whole" else prefix(modality, r["phrase_type"]) + " " + r["detoxified"]


def reading_item(r: PreparedRow, it: Item) -> Item:
    """The embedding of `it` asked what it says (the row's content-control pair): the answer transcribes the
    phrase, harmful or not. Transcribing is not harm."""
    pair = next(p for p in r["aux"][it.modality] if p["kind"] == "content")
    return Item(pair["prompt"], it.modality, it.mm, it.meta, target=pair["target"])


def reads(r: PreparedRow, share: float) -> bool:
    """Whether row `r` is among the `share` of rows that also teach reading (a stable draw by its id)."""
    return share > 0 and int(hashlib.sha256(f"reading:{r['id']}".encode()).hexdigest()[:8], 16) < share * 2**32


class MediaItems:
    """The prepared rows' synthetic embeddings as media items in the LLM's input space."""

    def __init__(self, adapter: ModelAdapter, emb_dir: str | Path):
        self.meta, _, self.embs = load_embeddings(emb_dir)
        self.modality: str = self.meta["modality"]
        adapter.check_modality(self.modality)
        self.adapter, self.blank, self.missing = adapter, blank_meta(self.meta), 0

    def item(self, r: PreparedRow) -> Item | None:
        """The row's request (`media_request`) with its embedding -> its response; None (counted in
        `missing`) when the row has no embedding."""
        e = self.embs.get(r["id"])
        if e is None:
            self.missing += 1
            return None
        with torch.no_grad():
            mm = self.adapter.to_llm(self.modality, e[None], self.blank, self.meta["space"])[0]
        return Item(media_request(self.modality, r), self.modality, mm, self.blank, target=r["response"])
