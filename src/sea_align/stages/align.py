"""Stage 3 — safety alignment: LoRA on the language model, encoder and projector frozen.

Training samples (all chat-formatted by the model's adapter):
  SEA:        [P(E) in the media slot] + prefix ("The image shows a phrase of an activity.") +
              detoxified instruction  -> safe response
  text:       the original instruction (text only) -> safe response      (align.include_text)
  benign:     [P(E_benign)] + prefix + detoxified benign instruction -> helpful response
              (and its text form), so the model does not learn "refuse every image"
`--text-only` trains the textual-alignment baseline: the text samples alone, same data, same budget.
The examples are `records.Example`s; an embedding's template variants: examples.py. The loss, one class per
term (CE or DPO, retain KL, consistency KL): losses.py.
SFT by default; DPO when every harmful row has `rejected` (or align.method=dpo).
Crash safety: training runs in `ADAPTER.partial` with a checkpoint (LoRA weights + AdamW state,
safetensors) at every epoch end and at most every SEA_ALIGN_CKPT_SECONDS (default 60); a rerun
resumes from it with the same batch order (the loop: align_loop.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sea_align.config import AlignConfig
from sea_align.models.base import Item, ModelAdapter
from sea_align.runtime.distributed import Dist, dist_state, place, shard
from sea_align.runtime.io import DataError, atomic_write_json, set_default_modes
from sea_align.stages.adversary import Adversary, attack_goal
from sea_align.stages.align_loop import CKPT, Loop, fingerprint, resume, train
from sea_align.stages.examples import MediaItems, reading_item, reads, template_pool, typed, variants
from sea_align.stages.losses import StepLoss, build_terms
from sea_align.stages.modelcard import collect, write_card
from sea_align.stages.records import EXAMPLE_KINDS, HARMFUL_KINDS, Example, validate_prepared

log = logging.getLogger(__name__)


@dataclass
class AlignResult:
    out_dir: Path
    method: str
    n_train: int
    counts: dict[str, int]
    final_loss: float
    seconds: float


def build_training_set(
    rows: list[dict[str, Any]], emb_dir: str | Path | None, adapter: ModelAdapter, cfg: AlignConfig
) -> tuple[list[Example], dict[str, int], str | None]:
    """Training examples, counts per kind (+ rows without an embedding), and the modality used."""
    for key, value, low in (
        ("experimental.benign_repeat", cfg.experimental.benign_repeat, 1),
        ("templates", cfg.templates, 0),
    ):
        if value < low:
            raise DataError(f"align.{key}: {value} (must be >= {low})")
    rows = validate_prepared(rows, "align")
    if not cfg.text_only and not emb_dir:
        raise DataError("align: --embeddings is required unless --text-only")
    media = None if cfg.text_only else MediaItems(adapter, emb_dir)
    harmful = [r for r in rows if r.get("harmful", True)]
    benign = [r for r in rows if not r.get("harmful", True)]
    n_benign = len(benign) if cfg.benign < 0 else min(cfg.benign, len(benign))
    if not harmful:
        raise DataError("align: the prepared data has no harmful rows")
    pool = template_pool(rows)
    repeat = cfg.experimental.benign_repeat
    examples: list[Example] = []
    for r in harmful:
        it = media.item(r) if media else None
        if it is not None:
            rej = r.get("rejected")
            made = [Example(it, "sea", rej, typed=typed(r, it))] + variants(r, it, pool, cfg.templates, "sea", rej)
            goal = attack_goal(cfg, r)
            examples += [replace(e, goal=goal) for e in made] if goal else made
            if not r.get("form") and reads(r, cfg.reading):
                examples.append(Example(reading_item(r, it), "reading"))
        if not r.get("form") and (cfg.text_only or cfg.include_text):  # a whole/FigStep row's typed form: its base's
            examples.append(Example(Item(r["instruction"], target=r["response"]), "text", r.get("rejected")))
    for r in benign[:n_benign]:
        it = media.item(r) if media else None
        if it is not None:
            examples += [Example(it, "benign_media", typed=typed(r, it))] * repeat
            examples += variants(r, it, pool, cfg.templates, "benign", None)
        if not r.get("form"):
            examples += [Example(Item(r["instruction"], target=r["response"]), "benign_text")] * repeat
    counts = {k: sum(e.kind == k for e in examples) for k in EXAMPLE_KINDS}
    return examples, {**counts, "missing_embedding": media.missing if media else 0}, media.modality if media else None


def lora_model(adapter: ModelAdapter, cfg: AlignConfig):
    """Inject LoRA into the language model only (regex on module names keeps the towers out)."""
    from peft import LoraConfig, get_peft_model

    targets = "|".join(cfg.lora_targets)
    lm_name = next((n for n, m in adapter.model.named_modules() if m is adapter.language_model), "")
    import re

    pattern = (re.escape(lm_name) + r"\..*\.(" + targets + ")") if lm_name else (r".*\.(" + targets + ")")
    lcfg = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=pattern, bias="none"
    )
    peft_model = get_peft_model(adapter.model, lcfg)
    n_train = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if n_train == 0:
        raise DataError(f"align: no LoRA target matched {cfg.lora_targets} in the language model")
    return peft_model


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
    set_default_modes(tmp)  # PEFT's safetensors file is 0600 as written
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # the adapter directory appears whole or not at all


def _choose_method(method: str, examples: list[Example]) -> tuple[str, list[Example]]:
    """ "auto" -> dpo when every harmful example has a `rejected` response, else sft; dpo keeps only the
    examples that have one."""
    harmful = [e for e in examples if e.kind in HARMFUL_KINDS]
    if method == "auto":
        method = "dpo" if harmful and all(e.rejected for e in harmful) else "sft"
    if method == "dpo":
        examples = [e for e in examples if e.rejected]
        if not examples:
            raise DataError("align: method dpo needs rows with a 'rejected' response")
    return method, examples


@torch.no_grad()
def _dpo_reference(adapter: ModelAdapter, peft_model: Any, examples: list[Example]) -> list[Example]:
    """New examples carrying the summed log-probs of their chosen and rejected responses, adapter off."""
    out = []
    with peft_model.disable_adapter():
        for e in examples:
            it = e.item
            rej = Item(it.prompt, it.modality, it.mm, it.meta, target=e.rejected)
            lp = adapter.target_loss([it, rej], reduction="sum").neg().tolist()
            out.append(replace(e, ref_logps=(lp[0], lp[1])))
    return out


def run_align(
    adapter: ModelAdapter,
    rows: list[dict[str, Any]],
    emb_dir: str | Path | None,
    out_dir: str | Path,
    cfg: AlignConfig | None = None,
    progress: bool = True,
    base_model: str | None = None,
) -> AlignResult:
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
    peft_model, named, step_loss, opt, examples = _lora_training(adapter, cfg, method, examples, dist)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    fp = fingerprint(cfg, method, examples)
    done = _finished_before(tmp, out_dir, fp, dist)
    if done is not None:  # killed after training, before the rename
        return done
    start = resume(tmp, fp, named, opt, dist)
    desc = f"align[{method}{'/text-only' if cfg.text_only else ''}]"
    peft_model.train()
    loop = Loop(step_loss, opt, named, examples, cfg, dist, tmp, fp, _adversary(adapter, cfg, method, dist))
    step, loss_val = train(loop, start, desc, progress, out_dir)
    peft_model.eval()
    secs = time.perf_counter() - t0
    if dist.is_main:
        summary = {
            "method": method,
            "text_only": cfg.text_only,
            "modality": modality,
            "counts": counts,
            "n_train": len(examples),
            "steps": step,
            "final_loss": loss_val,
            "seconds": round(secs, 2),
            "resumed_at_step": start,
            "processes": dist.world,
            "fingerprint": fp,
            "config": dataclasses.asdict(cfg),
        }
        _publish(peft_model, tmp, out_dir, base_model, summary)
    dist.barrier()
    adapter.attach_peft(peft_model)
    log.info("aligned (%s) on %d samples %s in %.1fs -> %s", method, len(examples), counts, secs, out_dir)
    return AlignResult(out_dir, method, len(examples), counts, loss_val, secs)


def _lora_training(
    adapter: ModelAdapter, cfg: AlignConfig, method: str, examples: list[Example], dist: Dist
) -> tuple[Any, dict[str, torch.nn.Parameter], torch.nn.Module, torch.optim.Optimizer, list[Example]]:
    """The LoRA model (seeded), its trainable parameters by name, the step-loss module (sharded under FSDP),
    AdamW, and the examples (DPO's with their reference log-probs)."""
    torch.manual_seed(cfg.seed)
    peft_model = lora_model(adapter, cfg)
    named = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    if method == "dpo":
        examples = _dpo_reference(adapter, peft_model, examples)
    step_loss: torch.nn.Module = StepLoss(adapter, peft_model, build_terms(cfg, method))
    opt = torch.optim.AdamW(list(named.values()), lr=cfg.lr, weight_decay=0.0)
    if dist.fsdp:
        step_loss = shard(dist, step_loss, opt)
    return peft_model, named, step_loss, opt, examples


def _adversary(adapter: ModelAdapter, cfg: AlignConfig, method: str, dist: Dist) -> Adversary | None:
    """The attacker of `align.experimental.adversarial` (None when off or text-only)."""
    if cfg.experimental.adversarial <= 0 or cfg.text_only:
        return None
    if method != "sft":  # DPO's reference log-probs are of the clean embedding
        raise DataError(f"align.experimental.adversarial: works with method sft only, not {method}")
    if dist.fsdp:
        raise DataError("align.experimental.adversarial: not supported under FSDP (run it on one process or DDP)")
    return Adversary(adapter, cfg, cfg.seed)


def _finished_before(tmp: Path, out_dir: Path, fp: str, dist: Dist) -> AlignResult | None:
    """The result of a run with this fingerprint that trained and saved into `tmp` but was killed before
    the rename: publish it now. None when there is none."""
    summary = read_json_or_none(tmp / "train_summary.json") if (tmp / "adapter_config.json").is_file() else None
    if not summary or summary.get("fingerprint") != fp:
        return None
    dist.barrier()
    if dist.is_main:
        write_card(tmp, collect(tmp))
        (tmp / CKPT).unlink(missing_ok=True)  # killed before _publish removed it: never ship the checkpoint
        _finish(tmp, out_dir)
    dist.barrier()
    return AlignResult(
        out_dir, summary["method"], summary["n_train"], summary["counts"], summary["final_loss"], summary["seconds"]
    )


def _publish(peft_model: Any, tmp: Path, out_dir: Path, base_model: str | None, summary: dict[str, Any]) -> None:
    """The adapter and train_summary.json saved into `tmp`, the model card written, the checkpoint removed,
    then `tmp` renamed to `out_dir` (main process)."""
    _save_adapter(peft_model, tmp, base_model)
    atomic_write_json(tmp / "train_summary.json", summary)
    write_card(tmp, collect(tmp))  # replaces PEFT's blank template; `sea run` adds results after evaluation
    (tmp / CKPT).unlink(missing_ok=True)
    _finish(tmp, out_dir)
