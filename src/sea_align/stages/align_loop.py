"""Stage 3's training loop (align.py), crash-safe and data parallel.

Every process draws the same seeded batch order and computes the loss of its share of each batch; the
LoRA gradients are averaged over processes. The main process logs each step to metrics.jsonl (and a
tracker) and checkpoints the LoRA weights + AdamW state (safetensors) into ADAPTER.partial at every
epoch end and at most every SEA_ALIGN_CKPT_SECONDS (default 60); a rerun resumes with the same order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sea_align.config import AlignConfig
from sea_align.runtime.checkpoint import load_checkpoint, save_checkpoint
from sea_align.runtime.distributed import Dist
from sea_align.runtime.faults import crash_point
from sea_align.runtime.io import DataError, append_jsonl, atomic_write_jsonl, last_per_key, read_jsonl_tolerant
from sea_align.runtime.tracking import open_tracker
from sea_align.stages.records import Example

log = logging.getLogger(__name__)
CKPT = "checkpoint.safetensors"  # in ADAPTER.partial while training; not part of the finished adapter


def fingerprint(cfg: AlignConfig, method: str, examples: list[Example]) -> str:
    """What a checkpoint must match to be resumed: the config, the method and the training set."""
    h = hashlib.sha256(json.dumps([dataclasses.asdict(cfg), method], sort_keys=True, default=str).encode())
    for e in examples:
        it = e.item
        h.update(f"{e.kind}|{it.prompt}|{it.target}|{e.rejected}".encode())
        if it.mm is not None:  # a cheap summary of the projected embedding, not its bytes
            mm = it.mm.detach().float()
            h.update(f"{tuple(mm.shape)}|{float(mm.sum()):.4f}|{float(mm.abs().sum()):.4f}".encode())
    return h.hexdigest()[:16]


def resume(tmp: Path, fp: str, named: dict[str, torch.nn.Parameter], opt: torch.optim.Optimizer, dist: Dist) -> int:
    """Steps already done, the same on every process: the main process reads `tmp`'s checkpoint (or
    empties `tmp`), the others then load the same checkpoint."""
    start = _resume_main(tmp, fp, named, opt) if dist.is_main else 0
    start = int(dist.all_sum(torch.tensor([start])).item())
    if dist.world > 1 and not dist.is_main and start:
        load_checkpoint(tmp / CKPT, named, opt)
    return start


def _resume_main(tmp: Path, fp: str, params, opt) -> int:
    """Steps already done according to `tmp`'s checkpoint (0 = start fresh: `tmp` is emptied)."""
    ckpt = tmp / CKPT
    if ckpt.is_file():
        try:
            info = load_checkpoint(ckpt, params, opt, fingerprint=fp)  # loads nothing unless fp matches
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
        p.grad = flat[i : i + g.numel()].view_as(g).to(g.dtype)
        i += g.numel()


def _scalar(x: torch.Tensor) -> float:
    """A 0-d tensor's value; under FSDP the gradient norm is a DTensor (gathered first)."""
    return float(x.full_tensor() if hasattr(x, "full_tensor") else x)


def _step(
    step_loss: torch.nn.Module,
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    batch: list[Example],
    dist: Dist,
    adversary: Any = None,
    step: int = 0,
) -> tuple[float, float]:
    """One optimiser step on `batch`, this process computing its share (attacked first by `adversary`,
    when given: adversary.py) -> (the batch's mean loss over all processes, the gradient norm before
    clipping to 1.0)."""
    share = dist.share(batch)
    if adversary is not None and share:
        share = adversary(share, step)
    # a process with no example this step still runs one, weighted 0, to keep the collectives aligned
    w = torch.ones(len(share)) if share else torch.zeros(1)
    losses = step_loss(share or batch[:1])
    local = (losses * w.to(losses.device)).sum()
    opt.zero_grad(set_to_none=True)
    (local / len(batch) * dist.world).backward()  # / world undone by the gradient average
    _sync_grads(dist, params)
    grad_norm = _scalar(torch.nn.utils.clip_grad_norm_(params, 1.0))
    opt.step()
    return float(dist.all_sum(local.detach().float().cpu()[None])[0]) / len(batch), grad_norm


