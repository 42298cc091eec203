"""Stage 3 — safety alignment: LoRA on the language model, encoder and projector frozen.

Training samples (all chat-formatted by the model's adapter):
  SEA:        [P(E) in the media slot] + prefix ("The image shows a phrase of an activity.") +
              detoxified instruction  -> safe response
  text:       the original instruction (text only) -> safe response      (align.include_text)
  benign:     [P(E_benign)] + prefix + detoxified benign instruction -> helpful response
              (and its text form), so the model does not learn "refuse every image"
`--text-only` trains the textual-alignment baseline: the text samples alone, same data, same budget.
SFT by default; DPO when every harmful row has `rejected` (or align.method=dpo).
"""
from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import AlignConfig
from .io import DataError, append_jsonl, atomic_write_json
from .models.base import BaseAdapter, Item
from .synthesize import load_embeddings, to_llm
from .templates import prefix

log = logging.getLogger(__name__)


@dataclass
class AlignResult:
    out_dir: Path
    method: str
    n_train: int
    counts: dict[str, int]
    final_loss: float
    seconds: float


def build_training_set(rows: list[dict[str, Any]], emb_dir: str | Path | None, adapter: BaseAdapter,
                       cfg: AlignConfig) -> tuple[list[dict[str, Any]], dict[str, int], str | None]:
    """Training examples [{item, rejected?, kind}], counts per kind, and the modality used."""
    examples: list[dict[str, Any]] = []
    counts = {"sea": 0, "text": 0, "benign_media": 0, "benign_text": 0, "missing_embedding": 0}
    modality = None
    embs: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    if not cfg.text_only:
        if not emb_dir:
            raise DataError("align: --embeddings is required unless --text-only")
        meta, _, embs = load_embeddings(emb_dir)
        modality = meta["modality"]
        adapter.check_modality(modality)
    harmful = [r for r in rows if r.get("harmful", True)]
    benign = [r for r in rows if not r.get("harmful", True)]
    n_benign = len(benign) if cfg.benign < 0 else min(cfg.benign, len(benign))
    if not harmful:
        raise DataError("align: the prepared data has no harmful rows")
    blank_meta = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("blank_meta", {}).items()}

    def media_item(r):
        e = embs.get(r["id"])
        if e is None:
            counts["missing_embedding"] += 1
            return None
        with torch.no_grad():
            mm = to_llm(adapter, modality, e[None].to(adapter.device), blank_meta, meta["space"])[0]
        text = prefix(modality, r["phrase_type"]) + " " + r["detoxified"]
        return Item(text, modality, mm, blank_meta, target=r["response"])

    for r in harmful:
        if not cfg.text_only:
            it = media_item(r)
            if it is not None:
                examples.append({"item": it, "rejected": r.get("rejected"), "kind": "sea"})
                counts["sea"] += 1
        if cfg.text_only or cfg.include_text:
            examples.append({"item": Item(r["instruction"], target=r["response"]), "rejected": r.get("rejected"),
                             "kind": "text"})
            counts["text"] += 1
    for r in benign[:n_benign]:
        if not cfg.text_only:
            it = media_item(r)
            if it is not None:
                examples.append({"item": it, "rejected": None, "kind": "benign_media"})
                counts["benign_media"] += 1
        examples.append({"item": Item(r["instruction"], target=r["response"]), "rejected": None,
                         "kind": "benign_text"})
        counts["benign_text"] += 1
    return examples, counts, modality


def lora_model(adapter: BaseAdapter, cfg: AlignConfig):
    """Inject LoRA into the language model only (regex on module names keeps the towers out)."""
    from peft import LoraConfig, get_peft_model
    targets = "|".join(cfg.lora_targets)
    lm_name = next((n for n, m in adapter.model.named_modules() if m is adapter.language_model), "")
    import re
    pattern = (re.escape(lm_name) + r"\..*\.(" + targets + ")") if lm_name else (r".*\.(" + targets + ")")
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=pattern, bias="none")
    peft_model = get_peft_model(adapter.model, lcfg)
    n_train = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if n_train == 0:
        raise DataError(f"align: no LoRA target matched {cfg.lora_targets} in the language model")
    return peft_model


