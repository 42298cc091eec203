"""Running the language model on built batches: teacher-forced target loss (with prefix caching) and
greedy generation. Only the language model runs here; the media are already in `inputs_embeds`."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from sea_align.models.prefix import PrefixCache, group_index, rows_agree, share_rows
from sea_align.models.types import Batch, Item


def cache_kwarg(module: torch.nn.Module) -> str:
    """The name the language model's forward takes its KV cache by."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def stop_ids(tokenizer: Any) -> set[int]:
    """End-of-sequence and end-of-turn token ids the tokenizer has."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(t)
        if tid is not None and tid != tokenizer.unk_token_id:
            ids.add(int(tid))
    return ids


class ForwardMixin:
    """The loss-and-generation half of `BaseAdapter`. Uses the adapter's `language_model`, `lm_head`,
    `embed_tokens`, `device`, `build`, `shared_prefix` and `media_end`."""

    language_model: torch.nn.Module
    lm_head: torch.nn.Module
    embed_tokens: torch.nn.Module
    tokenizer: Any
    stop_ids: set[int]
    prefix_caching: bool  # reuse the KV of the prompt part before the media (exact; synthesis only)
    prefix_cache: PrefixCache
    _cache_kw: str

    def _lm(self, embeds, mask, pos, cache=None):
        kw = {self._cache_kw: cache, "use_cache": cache is not None}
        return self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, **kw)

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """The language model's last hidden states [b, s, d_llm] on a built batch (one pass, no cache)."""
        return self._lm(batch.inputs_embeds, batch.attention_mask, batch.position_ids).last_hidden_state

    def _can_cache_prefix(self) -> bool:
        """Only while no language-model weight trains (LoRA training changes the prefix's KV)."""
        if not self.prefix_caching:
            return False
        return not any(p.requires_grad for p in self.language_model.parameters())

    def _prefix_kv(self, prefix_ids: list[int], pos: torch.Tensor, batch: int) -> DynamicCache:
        """KV of the shared prefix, computed once (no grad) and reused while the weights are frozen."""
        key = (tuple(prefix_ids), torch.is_autocast_enabled(self.device.type), self.lm_head.weight.dtype)

        @torch.no_grad()
        def compute() -> DynamicCache:
            ids = torch.tensor([prefix_ids], device=self.device)
            cache = DynamicCache()
            self._lm(self.embed_tokens(ids), torch.ones_like(ids), pos, cache)
            return cache

        return self.prefix_cache.get(key, compute, batch)

    def target_loss(self, items: Sequence[Item], reduction: str = "mean") -> torch.Tensor:
        """Per-sample cross entropy of the targets, [b]. Logits only at target positions (saves a
        [b, s, vocab] tensor: with a 49k vocabulary that is most of the step's memory)."""
        return self.target_stats(items, reduction)[0]

    def target_stats(
        self, items: Sequence[Item], reduction: str = "mean", groups: Sequence[Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-sample CE [b], per-sample 'every target token is the argmax' [b] bool). The second is
        exactly "greedy decoding reproduces the target", read off the same teacher-forced pass.

        `groups` (one key per item; synthesis passes the sample index) says which items carry the
        same media embedding: their tokens up to and including the media are then run once per
        group and the resulting KV is shared by the group's items (exact, gradients included)."""
        logits, labels, rows = self.target_logits(items, groups)
        ce = F.cross_entropy(logits, labels, reduction="none")
        total = torch.zeros(len(items), device=ce.device, dtype=ce.dtype).index_add(0, rows, ce)
        wrong = (logits.argmax(-1) != labels).float().detach()
        miss = torch.zeros(len(items), device=ce.device).index_add(0, rows, wrong)
        if reduction == "sum":
            return total, miss == 0
        count = torch.zeros(len(items), device=ce.device, dtype=ce.dtype).index_add(0, rows, torch.ones_like(ce))
        return total / count.clamp(min=1), miss == 0

    def target_logits(
        self, items: Sequence[Item], groups: Sequence[Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced logits at the target positions only: (logits [n, vocab] float32, the target
        tokens [n], the item each position belongs to [n]). `groups` as in `target_stats`."""
        cached = self._can_cache_prefix() and len(items) > 0
        prefix = self.shared_prefix(items) if cached else []
        P = len(prefix)
        # S > P: the shared prefix stops before the first media placeholder
        S = self.media_end(items) if cached and groups is not None and len(set(groups)) < len(items) else 0
        batch = self.build(items, prefix=S or P)
        if S:
            first, inv = group_index(groups)
            if not rows_agree(batch.ids[:, :S], [it.mm for it in items], first, inv):
                S = 0  # a group whose items differ up to the end of the media: no sharing
                batch = self.build(items, prefix=P)
        cut = S or P
        if S:
            h = self._grouped_forward(batch, first, inv, P, S, prefix)
        elif P:
            cache = self._prefix_kv(prefix, batch.position_ids[..., :1, :P], len(items))
            h = self._lm(
                batch.inputs_embeds[:, P:], batch.attention_mask, batch.position_ids[..., P:], cache
            ).last_hidden_state
        else:
            h = self.hidden_states(batch)
        if cut:
            batch = batch.tail(cut)
        sel = batch.target_mask[:, 1:]  # [b, s-1]: position t predicts token t+1
        logits = self.lm_head(h[:, :-1][sel]).float()  # [n_target_tokens, vocab]
        return logits, batch.ids[:, 1:][sel], torch.nonzero(sel, as_tuple=True)[0]

    def _grouped_forward(
        self, batch: Batch, first_rows: list[int], group_of: list[int], P: int, S: int, prefix: list[int]
    ) -> torch.Tensor:
        """Hidden states of tokens S: of every row. Tokens P:S (the media and the template around it)
        run once per group (from its first row) on top of the cached template prefix; each row then
        reads its group's KV."""
        first = torch.tensor(first_rows, device=self.device)
        inv = torch.tensor(group_of, device=self.device)
        mask, pos = batch.attention_mask, batch.position_ids
        cache = self._prefix_kv(prefix, pos[..., :1, :P], len(first_rows)) if P else DynamicCache()
        self._lm(batch.inputs_embeds[first, P:S], mask[first, :S], pos[..., first, P:S], cache)
        return self._lm(batch.inputs_embeds[:, S:], mask, pos[..., S:], share_rows(cache, inv)).last_hidden_state

    @torch.no_grad()
    def generate(self, items: Sequence[Item], max_new_tokens: int = 48) -> list[str]:
        """Greedy decoding with a KV cache, batched (left padding). Identical to one-by-one decoding
        up to floating-point reduction order."""
        if not items:
            return []
        batch = self.build(items)
        mask, pos = batch.attention_mask, batch.position_ids
        cache = DynamicCache()
        out = self._lm(batch.inputs_embeds, mask, pos, cache)
        nxt = self.lm_head(out.last_hidden_state[:, -1]).argmax(-1)
        done = torch.zeros(len(items), dtype=torch.bool, device=self.device)
        tokens: list[torch.Tensor] = []
        last = pos[..., -1:]  # [b, 1] or [3, b, 1]
        stop = torch.tensor(sorted(self.stop_ids), device=self.device)
        for _ in range(max_new_tokens):
            tokens.append(torch.where(done, torch.full_like(nxt, -1), nxt))
            done = done | torch.isin(nxt, stop)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            last = last + 1
            out = self._lm(self.embed_tokens(nxt[:, None]), mask, last, cache)
            nxt = self.lm_head(out.last_hidden_state[:, -1]).argmax(-1)
        gen = torch.stack(tokens, dim=1).tolist()
        texts = []
        for row in gen:
            keep = [t for t in row if t >= 0 and t not in self.stop_ids]
            texts.append(self.tokenizer.decode(keep, skip_special_tokens=True).strip())
        return texts
