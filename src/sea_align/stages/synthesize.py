"""Stage 2 — embedding optimisation.

For every prepared sample, E (the shape of one blank item's encoder output) starts from that blank
output and is optimised by Adam on L(E) = mean over the sample's auxiliary pairs of CE(target |
prompt, project(E)), with the whole model frozen. Samples are optimised in a batch; each one stops on
its own as soon as greedy decoding reproduces all of its targets (read off the teacher-forced pass) or
at the step cap, then leaves the batch and a waiting sample takes its place.

Durability: a finished E is written at once to its own shard (temp file + rename; the shard's
metadata carries its index row), then a *pending* row (`verified: null`) is appended to the index.
Verification with held-out probe questions runs in groups and appends the full row again; when the
index is read, the last row per id wins. A killed run therefore loses at most the samples that were
mid-optimisation: a rerun verifies pending rows, re-indexes shards whose row never got written, and
optimises only the rest. Under `accelerate launch` each process takes every world-th sample (ids
sorted), writes `emb-rR-*.safetensors` and `index.rR.jsonl`, and the main process merges the parts
into one `index.jsonl` at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from sea_align.config import SynthesizeConfig
from sea_align.config_keys import check_choices
from sea_align.judges.textmatch import contains_phrase
from sea_align.models.base import Item, ModelAdapter
from sea_align.runtime.device import bf16_native
from sea_align.runtime.distributed import Dist, dist_state, place
from sea_align.runtime.faults import crash_point
from sea_align.runtime.io import DataError, atomic_write_json
from sea_align.stages.batch_adam import BatchAdam
from sea_align.stages.embstore import ShardStore, load_embeddings, load_index, merge_index, read_index, recover_orphans
from sea_align.stages.records import PreparedRow, validate_prepared
from sea_align.stages.templates import PROBE_Q

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One sample in the active batch."""

    row: PreparedRow
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


def blank_features(adapter: ModelAdapter, modality: str, cfg: SynthesizeConfig):
    return adapter.blank(modality, size=cfg.blank_size, frames=cfg.blank_frames, seconds=cfg.blank_seconds)


