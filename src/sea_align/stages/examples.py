"""The alignment examples of one synthetic embedding (stage 3, docs/stages.md): its own (`MediaItems`: the
row's request beside E -> its response, optionally read first, `echoed`), and the extra ones it yields: the
same media under other request templates, asked the auxiliary questions (capability replay), and with its
key phrase written where the media goes (text view)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sea_align.models.base import Item, ModelAdapter
from sea_align.stages.embstore import blank_meta, load_embeddings
from sea_align.stages.records import Example, PreparedRow
from sea_align.stages.templates import CONTENT_A, prefix

Viewer = Callable[[PreparedRow, Item], Item]


def variants(
    row: PreparedRow,
    media: Item,
    pool: dict[str, list[str]],
    view: Viewer | None,
    n: int,
    side: str,
    rejected: str | None,
) -> list[Example]:
    """The `<side>_template` and `<side>_view` examples of one embedding (side: sea | benign)."""
    out = [Example(x, f"{side}_template", rejected) for x in template_items(row, media, pool, n)]
    if view and row.get("key_phrase"):
        out.append(Example(view(row, media), f"{side}_view", rejected))
    return out


def echoed(modality: str, row: PreparedRow, answer: str) -> str:
    """`align.echo`'s target: what the media says (the content answer synthesis optimised E to give), then the
    answer. The decision to help or refuse then follows the phrase as text, which the model's text safety
    reads; without it the decision must come from the embedding itself."""
    return CONTENT_A[modality].format(p=row["key_phrase"].strip()) + " " + answer


def text_viewer(adapter: ModelAdapter, modality: str, meta: dict[str, Any]) -> Viewer:
    """f(row, media item) -> the item with the row's key phrase written where the media goes instead of its
    embedding: synthesis' text init (its `init_text`, default the phrase) in the LLM's input space."""
    from sea_align.config import SynthesizeConfig, from_dict
    from sea_align.stages.synthesize import Synthesizer

    known = set(SynthesizeConfig.__dataclass_fields__)  # embeddings from an older version may have more keys
    scfg = from_dict(
        SynthesizeConfig,
        {k: v for k, v in meta.get("config", {}).items() if k in known},
        "embeddings meta.json config.",
    )
    init_text = scfg.init_text if "{phrase}" in scfg.init_text else "{phrase}"
    synth = Synthesizer(adapter, modality, replace(scfg, space="llm", init="text", init_text=init_text))

    def view(row: PreparedRow, media: Item) -> Item:
        mm = synth.text_init([synth.init_text(row)])[0].to(media.mm.dtype)
        return Item(media.prompt, media.modality, mm, media.meta, target=media.target)

    return view


def template_pool(rows: list[PreparedRow]) -> dict[str, list[str]]:
    """The benign rows' request templates (their `detoxified` text) by phrase type, sorted and unique; a
    harmful row's template may carry harm of its own ("... without leaving evidence"), so it never enters."""
    pool: dict[str, set[str]] = {}
    for r in rows:
        if not r.get("harmful", True) and r.get("form") != "whole" and r.get("detoxified"):
            pool.setdefault(r["phrase_type"], set()).add(r["detoxified"])
    return {k: sorted(v) for k, v in pool.items()}


def template_items(row: PreparedRow, media: Item, pool: dict[str, list[str]], n: int) -> list[Item]:
    """`media` (the row's embedding and target) asked under `n` other templates of its phrase type, chosen by
    the row id: harmful and benign embeddings then share every template, so only the media tells them apart."""
    if n <= 0 or row.get("form") == "whole":
        return []
    options = [t for t in pool.get(row["phrase_type"], []) if t != row["detoxified"]]
    ranked = sorted(options, key=lambda t: hashlib.sha256(f"{row['id']}:{t}".encode()).hexdigest())
    head = prefix(media.modality, row["phrase_type"]) + " "
    return [Item(head + t, media.modality, media.mm, media.meta, target=media.target) for t in ranked[:n]]


def replay_items(row: PreparedRow, media: Item, n: int) -> list[Item]:
    """The first `n` auxiliary pairs of a benign row, asked about its synthetic embedding `media`: the
    answers synthesis optimised the embedding to get from the frozen model, so training on them keeps the
    model's own behaviour on questions about the media (capability replay, self-distilled by construction)."""
    pairs = (row.get("aux") or {}).get(media.modality) or []
    return [Item(p["prompt"], media.modality, media.mm, media.meta, target=p["target"]) for p in pairs[:n]]


def typed(r: PreparedRow, it: Item) -> Item:
    """The row's request typed, with the embedding example's target: the consistency term's reference."""
    return Item(r["instruction"], target=it.target)


def media_request(modality: str, r: PreparedRow) -> str:
    """The text beside the media in an embedding sample: prefix + detoxified request (nothing for a
    whole-request row: Audio_only)."""
    return "" if r.get("form") == "whole" else prefix(modality, r["phrase_type"]) + " " + r["detoxified"]


class MediaItems:
    """The prepared rows' synthetic embeddings as media items in the LLM's input space."""

    def __init__(self, adapter: ModelAdapter, emb_dir: str | Path, echo: bool = False):
        self.meta, _, self.embs = load_embeddings(emb_dir)
        self.echo = echo
        self.modality: str = self.meta["modality"]
        adapter.check_modality(self.modality)
        self.adapter, self.blank, self.missing = adapter, blank_meta(self.meta), 0

    def item(self, r: PreparedRow) -> Item | None:
        """The row's request (`media_request`) with its embedding -> its response (`echo`: after what the
        media says); None (counted in `missing`) when the row has no embedding."""
        e = self.embs.get(r["id"])
        if e is None:
            self.missing += 1
            return None
        with torch.no_grad():
            mm = self.adapter.to_llm(self.modality, e[None], self.blank, self.meta["space"])[0]
        target = echoed(self.modality, r, r["response"]) if self.echo else r["response"]
        return Item(media_request(self.modality, r), self.modality, mm, self.blank, target=target)
