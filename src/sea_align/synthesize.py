"""Stage 2 — embedding optimisation.

For every prepared sample, E (the shape of one blank item's encoder output) starts from that blank
output and is optimised by Adam on L(E) = mean over the sample's auxiliary pairs of CE(target |
prompt, project(E)), with the whole model frozen. Samples are optimised in a batch; each one stops on
its own as soon as greedy decoding reproduces all of its targets (read off the teacher-forced pass) or
at the step cap, then leaves the batch and a waiting sample takes its place. Finished embeddings are
verified with held-out probe questions and flushed to a safetensors shard plus `index.jsonl`.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .config import SynthesizeConfig
from .io import DataError, append_jsonl, atomic_path, atomic_write_json, read_jsonl_tolerant
from .models.base import BaseAdapter, Item
from .templates import PROBE_Q
from .textmatch import contains_phrase

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One sample in the active batch."""
    row: dict[str, Any]
    pairs: list[dict[str, str]]
    steps: int = 0
    seconds: float = 0.0
    loss: float = math.inf
    losses: list[float] = field(default_factory=list)
    converged: bool = False
    retries: int = 0


@dataclass
class SynthResult:
    out_dir: Path
    n: int
    n_done_before: int
    n_verified: int
    n_failed: int
    seconds: float


def blank_features(adapter: BaseAdapter, modality: str, cfg: SynthesizeConfig):
    return adapter.blank(modality, size=cfg.blank_size, frames=cfg.blank_frames, seconds=cfg.blank_seconds)


def to_llm(adapter: BaseAdapter, modality: str, E: torch.Tensor, meta: dict, space: str) -> torch.Tensor:
    """[b, n, d] in `space` -> [b, n', d_llm]."""
    E = E.to(adapter.dtype)
    return adapter.project(modality, E, meta) if space == "encoder" else E