class Synthesizer:
    """Batched, early-stopping embedding optimiser. `optimise(rows)` yields finished slots."""

    def __init__(self, adapter: ModelAdapter, modality: str, cfg: SynthesizeConfig):
        adapter.check_modality(modality)
        check_choices(cfg, "synthesize.")  # init, autocast, attention (a config built in code is not checked yet)
        if cfg.init == "text" and not ("{phrase}" in cfg.init_text or "{targets}" in cfg.init_text):
            raise DataError(f"synthesize.init_text: '{cfg.init_text}' has neither {{phrase}} nor {{targets}}")
        ada = cfg.experimental.lr_adapt
        if ada and (len(ada) != 3 or not ada[1] < 1 <= ada[0] <= ada[2]):
            raise DataError(f"synthesize.experimental.lr_adapt: {ada} must be [up >= 1, down < 1, cap >= up], or []")
        if cfg.autocast == "auto":
            cfg = replace(cfg, autocast=bf16_native(adapter.device))
        self.a, self.modality, self.cfg = adapter, modality, cfg
        feats = blank_features(adapter, modality, cfg)
        self.meta = feats.meta
        x0 = feats.x.float()
        if cfg.space == "llm":
            with torch.no_grad():
                x0 = adapter.project(modality, x0[None].to(adapter.dtype), feats.meta)[0].float()
        self.x0 = x0.to(adapter.device)  # [n, d] blank init
        # Adam's step size is relative to E's RMS; a blank that encodes to (near) zero has no scale of
        # its own, so the adapter's reference scale stands in (built-ins: the token-embedding RMS).
        rms = float(self.x0.pow(2).mean().sqrt())
        self.scale = rms if rms >= 1e-3 else adapter.reference_scale(modality)
        self._blank_llm: torch.Tensor | None = None  # project(blank), for init=text (computed once)

    def _retry_init(self, retry: int, sample_id: Any = "") -> torch.Tensor:
        """A retry after a numerical fault starts from blank + noise seeded by (seed, id, retry), so a
        sample's result does not depend on which process or batch it ran in."""
        seed = zlib.crc32(f"{self.cfg.seed}:{sample_id}:{retry}".encode())
        gen = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(self.x0.shape, generator=gen) * 0.01 * self.scale
        return self.x0 + noise.to(self.x0.device)

    def init_text(self, row: PreparedRow) -> str:
        """The text a sample's E starts from (`init: text`): `init_text` with {phrase} = its key phrase and
        {targets} = its auxiliary targets joined; '' (blank init) for `init: blank` or an empty phrase."""
        phrase = (row.get("key_phrase") or "").strip()
        if self.cfg.init != "text" or not phrase:
            return ""
        targets = " ".join(p["target"].strip() for p in row["aux"][self.modality])
        return self.cfg.init_text.replace("{phrase}", phrase).replace("{targets}", targets).strip()

    def first_init(self, rows: list[PreparedRow]) -> torch.Tensor:
        """Initial E [b, n, d] for rows joining the batch; text inits are computed together."""
        E = self.x0[None].repeat(len(rows), 1, 1)
        if self.cfg.init == "media":
            return self.media_init([(r.get("key_phrase") or "").strip() for r in rows], E)
        texts = [self.init_text(r) for r in rows]
        have = [i for i, t in enumerate(texts) if t]
        if have:
            E[have] = self.text_init([texts[i] for i in have])
        return E

    @torch.no_grad()
    def media_init(self, phrases: list[str], E: torch.Tensor) -> torch.Tensor:
        """E [b, n, d] = the tower's features of each phrase rendered in the modality (`stages/media_init.py`),
        with the blank's geometry; an empty phrase keeps the blank."""
        from sea_align.stages.media_init import render

        cfg, a = self.cfg, self.a
        side = cfg.blank_size or getattr(a, "image_size", 0) or 224
        for i, phrase in enumerate(phrases):
            if not phrase:
                continue
            feats = a.encode(self.modality, [render(self.modality, phrase, side, cfg.blank_frames, cfg.blank_seconds)])[
                0
            ]
            x = feats.x.float().to(E.device)
            if cfg.space == "llm":
                x = a.project(self.modality, x[None].to(a.dtype), feats.meta)[0].float()
            if x.shape != E.shape[1:]:
                raise DataError(
                    f"synthesize.init media: the rendered phrase gives features {tuple(x.shape)}, the blank "
                    f"{tuple(E.shape[1:])}; set synthesize.blank_size to the side the model resizes to"
                )
            E[i] = x
        return E

    def text_init(self, texts: list[str]) -> torch.Tensor:
        """E [b, n, d] whose projection puts each text's own token embeddings in the first media
        positions (cut to the slots; the rest stay as the blank projects). Any family: the LLM reads its
        token embeddings as text, so the search starts from "the text, written where the media goes". In
        encoder space E is found by Adam on ||project(E) - target||^2 through the projector alone."""
        a = self.a
        with torch.no_grad():
            if self._blank_llm is None:
                self._blank_llm = a.to_llm(self.modality, self.x0[None], self.meta, self.cfg.space)[0].float()
            target = self._blank_llm[None].repeat(len(texts), 1, 1)
            for i, text in enumerate(texts):
                ids = a.tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"][: target.shape[1]]
                target[i, : len(ids)] = a.embed_tokens(torch.tensor(ids, device=a.device)).float()
        if self.cfg.space == "llm":
            return target
        E = self.x0[None].repeat(len(texts), 1, 1).requires_grad_(True)
        opt = torch.optim.Adam([E], lr=0.05 * self.scale)
        for _ in range(self.cfg.experimental.init_steps):
            # per-sample mean, summed: each sample's gradient does not depend on who shares the batch
            loss = (a.to_llm(self.modality, E, self.meta, "encoder").float() - target).pow(2).mean((1, 2)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return E.detach()

    def loss_context(self) -> ExitStack:
        """The loss pass's numerics: bf16 autocast (+ bf16 Linear weights made once) and the attention
        kernel, as configured. Verification runs outside, as loaded."""
        cfg, stack = self.cfg, ExitStack()
        if cfg.autocast == "bf16":
            stack.enter_context(torch.autocast(self.a.device.type, dtype=torch.bfloat16))
            if cfg.experimental.lowp_weights:
                stack.enter_context(self.a.low_precision_weights(torch.bfloat16))
        if cfg.experimental.attention == "math":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        return stack

    def loss_and_match(self, E: torch.Tensor, slots: list[_Slot]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample [B]: mean CE over its pairs (the loss), mean CE over the pairs that gate its stop
        (`experimental.stop_on`; all of them by default) and 'every gating pair reproduced'."""
        mm = self.a.to_llm(self.modality, E, self.meta, self.cfg.space)
        items, owner, gates = [], [], []
        every = self.cfg.experimental.stop_on == "all"
        for i, s in enumerate(slots):
            for p in s.pairs:
                items.append(Item(p["prompt"], self.modality, mm[i], self.meta, target=p["target"]))
                owner.append(i)
                gates.append(every or p.get("kind", "content") != "style")
        ce, match = self.a.target_stats(items, groups=owner)  # a sample's pairs share its media pass
        owner_t = torch.tensor(owner, device=ce.device)
        gate = torch.tensor(gates, device=ce.device)

        def per_sample(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(len(slots), device=ce.device, dtype=dtype).index_add(0, owner_t, x.to(dtype))

        loss = per_sample(ce, ce.dtype) / per_sample(torch.ones_like(ce))
        gated = loss.detach()
        if not every:
            gated = per_sample(torch.where(gate, ce.detach(), 0)) / per_sample(gate).clamp(min=1)
        miss = per_sample(~match & gate)
        return loss, gated, miss == 0

    def optimise(self, rows: list[PreparedRow], bar: tqdm | None = None):
        """Generator of (slot, E[n, d] cpu float32) as samples finish."""
        cfg = self.cfg
        waiting = list(rows)
        slots: list[_Slot] = []
        st = BatchAdam.empty(self.x0)
        while waiting or slots:
            new = [waiting.pop(0) for _ in range(min(len(waiting), cfg.batch_size - len(slots)))]  # refill
            if new:
                slots += [_Slot(row, row["aux"][self.modality]) for row in new]
                st.join(self.first_init(new))
            t0 = time.perf_counter()
            st.E.requires_grad_(True)
            with self.loss_context():
                loss, gated, match = self.loss_and_match(st.E, slots)
            loss = loss.float()
            finite = torch.isfinite(loss)
            torch.where(finite, loss, torch.zeros_like(loss)).sum().backward()
            loss = loss.detach()
            done = match & finite & (gated.float() <= cfg.stop_loss)
            # a sample that converged at this step keeps the E that was scored (it is leaving)
            st.step(
                loss,
                done,
                cfg.lr * self.scale,
                cfg.experimental.warmup,
                cfg.experimental.lr_adapt,
            )
            dt = (time.perf_counter() - t0) / max(1, len(slots))
            leave = []
            for i, s in enumerate(slots):
                s.seconds += dt
                s.loss = float(loss[i])
                s.losses.append(round(s.loss, 5))
                if not bool(finite[i]):  # numerical fault: restart this sample from a perturbed init
                    s.retries += 1
                    if s.retries > 2:
                        s.loss = float("nan")
                        leave.append(i)
                    else:
                        st.restart(i, self._retry_init(s.retries, s.row.get("id")))
                    continue
                s.converged = bool(done[i])
                s.steps += not s.converged
                if s.converged or s.steps >= cfg.max_steps:
                    leave.append(i)
            if bar is not None:
                bar.set_postfix(active=len(slots), loss=f"{float(loss.mean()):.3f}")
            for i in sorted(leave, reverse=True):
                yield slots[i], st.E[i].detach().float().cpu().clone()
                del slots[i]
                st.drop(i)

    @torch.no_grad()
    def verify(self, embs: list[torch.Tensor], max_new_tokens: int, mm: torch.Tensor | None = None) -> list[list[str]]:
        """Greedy answers to the held-out probe questions, per embedding E [n, d] (`mm`: their projection)."""
        if not embs:
            return []
        mm = self.to_llm(embs) if mm is None else mm
        items = [Item(q, self.modality, mm[i], self.meta) for i in range(len(embs)) for q in PROBE_Q[self.modality]]
        answers = self.a.generate(items, max_new_tokens=max_new_tokens)
        k = len(PROBE_Q[self.modality])
        return [answers[i * k : (i + 1) * k] for i in range(len(embs))]

    @torch.no_grad()
    def to_llm(self, embs: list[torch.Tensor]) -> torch.Tensor:
        """The embeddings E [n, d] in the LLM's input space [b, n, d_llm]."""
        return self.a.to_llm(self.modality, torch.stack(embs).to(self.a.device), self.meta, self.cfg.space)


def _finite(x: float) -> float | None:
    return round(x, 5) if math.isfinite(x) else None


def _row(s: _Slot) -> dict[str, Any]:
    failed = not math.isfinite(s.loss)
    return {
        "id": s.row["id"],
        "phrase": s.row["key_phrase"],
        "harmful": s.row.get("harmful", True),
        "verified": None,
        "probe_answers": [],
        "loss": None if failed else round(s.loss, 5),
        "steps": s.steps,
        "seconds": round(s.seconds, 4),
        "converged": s.converged,
        "failed": failed,
        "retries": s.retries,
        "loss_curve": [_finite(x) for x in s.losses],
    }


def _meta(synth: Synthesizer, model_name: str) -> dict[str, Any]:
    cfg = synth.cfg  # resolved (autocast "auto" -> what ran)
    return {
        "model": model_name,
        "family": synth.a.family,
        "modality": synth.modality,
        "space": cfg.space,
        "shape": list(synth.x0.shape),
        "blank_meta": synth.meta,  # read back by embstore.blank_meta
        "init": cfg.init,
        "token_rms": round(float(synth.a.embed_tokens.weight.float().pow(2).mean().sqrt()), 5),
        "config": dataclasses.asdict(cfg),
    }


def _write_meta(out_dir: Path, meta: dict[str, Any], dist: Dist) -> None:
    meta_path = out_dir / "meta.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        for k in ("modality", "space", "shape"):
            if old.get(k) != meta[k]:
                raise DataError(
                    f"{out_dir}: existing embeddings have {k}={old.get(k)}, this run wants {meta[k]}; use another --out"
                )
    if dist.is_main:
        atomic_write_json(meta_path, meta)


class _VerifyQueue:
    """Finished embeddings waiting for the probe check: `flush` verifies them as one group and commits
    each one's full index row (`verified`, `probe_answers`)."""

    def __init__(self, synth: Synthesizer, store: ShardStore, max_new_tokens: int):
        self.synth, self.store, self.max_new_tokens = synth, store, max_new_tokens
        self.items: list[tuple[dict[str, Any], torch.Tensor]] = []  # (pending index row, E)

    def save(self, slot: _Slot, E: torch.Tensor) -> None:
        """A finished E written to its shard at once (index row `verified: null`), then queued."""
        self.items.append((self.store.save(_row(slot), E), E))

    def flush(self) -> None:
        if not self.items:
            return
        embs = [e for _, e in self.items]
        mm = self.synth.to_llm(embs)
        answers = self.synth.verify(embs, self.max_new_tokens, mm)
        # E's RMS in the LLM's input space, set beside meta's `token_rms` in the report: an E that left the
        # scale of what the LLM reads shows (a 7x too large step once left audio E at 20x: docs/experiments.md)
        rms = [round(float(x), 5) for x in mm.float().pow(2).mean((1, 2)).sqrt()]
        for (r, _), ans, x in zip(self.items, answers, rms):
            ok = (not r["failed"]) and any(contains_phrase(r["phrase"], a) for a in ans)
            self.store.commit({**r, "verified": ok, "probe_answers": ans, "llm_rms": x})
            crash_point("synth.verified")
        self.items.clear()


def _optimise_all(
    synth: Synthesizer, queue: _VerifyQueue, todo: list[PreparedRow], n_mine: int, flush_every: int, progress: bool
) -> None:
    """Optimise `todo`: each E saved as it finishes (a pending index row), verified in groups of `flush_every`."""
    desc = f"synthesize[{synth.modality}]"
    with tqdm(total=n_mine, initial=n_mine - len(todo), desc=desc, disable=not progress, unit="emb") as bar:
        for slot, E in synth.optimise(todo, bar):
            queue.save(slot, E)
            crash_point("synth.finished")
            bar.update(1)
            if len(queue.items) >= flush_every:
                queue.flush()
        queue.flush()


def run_synthesize(
    adapter: ModelAdapter,
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    modality: str,
    cfg: SynthesizeConfig | None = None,
    model_name: str = "",
    flush_every: int = 4,
    progress: bool = True,
) -> SynthResult:
    """Optimise one E per row not yet in `out_dir`'s index; `flush_every` = verification group size."""
    cfg = cfg or SynthesizeConfig()
    out_dir = Path(out_dir)
    rows = validate_prepared(rows, "synthesize", modality)
    dist = dist_state()
    place(adapter, dist)
    synth = Synthesizer(adapter, modality, cfg)
    meta = _meta(synth, model_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_meta(out_dir, meta, dist)
    store = ShardStore(out_dir, dist, modality, cfg.space)
    if dist.is_main:
        recover_orphans(out_dir, store.index, {r["shard"] for r in read_index(out_dir)})
    dist.barrier()  # everyone sees the recovered rows before choosing work
    index = {r["id"]: r for r in load_index(out_dir)}
    mine = dist.share(sorted(rows, key=lambda r: r["id"]))
    todo = [r for r in mine if r["id"] not in index]
    pending = [index[r["id"]] for r in mine if r["id"] in index and index[r["id"]].get("verified") is None]
    n_done_before = sum(r["id"] in index for r in rows)
    t_start = time.perf_counter()
    queue = _VerifyQueue(synth, store, cfg.probe_max_new_tokens)
    if pending:  # finished by a killed run, never verified: verify now, do not recompute
        embs = load_embeddings(out_dir)[2]
        queue.items = [(r, embs[r["id"]]) for r in pending]
    _optimise_all(synth, queue, todo, len(mine), flush_every, progress)
    dist.barrier()  # every process has written its part
    if dist.is_main:
        merge_index(out_dir)
    dist.barrier()
    n_ver, n_fail = _tally(out_dir, rows)
    secs = time.perf_counter() - t_start
    log.info(
        "synthesized %d embeddings on process %d/%d; %d of %d verified, %d failed, in %.1fs",
        len(todo),
        dist.rank,
        dist.world,
        n_ver,
        len(rows),
        n_fail,
        secs,
    )
    return SynthResult(out_dir, len(rows), n_done_before, n_ver, n_fail, secs)


def _tally(out_dir: Path, rows: list[PreparedRow]) -> tuple[int, int]:
    """(verified, failed) among `rows` in the merged index."""
    final = {r["id"]: r for r in load_index(out_dir)}
    mine_ids = {r["id"] for r in rows}
    n_ver = sum(bool(r.get("verified")) for i, r in final.items() if i in mine_ids)
    n_fail = sum(bool(r.get("failed")) for i, r in final.items() if i in mine_ids)
    return n_ver, n_fail