def _dpo_loss(adapter, peft_model, batch, beta, ref):
    chosen = [b["item"] for b in batch]
    rejected = [Item(b["item"].prompt, b["item"].modality, b["item"].mm, b["item"].meta, target=b["rejected"])
                for b in batch]
    pc = adapter.target_loss(chosen, reduction="sum").neg()
    pr = adapter.target_loss(rejected, reduction="sum").neg()
    rc = torch.tensor([ref[id(b)][0] for b in batch], device=pc.device)
    rr = torch.tensor([ref[id(b)][1] for b in batch], device=pc.device)
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def run_align(adapter: BaseAdapter, rows: list[dict[str, Any]], emb_dir: str | Path | None, out_dir: str | Path,
              cfg: AlignConfig | None = None, progress: bool = True) -> AlignResult:
    cfg = cfg or AlignConfig()
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    examples, counts, modality = build_training_set(rows, emb_dir, adapter, cfg)
    harmful_rej = [e for e in examples if e["kind"] in ("sea", "text")]
    method = cfg.method
    if method == "auto":
        method = "dpo" if harmful_rej and all(e["rejected"] for e in harmful_rej) else "sft"
    if method == "dpo":
        examples = [e for e in examples if e["rejected"]]
        if not examples:
            raise DataError("align: method dpo needs rows with a 'rejected' response")
    torch.manual_seed(cfg.seed)
    peft_model = lora_model(adapter, cfg)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    ref: dict[int, tuple[float, float]] = {}
    if method == "dpo":  # reference log-probs with the adapter off
        with torch.no_grad(), peft_model.disable_adapter():
            for e in examples:
                it = e["item"]
                rej = Item(it.prompt, it.modality, it.mm, it.meta, target=e["rejected"])
                lp = adapter.target_loss([it, rej], reduction="sum").neg().tolist()
                ref[id(e)] = (lp[0], lp[1])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rng = random.Random(cfg.seed)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_batches = (len(examples) + cfg.batch_size - 1) // cfg.batch_size
    peft_model.train()
    step, loss_val = 0, float("nan")
    with tqdm(total=cfg.epochs * n_batches, desc=f"align[{method}{'/text-only' if cfg.text_only else ''}]",
              disable=not progress, unit="step") as bar:
        for epoch in range(cfg.epochs):
            order = list(range(len(examples)))
            rng.shuffle(order)
            for b in range(n_batches):
                batch = [examples[i] for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
                if method == "dpo":
                    loss = _dpo_loss(adapter, peft_model, batch, cfg.dpo_beta, ref)
                else:
                    loss = adapter.target_loss([e["item"] for e in batch]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                step += 1
                loss_val = float(loss.detach())
                append_jsonl(tmp / "metrics.jsonl", {"step": step, "epoch": epoch, "loss": round(loss_val, 5),
                                                     "kinds": sorted({e["kind"] for e in batch})})
                bar.set_postfix(loss=f"{loss_val:.3f}")
                bar.update(1)
    peft_model.eval()
    peft_model.save_pretrained(str(tmp))
    secs = time.perf_counter() - t0
    atomic_write_json(tmp / "train_summary.json", {
        "method": method, "text_only": cfg.text_only, "modality": modality, "counts": counts,
        "n_train": len(examples), "steps": step, "final_loss": loss_val, "seconds": round(secs, 2),
        "config": cfg.__dict__})
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # the adapter directory appears whole or not at all
    adapter.peft_model = peft_model
    log.info("aligned (%s) on %d samples %s in %.1fs -> %s", method, len(examples), counts, secs, out_dir)
    return AlignResult(out_dir, method, len(examples), counts, loss_val, secs)
