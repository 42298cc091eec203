"""Does an aligned model tell harmful from harmless *content*, or only the form it was trained on?

Asks the model (base or with an adapter) the SEA request on synthetic embeddings, no media rendered, and
counts refusals per row kind (harmful / benign / borderline / ...). Run it on embeddings of rows that
alignment never saw (`sea prepare` + `sea synthesize` on held-out requests) to see whether refusal follows
the harm or the form, and on the training embeddings to see how well alignment fit. `--init` asks on
the text-init embeddings instead (the key phrase written where the media goes, no optimisation).

Usage:
  python scripts/synthetic_probe.py --model sea-tiny-vl [--adapter RUN/adapter] \\
      --data prepared.jsonl (--embeddings EMB_DIR | --init) [--config PRESET] [--out answers.jsonl]
Prints one line per kind: refused k / n (rate).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from sea_align.cli.stages import embeddings_modality
from sea_align.config_load import load_config
from sea_align.judges import get_judge
from sea_align.models import load_adapter
from sea_align.models.base import Item
from sea_align.runtime.io import atomic_write_jsonl, read_jsonl
from sea_align.stages.examples import MediaItems, media_request
from sea_align.stages.synthesize import Synthesizer


def media_items(adapter, rows: list[dict], args, cfg) -> tuple[list[dict], list[Item]]:
    """(rows that have an embedding, their items in the LLM's input space), as align builds them."""
    if args.init:
        modality = args.modality
        syn = Synthesizer(adapter, modality, cfg.synthesize)
        with torch.no_grad():
            mm = adapter.to_llm(modality, syn.first_init(rows), syn.meta, cfg.synthesize.space)
        return rows, [Item(media_request(modality, r), modality, mm[i], syn.meta) for i, r in enumerate(rows)]
    media = MediaItems(adapter, args.embeddings)
    pairs = [(r, media.item(r)) for r in rows]  # a training item: its target is dropped, the model answers
    return [r for r, it in pairs if it is not None], [replace(it, target=None) for _, it in pairs if it is not None]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", default=None, help="PEFT adapter directory (default: the base model)")
    p.add_argument("--data", required=True, help="prepared.jsonl of the rows to ask about")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--embeddings", help="their synthetic embeddings (sea synthesize --out)")
    src.add_argument("--init", action="store_true", help="ask on the text-init embeddings (no optimisation)")
    p.add_argument("--modality", default="image", help="with --init: the modality (--embeddings: theirs)")
    p.add_argument("--config", default=None, help="preset or YAML (synthesize settings for --init)")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default=None, help="write each answer and verdict here (JSONL)")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    if args.embeddings:  # the model is loaded for the embeddings' own modality
        args.modality = embeddings_modality(args.embeddings) or args.modality
    adapter = load_adapter(args.model, adapter_dir=args.adapter, modality=args.modality)
    rows, items = media_items(adapter, read_jsonl(args.data), args, cfg)
    answers: list[str] = []
    for i in range(0, len(items), args.batch_size):
        answers += adapter.generate(items[i : i + args.batch_size], max_new_tokens=args.max_new_tokens)
    recs = [
        {
            "id": r["id"],
            "harmful": bool(r.get("harmful", True)),
            "kind": r.get("kind") or ("harmful" if r.get("harmful", True) else "benign"),
            "prompt": it.prompt,
            "response": a,
        }
        for r, it, a in zip(rows, items, answers)
    ]
    for rec, v in zip(recs, get_judge("refusal").judge(recs)):
        rec["refused"] = v.refused
    if args.out:
        atomic_write_jsonl(Path(args.out), recs)
    n, k = Counter(r["kind"] for r in recs), Counter(r["kind"] for r in recs if r["refused"])
    for kind in sorted(n):
        print(f"{kind}: refused {k[kind]} / {n[kind]} ({100 * k[kind] / n[kind]:.1f}%)")
    print(json.dumps({kind: [k[kind], n[kind]] for kind in sorted(n)}))


if __name__ == "__main__":
    main()
