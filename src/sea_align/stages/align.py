"""Stage 3 — safety alignment: LoRA on the language model, encoder and projector frozen.

Training samples (all chat-formatted by the model's adapter):
  SEA:        [P(E) in the media slot] + prefix ("The image shows a phrase of an activity.") +
              detoxified instruction  -> safe response
  text:       the original instruction (text only) -> safe response      (align.include_text)
  benign:     [P(E_benign)] + prefix + detoxified benign instruction -> helpful response
              (and its text form), so the model does not learn "refuse every image"
`--text-only` trains the textual-alignment baseline: the text samples alone, same data, same budget.
SFT by default; DPO when every harmful row has `rejected` (or align.method=dpo).
Crash safety: training runs in `ADAPTER.partial` with a checkpoint (LoRA weights + AdamW state,
safetensors) at every epoch end and at most every SEA_ALIGN_CKPT_SECONDS (default 60); a rerun
resumes from it with the same batch order.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sea_align.runtime.checkpoint import load_checkpoint, save_checkpoint
from sea_align.config import AlignConfig
from sea_align.runtime.distributed import Dist, dist_state, place, shard
from sea_align.runtime.faults import crash_point
from sea_align.runtime.io import DataError, append_jsonl, atomic_write_json, atomic_write_jsonl, last_per_key, read_jsonl_tolerant
from sea_align.report.modelcard import collect, write_card
from sea_align.models.base import BaseAdapter, Item
from sea_align.stages.synthesize import load_embeddings, to_llm
from sea_align.stages.templates import prefix
from sea_align.runtime.tracking import open_tracker

log = logging.getLogger(__name__)
CKPT = "checkpoint.safetensors"  # in ADAPTER.partial while training; not part of the finished adapter


@dataclass
class AlignResult:
    out_dir: Path
    method: str
    n_train: int
    counts: dict[str, int]
    final_loss: float
    seconds: float


EXAMPLE_KINDS = ("sea", "text", "benign_media", "benign_text", "replay_media", "sea_template", "benign_template",
                 "sea_view", "benign_view")


def build_training_set(rows: list[dict[str, Any]], emb_dir: str | Path | None, adapter: BaseAdapter,
                       cfg: AlignConfig) -> tuple[list[dict[str, Any]], dict[str, int], str | None]:
    """Training examples [{item, rejected?, kind}], counts per kind, and the modality used."""
    for key, low in (("benign_repeat", 1), ("replay", 0), ("templates", 0)):
        if getattr(cfg, key) < low:
            raise DataError(f"align.{key}: {getattr(cfg, key)} (must be >= {low})")
    examples: list[dict[str, Any]] = []
    missing = 0
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
    pool = template_pool(rows)
    view = text_viewer(adapter, modality, meta) if cfg.text_view and not cfg.text_only else None

    def media_item(r):
        nonlocal missing
        e = embs.get(r["id"])
        if e is None:
            missing += 1
            return None
        with torch.no_grad():
            mm = to_llm(adapter, modality, e[None].to(adapter.device), blank_meta, meta["space"])[0]
        # the whole-request form carries all of the request in the media and no text (Audio_only)
        text = "" if r.get("form") == "whole" else prefix(modality, r["phrase_type"]) + " " + r["detoxified"]
        return Item(text, modality, mm, blank_meta, target=r["response"])

    for r in harmful:
        if not cfg.text_only:
            it = media_item(r)
            if it is not None:
                examples.append({"item": it, "rejected": r.get("rejected"), "kind": "sea"})
                examples += _variants(r, it, pool, view, cfg.templates, "sea", r.get("rejected"))
        if r.get("form") == "whole":
            continue  # its typed form is the base row's
        if cfg.text_only or cfg.include_text:
            examples.append({"item": Item(r["instruction"], target=r["response"]), "rejected": r.get("rejected"),
                             "kind": "text"})
    for r in benign[:n_benign]:
        if not cfg.text_only:
            it = media_item(r)
            if it is not None:
                examples += [{"item": it, "rejected": None, "kind": "benign_media"}] * cfg.benign_repeat
                examples += [{"item": x, "rejected": None, "kind": "replay_media"}
                             for x in replay_items(r, it, cfg.replay)]
                examples += _variants(r, it, pool, view, cfg.templates, "benign", None)
        if r.get("form") == "whole":
            continue
        examples += [{"item": Item(r["instruction"], target=r["response"]), "rejected": None,
                      "kind": "benign_text"}] * cfg.benign_repeat
    counts = {k: sum(e["kind"] == k for e in examples) for k in EXAMPLE_KINDS}
    return examples, {**counts, "missing_embedding": missing}, modality


def _variants(row: dict[str, Any], media: Item, pool: dict[str, list[str]], view: Any, n: int, side: str,
              rejected: str | None) -> list[dict[str, Any]]:
    """The `<side>_template` and `<side>_view` examples of one embedding (side: sea | benign)."""
    out = [{"item": x, "rejected": rejected, "kind": f"{side}_template"} for x in template_items(row, media, pool, n)]
    if view and row.get("key_phrase"):
        out.append({"item": view(row, media), "rejected": rejected, "kind": f"{side}_view"})
    return out


def text_viewer(adapter: BaseAdapter, modality: str, meta: dict[str, Any]):
    """f(row, media item) -> the item with the row's key phrase written where the media goes instead of its
    embedding: synthesis' text init (its `init_text`, default the phrase) in the LLM's input space."""
    from sea_align.config import SynthesizeConfig, from_dict
    from sea_align.stages.synthesize import Synthesizer
    known = set(SynthesizeConfig.__dataclass_fields__)  # embeddings from an older version may have more keys
    scfg = from_dict(SynthesizeConfig, {k: v for k, v in meta.get("config", {}).items() if k in known},
                     "embeddings meta.json config.")
    init_text = scfg.init_text if "{phrase}" in scfg.init_text else "{phrase}"
    synth = Synthesizer(adapter, modality, replace(scfg, space="llm", init="text", init_text=init_text))

    def view(row: dict[str, Any], media: Item) -> Item:
        mm = synth.text_init([synth.init_text(row)])[0].to(media.mm.dtype)
        return Item(media.prompt, media.modality, mm, media.meta, target=media.target)
    return view


def template_pool(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The benign rows' request templates (their `detoxified` text) by phrase type, sorted and unique; a
    harmful row's template may carry harm of its own ("... without leaving evidence"), so it never enters."""
    pool: dict[str, set[str]] = {}
    for r in rows:
        if not r.get("harmful", True) and r.get("form") != "whole" and r.get("detoxified"):
            pool.setdefault(r["phrase_type"], set()).add(r["detoxified"])
    return {k: sorted(v) for k, v in pool.items()}