class Synthesizer:
    """Batched, early-stopping embedding optimiser. `optimise(rows)` yields finished slots."""

    def __init__(self, adapter: BaseAdapter, modality: str, cfg: SynthesizeConfig):
        adapter.check_modality(modality)
        self.a, self.modality, self.cfg = adapter, modality, cfg
        feats = blank_features(adapter, modality, cfg)
        self.meta = feats.meta
        x0 = feats.x.float()
        if cfg.space == "llm":
            with torch.no_grad():
                x0 = adapter.project(modality, x0[None].to(adapter.dtype), feats.meta)[0].float()
        self.x0 = x0.to(adapter.device)  # [n, d] blank init
        self.scale = float(self.x0.pow(2).mean().sqrt().clamp(min=1e-3))  # Adam step size is relative to E's RMS
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    def _init(self, retry: int) -> torch.Tensor:
        if retry == 0:
            return self.x0.clone()
        noise = torch.randn(self.x0.shape, generator=self.gen) * 0.01 * self.scale
        return self.x0 + noise.to(self.x0.device)

    def loss_and_match(self, E: torch.Tensor, slots: list[_Slot]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample mean CE over its pairs [B] and 'all pairs reproduced' [B]."""
        mm = to_llm(self.a, self.modality, E, self.meta, self.cfg.space)
        items, owner = [], []
        for i, s in enumerate(slots):
            for p in s.pairs:
                items.append(Item(p["prompt"], self.modality, mm[i], self.meta, target=p["target"]))
                owner.append(i)
        ce, match = self.a.target_stats(items)
        owner_t = torch.tensor(owner, device=ce.device)
        n = torch.zeros(len(slots), device=ce.device).index_add(0, owner_t, torch.ones_like(ce))
        loss = torch.zeros(len(slots), device=ce.device, dtype=ce.dtype).index_add(0, owner_t, ce) / n
        miss = torch.zeros(len(slots), device=ce.device).index_add(0, owner_t, (~match).float())
        return loss, miss == 0

    def optimise(self, rows: list[dict[str, Any]], bar: tqdm | None = None):
        """Generator of (slot, E[n, d] cpu float32) as samples finish."""
        cfg = self.cfg
        waiting = list(rows)
        slots: list[_Slot] = []
        E = self.x0.new_zeros((0, *self.x0.shape))
        m, v = torch.zeros_like(E), torch.zeros_like(E)
        t = torch.zeros(0, device=E.device)
        b1, b2, eps, lr = 0.9, 0.999, 1e-8, cfg.lr * self.scale
        while waiting or slots:
            while waiting and len(slots) < cfg.batch_size:  # refill
                row = waiting.pop(0)
                slots.append(_Slot(row, row["aux"][self.modality]))
                E = torch.cat([E, self._init(0)[None]])
                m, v = torch.cat([m, torch.zeros_like(E[:1])]), torch.cat([v, torch.zeros_like(E[:1])])
                t = torch.cat([t, t.new_zeros(1)])
            t0 = time.perf_counter()
            E.requires_grad_(True)
            loss, match = self.loss_and_match(E, slots)
            finite = torch.isfinite(loss)
            torch.where(finite, loss, torch.zeros_like(loss)).sum().backward()
            with torch.no_grad():
                g = torch.nan_to_num(E.grad.float(), nan=0.0, posinf=0.0, neginf=0.0)
                E = E.detach()
                t += 1
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                mhat = m / (1 - b1 ** t)[:, None, None]
                vhat = v / (1 - b2 ** t)[:, None, None]
                step = lr * mhat / (vhat.sqrt() + eps)
                # a sample whose targets are already reproduced keeps its current E (it is leaving)
                keep = (match & finite)[:, None, None]
                E = torch.where(keep, E, E - step)
            dt = (time.perf_counter() - t0) / max(1, len(slots))
            leave = []
            for i, s in enumerate(slots):
                s.seconds += dt
                s.loss = float(loss[i].detach())
                s.losses.append(round(s.loss, 5))
                if not bool(finite[i]):  # numerical fault: restart this sample from a perturbed init
                    s.retries += 1
                    if s.retries > 2:
                        s.loss = float("nan")
                        leave.append(i)
                        continue
                    E[i] = self._init(s.retries)
                    m[i].zero_(), v[i].zero_()
                    t[i] = 0
                    continue
                if bool(match[i]) and s.loss <= cfg.stop_loss:
                    s.converged = True
                    leave.append(i)
                    continue
                s.steps += 1
                if s.steps >= cfg.max_steps:
                    leave.append(i)
            if bar is not None:
                bar.set_postfix(active=len(slots), loss=f"{float(loss.detach().mean()):.3f}")
            for i in sorted(leave, reverse=True):
                yield slots[i], E[i].detach().float().cpu().clone()
                del slots[i]
                keep_idx = [j for j in range(E.shape[0]) if j != i]
                E, m, v, t = E[keep_idx], m[keep_idx], v[keep_idx], t[keep_idx]

    @torch.no_grad()
    def verify(self, finished: list[tuple[_Slot, torch.Tensor]], max_new_tokens: int) -> list[list[str]]:
        """Greedy answers to the held-out probe questions, per sample."""
        if not finished:
            return []
        E = torch.stack([e for _, e in finished]).to(self.a.device)
        mm = to_llm(self.a, self.modality, E, self.meta, self.cfg.space)
        items = [Item(q, self.modality, mm[i], self.meta) for i in range(len(finished)) for q in PROBE_Q[self.modality]]
        answers = self.a.generate(items, max_new_tokens=max_new_tokens)
        k = len(PROBE_Q[self.modality])
        return [answers[i * k:(i + 1) * k] for i in range(len(finished))]


def load_index(emb_dir: Path) -> list[dict[str, Any]]:
    """Index rows whose shard exists (a row pointing at a missing shard is dropped: it will be redone)."""
    rows = read_jsonl_tolerant(emb_dir / "index.jsonl")
    return [r for r in rows if (emb_dir / r.get("shard", "")).is_file()]


def load_embeddings(emb_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor]]:
    """(meta, index rows, {id: E}) of a finished embeddings directory."""
    emb_dir = Path(emb_dir)
    if not (emb_dir / "meta.json").is_file():
        raise DataError(f"{emb_dir}: not an embeddings directory (no meta.json)")
    import json
    meta = json.loads((emb_dir / "meta.json").read_text())
    index = load_index(emb_dir)
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted({r["shard"] for r in index}):
        tensors.update(load_file(str(emb_dir / shard)))
    return meta, index, {r["id"]: tensors[r["key"]] for r in index if r["key"] in tensors}


def run_synthesize(adapter: BaseAdapter, rows: list[dict[str, Any]], out_dir: str | Path, modality: str,
                   cfg: SynthesizeConfig | None = None, model_name: str = "", flush_every: int = 4,
                   progress: bool = True) -> SynthResult:
    cfg = cfg or SynthesizeConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not rows:
        raise DataError("synthesize: no prepared samples")
    for r in rows:
        if "aux" not in r or modality not in r["aux"]:
            raise DataError(f"synthesize: prepared row '{r.get('id')}' has no auxiliary pairs for {modality} "
                            "(re-run `sea prepare`)")
    synth = Synthesizer(adapter, modality, cfg)
    meta = {"model": model_name, "family": adapter.family, "modality": modality, "space": cfg.space,
            "shape": list(synth.x0.shape), "blank_meta": {k: list(v) if isinstance(v, tuple) else v
                                                          for k, v in synth.meta.items()},
            "init": "blank", "config": cfg.__dict__}
    meta_path = out_dir / "meta.json"
    if meta_path.is_file():
        import json
        old = json.loads(meta_path.read_text())
        for k in ("modality", "space", "shape"):
            if old.get(k) != meta[k]:
                raise DataError(f"{out_dir}: existing embeddings have {k}={old.get(k)}, this run wants {meta[k]}; "
                                "use another --out")
    atomic_write_json(meta_path, meta)
    done = {r["id"] for r in load_index(out_dir)}
    todo = [r for r in rows if r["id"] not in done]
    n_shards = len(list(out_dir.glob("emb-*.safetensors")))
    t_start = time.perf_counter()
    finished: list[tuple[_Slot, torch.Tensor]] = []
    n_ver = n_fail = 0

    def flush():
        nonlocal n_shards, n_ver, n_fail, finished
        if not finished:
            return
        answers = synth.verify(finished, cfg.probe_max_new_tokens)
        shard = f"emb-{n_shards:05d}.safetensors"
        n_shards += 1
        tensors = {f"e{n_shards - 1}_{i}": e.contiguous() for i, (_, e) in enumerate(finished)}
        with atomic_path(out_dir / shard) as tmp:  # the shard lands whole before its index rows
            save_file(tensors, str(tmp), metadata={"modality": modality, "space": cfg.space})
        for i, ((s, _), ans) in enumerate(zip(finished, answers)):
            failed = not math.isfinite(s.loss)
            ok = (not failed) and any(contains_phrase(s.row["key_phrase"], a) for a in ans)
            n_ver += ok
            n_fail += failed
            append_jsonl(out_dir / "index.jsonl", {
                "id": s.row["id"], "phrase": s.row["key_phrase"], "harmful": s.row.get("harmful", True),
                "verified": ok, "probe_answers": ans, "loss": None if failed else round(s.loss, 5),
                "steps": s.steps, "seconds": round(s.seconds, 4), "converged": s.converged, "failed": failed,
                "retries": s.retries, "shard": shard, "key": f"e{n_shards - 1}_{i}", "loss_curve": s.losses})
        finished = []

    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"synthesize[{modality}]",
              disable=not progress, unit="emb") as bar:
        for slot, E in synth.optimise(todo, bar):
            finished.append((slot, E))
            bar.update(1)
            if len(finished) >= flush_every:
                flush()
        flush()
    secs = time.perf_counter() - t_start
    log.info("synthesized %d embeddings (%d verified, %d failed) in %.1fs", len(todo), n_ver, n_fail, secs)
    return SynthResult(out_dir, len(rows), len(done), n_ver, n_fail, secs)