def _log_step(tmp: Path, tracker: Any, row: dict[str, Any]) -> None:
    """One step's metrics: a row of metrics.jsonl and, with a tracker, its scalars."""
    append_jsonl(tmp / "metrics.jsonl", row)
    if tracker is not None:
        tracker.log({k: row[k] for k in ("loss", "lr", "grad_norm")}, step=row["step"])


@dataclass
class Loop:
    """What the training loop works with: the step-loss module, AdamW, the LoRA parameters by name, the
    training set, the config, the processes, the checkpoint folder (ADAPTER.partial) and the fingerprint."""

    step_loss: torch.nn.Module
    opt: torch.optim.Optimizer
    named: dict[str, torch.nn.Parameter]
    examples: list[Example]
    cfg: AlignConfig
    dist: Dist
    tmp: Path
    fp: str
    adversary: Any = None  # align.experimental.adversarial: attacks examples before each step (adversary.py)


def train(loop: Loop, start: int, desc: str, progress: bool, tracker_dir: Path) -> tuple[int, float]:
    """All epochs' steps after `start`, with the tracker `cfg.report_to` (for the adapter `tracker_dir`)
    open on the main process -> (step, last loss; after a resume with nothing left, the last logged one)."""
    cfg, dist = loop.cfg, loop.dist
    tracker = open_tracker(cfg.report_to, tracker_dir, dataclasses.asdict(cfg)) if dist.is_main else None
    try:
        step, loss_val = _epochs(loop, start, desc, progress, tracker)
    finally:
        if tracker is not None:
            tracker.finish()
    if dist.is_main and start and step == start:  # nothing left to train: the loss is the last logged one
        logged = read_jsonl_tolerant(loop.tmp / "metrics.jsonl")
        loss_val = logged[-1]["loss"] if logged else loss_val
    return step, loss_val


def _epochs(loop: Loop, start: int, desc: str, progress: bool, tracker: Any) -> tuple[int, float]:
    """The steps after `start` (a resume skips the steps done but draws the same batch order); the main
    process logs metrics (loss, lr, gradient norm) and checkpoints. -> (step, last loss)."""
    cfg, dist, examples, opt = loop.cfg, loop.dist, loop.examples, loop.opt
    params = list(loop.named.values())
    n_batches = (len(examples) + cfg.batch_size - 1) // cfg.batch_size
    rng = random.Random(cfg.seed)
    every, last_ckpt = _ckpt_seconds(), time.perf_counter()
    step, loss_val = 0, float("nan")
    show = progress and dist.is_main
    with tqdm(total=cfg.epochs * n_batches, initial=start, disable=not show, unit="step", desc=desc) as bar:
        for epoch in range(cfg.epochs):
            order = list(range(len(examples)))
            rng.shuffle(order)  # drawn for every epoch, also skipped ones, so a resume sees the same order
            for b in range(n_batches):
                if step < start:
                    step += 1
                    continue
                batch = [examples[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
                loss_val, grad_norm = _step(loop.step_loss, opt, params, batch, dist, loop.adversary, step)
                step += 1
                if dist.is_main:
                    row = {
                        "step": step,
                        "epoch": epoch,
                        "loss": round(loss_val, 5),
                        "lr": opt.param_groups[0]["lr"],
                        "grad_norm": round(grad_norm, 5),
                        "kinds": sorted({e.kind for e in batch}),
                        **(loop.adversary.last if loop.adversary is not None else {}),
                    }
                    _log_step(loop.tmp, tracker, row)
                    crash_point("align.step")
                    if b == n_batches - 1 or time.perf_counter() - last_ckpt >= every:
                        save_checkpoint(loop.tmp / CKPT, loop.named, opt, {"step": step, "fingerprint": loop.fp})
                        last_ckpt = time.perf_counter()
                bar.set_postfix(loss=f"{loss_val:.3f}")
                bar.update(1)
    return step, loss_val