def template_items(row: dict[str, Any], media: Item, pool: dict[str, list[str]], n: int) -> list[Item]:
    """`media` (the row's embedding and target) asked under `n` other templates of its phrase type, chosen by
    the row id: harmful and benign embeddings then share every template, so only the media tells them apart."""
    if n <= 0 or row.get("form") == "whole":
        return []
    options = [t for t in pool.get(row["phrase_type"], []) if t != row["detoxified"]]
    ranked = sorted(options, key=lambda t: hashlib.sha256(f"{row['id']}:{t}".encode()).hexdigest())
    head = prefix(media.modality, row["phrase_type"]) + " "
    return [Item(head + t, media.modality, media.mm, media.meta, target=media.target) for t in ranked[:n]]


def replay_items(row: dict[str, Any], media: Item, n: int) -> list[Item]:
    """The first `n` auxiliary pairs of a benign row, asked about its synthetic embedding `media`: the
    answers synthesis optimised the embedding to get from the frozen model, so training on them keeps the
    model's own behaviour on questions about the media (capability replay, self-distilled by construction)."""
    pairs = (row.get("aux") or {}).get(media.modality) or []
    return [Item(p["prompt"], media.modality, media.mm, media.meta, target=p["target"]) for p in pairs[:n]]


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


RETAIN_KINDS = ("benign_media", "benign_text", "replay_media", "benign_template", "benign_view")


def retain_kl(adapter: BaseAdapter, peft_model: Any, items: list[Item]) -> torch.Tensor:
    """Per-item KL(base || aligned) over the answer tokens, mean over each item's tokens [k]: the base
    distribution comes from the same model with the LoRA switched off (no gradient)."""
    with torch.no_grad(), peft_model.disable_adapter():
        ref, _, _ = adapter.target_logits(items)
    logits, _, rows = adapter.target_logits(items)
    kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(ref, -1), log_target=True, reduction="none").sum(-1)
    total = torch.zeros(len(items), device=kl.device, dtype=kl.dtype).index_add(0, rows, kl)
    count = torch.zeros(len(items), device=kl.device, dtype=kl.dtype).index_add(0, rows, torch.ones_like(kl))
    return total / count.clamp(min=1)


def _item_losses(adapter, batch, method, beta, ref, retain: float = 0.0, peft_model: Any = None) -> torch.Tensor:
    """Per-example loss [k]: mean target CE (SFT) or the DPO loss, plus `retain` x KL(base || aligned)
    on benign examples' answers. DPO scores chosen and rejected in one forward pass (one pass per step
    also keeps gradient hooks simple under data parallelism)."""
    if method != "dpo":
        losses = adapter.target_loss([b["item"] for b in batch])
        keep = [i for i, b in enumerate(batch) if b["kind"] in RETAIN_KINDS]
        if retain > 0 and keep and peft_model is not None:
            kl = retain_kl(adapter, peft_model, [batch[i]["item"] for i in keep])
            idx = torch.tensor(keep, device=losses.device)
            losses = losses.index_add(0, idx, retain * kl.to(losses.dtype))
        return losses
    chosen = [b["item"] for b in batch]
    rejected = [Item(b["item"].prompt, b["item"].modality, b["item"].mm, b["item"].meta, target=b["rejected"])
                for b in batch]
    lp = adapter.target_loss(chosen + rejected, reduction="sum").neg()
    pc, pr = lp[:len(batch)], lp[len(batch):]
    rc = torch.tensor([ref[b["_i"]][0] for b in batch], device=pc.device)
    rr = torch.tensor([ref[b["_i"]][1] for b in batch], device=pc.device)
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


class StepLoss(torch.nn.Module):
    """A training step's per-example losses as ONE module forward (embedding lookup, decoder, lm_head at
    the target positions, loss). FSDP gathers the weights it shards only inside the forward of a module
    it wraps, and the adapter calls those three parts separately; sharding this module covers them all.
    Without FSDP, calling it is calling `_item_losses`."""

    def __init__(self, adapter: BaseAdapter, peft_model: torch.nn.Module, method: str, beta: float,
                 ref: dict[int, tuple[float, float]], retain: float = 0.0):
        super().__init__()
        self.peft_model = peft_model  # the only submodule: the whole (LoRA-injected) model
        present = {type(m).__name__ for m in peft_model.modules()}  # HF lists classes a model may not have
        self._no_split_modules = sorted(present & set(getattr(adapter.model, "_no_split_modules", None) or ()))
        self.__dict__["adapter"] = adapter  # plain attribute, not registered
        self.method, self.beta, self.ref, self.retain = method, beta, ref, retain

    def forward(self, batch: list[dict[str, Any]]) -> torch.Tensor:
        return _item_losses(self.adapter, batch, self.method, self.beta, self.ref, self.retain, self.peft_model)


def _fingerprint(cfg: AlignConfig, method: str, examples: list[dict[str, Any]]) -> str:
    """What a checkpoint must match to be resumed: the config, the method and the training set."""
    h = hashlib.sha256(json.dumps([cfg.__dict__, method], sort_keys=True, default=str).encode())
    for e in examples:
        it = e["item"]
        h.update(f"{e['kind']}|{it.prompt}|{it.target}|{e['rejected']}".encode())
        if it.mm is not None:  # a cheap summary of the projected embedding, not its bytes
            mm = it.mm.detach().float()
            h.update(f"{tuple(mm.shape)}|{float(mm.sum()):.4f}|{float(mm.abs().sum()):.4f}".encode())
    return h.hexdigest()[:16]


def _resume(tmp: Path, fp: str, params, opt) -> int:
    """Steps already done according to `tmp`'s checkpoint (0 = start fresh: `tmp` is emptied)."""
    ckpt = tmp / CKPT
    if ckpt.is_file():
        try:
            info = load_checkpoint(ckpt, params, opt)
        except Exception as e:  # damaged or from another version: train from scratch
            log.warning("align: ignoring checkpoint %s (%s)", ckpt, type(e).__name__)
            info = {}
        if info.get("fingerprint") == fp:
            rows = [r for r in read_jsonl_tolerant(tmp / "metrics.jsonl") if r.get("step", 0) <= info["step"]]
            atomic_write_jsonl(tmp / "metrics.jsonl", last_per_key(rows, "step"))
            log.info("align: resuming at step %d from %s", info["step"], ckpt)
            return int(info["step"])
        log.warning("align: %s is from another config or data set; starting over", ckpt)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return 0


def _ckpt_seconds() -> float:
    """Seconds between checkpoints (also one at every epoch end). SEA_ALIGN_CKPT_SECONDS overrides."""
    try:
        return float(os.environ.get("SEA_ALIGN_CKPT_SECONDS", "60"))
    except ValueError:
        raise DataError("SEA_ALIGN_CKPT_SECONDS must be a number of seconds") from None


def _sync_grads(dist: Dist, params: list[torch.nn.Parameter]) -> None:
    """Data parallel: average the LoRA gradients over processes in one flat all-reduce."""
    if dist.world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = dist.all_sum(torch.cat([g.reshape(-1) for g in grads])) / dist.world
    i = 0
    for p, g in zip(params, grads):
        p.grad = flat[i:i + g.numel()].view_as(g).to(g.dtype)
        i += g.numel()


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _save_adapter(peft_model: Any, out: Path, base_model: str | None) -> None:
    """PEFT's adapter files, with `base_model_name_or_path` = the name the base model loads by (PEFT
    writes the in-memory model's, null for the built-ins). Set after saving: given to PEFT, a name that is
    no hub id (sea-tiny-vl) sends PEFT looking it up on the hub."""
    peft_model.save_pretrained(str(out))
    if base_model:
        path = out / "adapter_config.json"
        atomic_write_json(path, {**json.loads(path.read_text()), "base_model_name_or_path": base_model})


def _finish(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # the adapter directory appears whole or not at all


def _choose_method(method: str, examples: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """"auto" -> dpo when every harmful example has a `rejected` response, else sft; dpo keeps only the
    examples that have one."""
    harmful = [e for e in examples if e["kind"] in ("sea", "sea_template", "sea_view", "text")]
    if method == "auto":
        method = "dpo" if harmful and all(e["rejected"] for e in harmful) else "sft"
    if method == "dpo":
        examples = [e for e in examples if e["rejected"]]
        if not examples:
            raise DataError("align: method dpo needs rows with a 'rejected' response")
    return method, examples


@torch.no_grad()
def _dpo_reference(adapter: BaseAdapter, peft_model: Any,
                   examples: list[dict[str, Any]]) -> dict[int, tuple[float, float]]:
    """Per example (by `_i`): the summed log-probs of its chosen and rejected responses, adapter off."""
    ref = {}
    with peft_model.disable_adapter():
        for e in examples:
            it = e["item"]
            rej = Item(it.prompt, it.modality, it.mm, it.meta, target=e["rejected"])
            lp = adapter.target_loss([it, rej], reduction="sum").neg().tolist()
            ref[e["_i"]] = (lp[0], lp[1])
    return ref


def _scalar(x: torch.Tensor) -> float:
    """A 0-d tensor's value; under FSDP the gradient norm is a DTensor (gathered first)."""
    return float(x.full_tensor() if hasattr(x, "full_tensor") else x)


def _log_step(tmp: Path, tracker: Any, row: dict[str, Any]) -> None:
    """One step's metrics: a row of metrics.jsonl and, with a tracker, its scalars."""
    append_jsonl(tmp / "metrics.jsonl", row)
    if tracker is not None:
        tracker.log({k: row[k] for k in ("loss", "lr", "grad_norm")}, step=row["step"])


def _train(step_loss: torch.nn.Module, opt: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter],
           examples: list[dict[str, Any]], cfg: AlignConfig, dist: Dist, tmp: Path, fp: str, start: int, desc: str,
           progress: bool, tracker: Any = None) -> tuple[int, float]:
    """All epochs' steps after `start` (a resume skips the steps done but draws the same batch order), the
    gradients averaged over processes; the main process logs metrics (loss, lr, the gradient norm before
    clipping to 1.0) and checkpoints. -> (step, last loss)."""
    params = list(named.values())
    n_batches = (len(examples) + cfg.batch_size - 1) // cfg.batch_size
    rng = random.Random(cfg.seed)
    every, last_ckpt = _ckpt_seconds(), time.perf_counter()
    step, loss_val = 0, float("nan")
    with tqdm(total=cfg.epochs * n_batches, initial=start, disable=not progress or not dist.is_main, unit="step",
              desc=desc) as bar:
        for epoch in range(cfg.epochs):
            order = list(range(len(examples)))
            rng.shuffle(order)  # drawn for every epoch, also skipped ones, so a resume sees the same order
            for b in range(n_batches):
                if step < start:
                    step += 1
                    continue
                batch = [examples[i] for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
                share = dist.share(batch)
                # a process with no example this step still runs one, weighted 0, to keep the collectives aligned
                w = torch.ones(len(share)) if share else torch.zeros(1)
                losses = step_loss(share or batch[:1])
                local = (losses * w.to(losses.device)).sum()
                opt.zero_grad(set_to_none=True)
                (local / len(batch) * dist.world).backward()  # / world undone by the gradient average
                _sync_grads(dist, params)
                grad_norm = _scalar(torch.nn.utils.clip_grad_norm_(params, 1.0))
                opt.step()
                step += 1
                loss_val = float(dist.all_sum(local.detach().float().cpu()[None])[0]) / len(batch)
                if dist.is_main:
                    _log_step(tmp, tracker, {"step": step, "epoch": epoch, "loss": round(loss_val, 5),
                                             "lr": opt.param_groups[0]["lr"], "grad_norm": round(grad_norm, 5),
                                             "kinds": sorted({e["kind"] for e in batch})})
                    crash_point("align.step")
                    if b == n_batches - 1 or time.perf_counter() - last_ckpt >= every:
                        save_checkpoint(tmp / CKPT, named, opt, {"step": step, "fingerprint": fp})
                        last_ckpt = time.perf_counter()
                bar.set_postfix(loss=f"{loss_val:.3f}")
                bar.update(1)
    return step, loss_val


def run_align(adapter: BaseAdapter, rows: list[dict[str, Any]], emb_dir: str | Path | None, out_dir: str | Path,
              cfg: AlignConfig | None = None, progress: bool = True, base_model: str | None = None) -> AlignResult:
    """Train the LoRA adapter into `out_dir`.partial (checkpointed: a rerun resumes), then rename.
    `base_model` (the name the model was loaded by) goes into adapter_config.json and the README.

    Under `accelerate launch` every process runs the same global batch order; each computes the loss of
    its share of each batch (every world-th example) and the gradients are averaged, so the loss curve
    is the one-process curve up to floating-point order. Only the main process writes files."""
    cfg = cfg or AlignConfig()
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    dist = dist_state()
    if not dist.fsdp:  # under FSDP the model stays where it was loaded; `shard` places each process's part
        place(adapter, dist)
    examples, counts, modality = build_training_set(rows, emb_dir, adapter, cfg)
    method, examples = _choose_method(cfg.method, examples)
    for i, e in enumerate(examples):
        e["_i"] = i
    torch.manual_seed(cfg.seed)
    peft_model = lora_model(adapter, cfg)
    named = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    params = list(named.values())
    ref = _dpo_reference(adapter, peft_model, examples) if method == "dpo" else {}
    step_loss: torch.nn.Module = StepLoss(adapter, peft_model, method, cfg.dpo_beta, ref, cfg.retain)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    if dist.fsdp:
        step_loss = shard(dist, step_loss, opt)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    fp = _fingerprint(cfg, method, examples)
    summary = read_json_or_none(tmp / "train_summary.json") if (tmp / "adapter_config.json").is_file() else None
    if summary and summary.get("fingerprint") == fp:  # killed after training, before the rename
        dist.barrier()
        if dist.is_main:
            write_card(tmp, collect(tmp))
            _finish(tmp, out_dir)
        dist.barrier()
        return AlignResult(out_dir, summary["method"], summary["n_train"], summary["counts"],
                           summary["final_loss"], summary["seconds"])
    start = _resume(tmp, fp, named, opt) if dist.is_main else 0
    start = int(dist.all_sum(torch.tensor([start])).item())
    if dist.world > 1 and not dist.is_main and start:
        load_checkpoint(tmp / CKPT, named, opt)
    tracker = open_tracker(cfg.report_to, out_dir, cfg.__dict__) if dist.is_main else None
    peft_model.train()
    try:
        step, loss_val = _train(step_loss, opt, named, examples, cfg, dist, tmp, fp, start,
                                f"align[{method}{'/text-only' if cfg.text_only else ''}]", progress, tracker)
    finally:
        if tracker is not None:
            tracker.finish()
    peft_model.eval()
    secs = time.perf_counter() - t0
    if dist.is_main:
        if start and step == start:  # nothing left to train: the loss is the last logged one
            logged = read_jsonl_tolerant(tmp / "metrics.jsonl")
            loss_val = logged[-1]["loss"] if logged else loss_val
        _save_adapter(peft_model, tmp, base_model)
        atomic_write_json(tmp / "train_summary.json", {
            "method": method, "text_only": cfg.text_only, "modality": modality, "counts": counts,
            "n_train": len(examples), "steps": step, "final_loss": loss_val, "seconds": round(secs, 2),
            "resumed_at_step": start, "processes": dist.world, "fingerprint": fp, "config": cfg.__dict__})
        write_card(tmp, collect(tmp))  # replaces PEFT's blank template; `sea run` adds results after evaluation
        (tmp / CKPT).unlink(missing_ok=True)
        _finish(tmp, out_dir)
    dist.barrier()
    adapter.peft_model = peft_model
    log.info("aligned (%s) on %d samples %s in %.1fs -> %s", method, len(examples), counts, secs, out_dir)
    return AlignResult(out_dir, method, len(examples), counts, loss_val, secs)
