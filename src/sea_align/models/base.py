"""The model-adapter Protocol and the machinery every family shares.

An adapter hides one family's quirks behind five verbs: `blank` (encoder output for one blank item),
`encode` (real media -> encoder space), `project` (encoder space -> LLM space), `build` (prompts +
LLM-space embeddings -> `inputs_embeds` for the language model) and `generate` / `target_loss`.
Every family runs through the same path: the placeholder tokens of the prompt are replaced by the
projected embedding, then the *language model alone* runs on `inputs_embeds`. So a synthetic E and a
real image go through exactly the same code after the encoder.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from transformers import DynamicCache

log = logging.getLogger(__name__)

MODALITIES = ("image", "video", "audio")


class ModelError(ValueError):
    """A model that cannot do what was asked (unsupported family, missing modality...)."""


@dataclass
class Features:
    """One media item in encoder space: `x` is [n_slots, d_enc]; `meta` holds family details (grid...)."""
    x: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Item:
    """One prompt for the language model. `mm` is the LLM-space embedding [n_tokens, d_llm] or None."""
    prompt: str
    modality: str | None = None
    mm: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    target: str | None = None


@dataclass
class Batch:
    ids: torch.Tensor  # [b, s] token ids, placeholders included, left-padded
    attention_mask: torch.Tensor  # [b, s]
    inputs_embeds: torch.Tensor  # [b, s, d_llm]
    position_ids: torch.Tensor  # [b, s], or [3, b, s] for M-RoPE families
    target_mask: torch.Tensor  # [b, s] True where the token belongs to the target


@runtime_checkable
class ModelAdapter(Protocol):
    family: str
    modalities: tuple[str, ...]
    model: Any
    tokenizer: Any

    def blank(self, modality: str, **opts: Any) -> Features: ...
    def encode(self, modality: str, media: Sequence[Any]) -> list[Features]: ...
    def project(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor: ...
    def build(self, items: Sequence[Item]) -> Batch: ...
    def target_loss(self, items: Sequence[Item]) -> torch.Tensor: ...
    def generate(self, items: Sequence[Item], max_new_tokens: int) -> list[str]: ...


def _cache_kwarg(module: torch.nn.Module) -> str:
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _group_index(groups: Sequence[Any]) -> tuple[list[int], list[int]]:
    """(first row of each group in order of appearance, each row's group number)."""
    first: dict[Any, int] = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    number = {g: k for k, g in enumerate(first)}
    return list(first.values()), [number[g] for g in groups]


def _rows_agree(ids: torch.Tensor, mm: list[torch.Tensor], first: list[int], inv: list[int]) -> bool:
    """Every row has the token ids and media embedding of the first row of its group."""
    lead = [first[k] for k in inv]
    return bool((ids == ids[lead]).all()) and all(torch.equal(mm[i], mm[j]) for i, j in enumerate(lead))


class BaseAdapter:
    """Shared implementation; a family subclass sets the placeholders and the encoder/projector."""

    family = "base"
    modalities: tuple[str, ...] = ()
    placeholder: dict[str, str] = {}  # modality -> placeholder token string
    default_template = (  # used when the tokenizer has no chat template (ChatML)
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

    def __init__(self, model: Any, tokenizer: Any, processors: dict[str, Any] | None = None,
                 system_prompt: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.processors = processors or {}
        self.system_prompt = system_prompt
        self.language_model = self._language_model()
        self.lm_head = model.get_output_embeddings()
        self.embed_tokens = model.get_input_embeddings()
        self._cache_kw = _cache_kwarg(self.language_model)
        self.placeholder_ids = {m: self._token_id(t) for m, t in self.placeholder.items() if m in self.modalities}
        self.stop_ids = self._stop_ids()
        self.prefix_caching = True  # reuse the KV of the prompt part before the media (exact; synthesis only)
        self._kv_store: dict = {}
        self.end_text = self._end_text()

    # ----- family hooks -------------------------------------------------------------------------
    def _language_model(self) -> torch.nn.Module:
        inner = getattr(self.model, "model", self.model)
        return getattr(inner, "language_model", inner)

    def media_text(self, modality: str) -> str:
        """Text put in the user turn where the media goes; contains one placeholder (expanded later)."""
        return self.placeholder[modality] + "\n"

    def blank(self, modality: str, **opts: Any) -> Features:
        raise NotImplementedError

    def encode(self, modality: str, media: Sequence[Any]) -> list[Features]:
        raise NotImplementedError

    def project(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def positions(self, ids: torch.Tensor, mask: torch.Tensor, items: Sequence[Item]) -> torch.Tensor:
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    # ----- shared -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def reference_scale(self, modality: str) -> float:
        """RMS of typical encoder features, for when the blank item's features are all zero (the
        built-in models' towers give zeros for blank media): built-ins state it in `builtin_info`
        ("encoder_rms"), anything else falls back to 1."""
        return float(getattr(self, "builtin_info", {}).get("encoder_rms") or 1.0)

    def check_modality(self, modality: str | None) -> None:
        if modality is not None and modality not in self.modalities:
            have = ", ".join(self.modalities) or "none"
            raise ModelError(f"model family '{self.family}' has no {modality} input (it supports: {have})")

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ModelError(f"tokenizer has no placeholder token {token!r} for family '{self.family}'")
        return int(tid)

    def _stop_ids(self) -> set[int]:
        ids = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            tid = self.tokenizer.convert_tokens_to_ids(t)
            if tid is not None and tid != self.tokenizer.unk_token_id:
                ids.add(int(tid))
        return ids

    def _end_text(self) -> str:
        tid = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if tid is not None and tid != self.tokenizer.unk_token_id:
            return "<|im_end|>"
        return self.tokenizer.eos_token or ""

    def chat(self, prompt: str, modality: str | None) -> str:
        content = (self.media_text(modality) if modality else "") + prompt
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": content})
        template = getattr(self.tokenizer, "chat_template", None) or self.default_template
        return self.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=True)

    def _item_ids(self, item: Item) -> tuple[list[int], int]:
        """Token ids of one item with its placeholder expanded to the embedding's length; returns (ids, n_target)."""
        self.check_modality(item.modality)
        if item.modality is not None and item.mm is None:
            raise ModelError("an item with a modality needs its embedding")
        n_media = int(item.mm.shape[0]) if item.modality is not None else 0
        key = (self.system_prompt, item.prompt, item.modality, item.target, n_media)
        memo = self.__dict__.setdefault("_ids_memo", {})
        if key not in memo:  # synthesis asks for the same few prompts at every step
            if len(memo) > 4096:
                memo.clear()
            memo[key] = self._tokenize_item(*key[1:])
        ids, n_target = memo[key]
        return list(ids), n_target

    def _tokenize_item(self, prompt: str, modality: str | None, target: str | None,
                       n_media: int) -> tuple[tuple[int, ...], int]:
        ids = self.tokenizer(self.chat(prompt, modality), add_special_tokens=False)["input_ids"]
        if modality is not None:
            ph = self.placeholder_ids[modality]
            pos = [i for i, t in enumerate(ids) if t == ph]
            if len(pos) != 1:
                raise ModelError(f"expected one {modality} placeholder in the prompt, found {len(pos)}")
            ids = ids[:pos[0]] + [ph] * n_media + ids[pos[0] + 1:]
        n_target = 0
        if target is not None:
            tgt = self.tokenizer(target + self.end_text, add_special_tokens=False)["input_ids"]
            ids = ids + tgt
            n_target = len(tgt)
        return tuple(ids), n_target

    def build(self, items: Sequence[Item], prefix: int = 0) -> Batch:
        """Token layout [shared prefix (`prefix` tokens) | left padding | rest of each row]. With
        prefix=0 this is plain left padding (generation appends on the right)."""
        seqs = [self._item_ids(it) for it in items]
        rest = [ids[prefix:] for ids, _ in seqs]
        r = max(len(x) for x in rest)
        s = prefix + r
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(items), s), pad, dtype=torch.long)
        mask = torch.zeros((len(items), s), dtype=torch.long)
        tmask = torch.zeros((len(items), s), dtype=torch.bool)
        for b, ((row, nt), tail) in enumerate(zip(seqs, rest)):
            ids[b, :prefix] = torch.tensor(row[:prefix], dtype=torch.long)
            mask[b, :prefix] = 1
            ids[b, s - len(tail):] = torch.tensor(tail)
            mask[b, s - len(tail):] = 1
            if nt:
                tmask[b, s - nt:] = True
        ids, mask, tmask = ids.to(self.device), mask.to(self.device), tmask.to(self.device)
        embeds = self.embed_tokens(ids)
        for b, it in enumerate(items):
            if it.modality is None:
                continue
            slot = ids[b] == self.placeholder_ids[it.modality]
            embeds[b, slot] = it.mm.to(embeds.dtype).to(self.device)
        pos = self.positions(ids, mask, items)
        return Batch(ids, mask, embeds, pos, tmask)

    def shared_prefix(self, items: Sequence[Item]) -> list[int]:
        """Token ids every item starts with, stopping before any media placeholder and before the
        last token of the shortest prompt (its hidden state must be computed with the rest)."""
        seqs = [self._item_ids(Item(it.prompt, it.modality, it.mm, it.meta))[0] for it in items]
        ph = set(self.placeholder_ids.values())
        out = []
        for col in zip(*seqs):
            if len(set(col)) != 1 or col[0] in ph:
                break
            out.append(col[0])
        return out[: max(0, min(len(x) for x in seqs) - 1)]

    def _prefix_cache(self, prefix_ids: list[int], pos: torch.Tensor, batch: int) -> DynamicCache:
        """KV of the shared prefix, computed once (no grad) and reused while the weights are frozen."""
        key = (tuple(prefix_ids), torch.is_autocast_enabled(self.device.type), self.lm_head.weight.dtype)
        kv = self._kv_store.get(key)
        if kv is None:
            with torch.no_grad():
                ids = torch.tensor([prefix_ids], device=self.device)
                cache = DynamicCache()
                self._lm(self.embed_tokens(ids), torch.ones_like(ids), pos, cache)
            kv = [(layer.keys, layer.values) for layer in cache.layers]
            self._kv_store = {key: kv}  # keep one prefix: prompts share their template
        cache = DynamicCache()
        for i, (k, v) in enumerate(kv):
            cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
        return cache

    def _can_cache_prefix(self) -> bool:
        """Only while no language-model weight trains (LoRA training changes the prefix's KV)."""
        if not self.prefix_caching:
            return False
        return not any(p.requires_grad for p in self.language_model.parameters())

    def _lm(self, embeds, mask, pos, cache=None):
        kw = {self._cache_kw: cache, "use_cache": cache is not None}
        return self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, **kw)

    def target_loss(self, items: Sequence[Item], reduction: str = "mean") -> torch.Tensor:
        """Per-sample cross entropy of the targets, [b]. Logits only at target positions (saves a
        [b, s, vocab] tensor: with a 49k vocabulary that is most of the step's memory)."""
        return self.target_stats(items, reduction)[0]

    def media_end(self, items: Sequence[Item]) -> int:
        """Length of the token run every item has up to and including its media placeholders, when
        that length is the same for all items and leaves at least one token after it; else 0."""
        ends = set()
        for it in items:
            if it.modality is None:
                return 0
            ids, _ = self._item_ids(Item(it.prompt, it.modality, it.mm, it.meta))
            ph = self.placeholder_ids[it.modality]
            last = max(i for i, t in enumerate(ids) if t == ph) + 1
            if last >= len(ids):
                return 0
            ends.add(last)
        return ends.pop() if len(ends) == 1 else 0

    def target_stats(self, items: Sequence[Item], reduction: str = "mean",
                     groups: Sequence[Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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

    def target_logits(self, items: Sequence[Item], groups: Sequence[Any] | None = None
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
            first, inv = _group_index(groups)
            if not _rows_agree(batch.ids[:, :S], [it.mm for it in items], first, inv):
                S = 0  # a group whose items differ up to the end of the media: no sharing
                batch = self.build(items, prefix=P)
        cut = S or P
        if S:
            h = self._grouped_forward(batch, first, inv, P, S, prefix)
        elif P:
            cache = self._prefix_cache(prefix, batch.position_ids[..., :1, :P], len(items))
            h = self._lm(batch.inputs_embeds[:, P:], batch.attention_mask, batch.position_ids[..., P:],
                         cache).last_hidden_state
        else:
            h = self._lm(batch.inputs_embeds, batch.attention_mask, batch.position_ids).last_hidden_state
        if cut:
            batch = Batch(batch.ids[:, cut:], batch.attention_mask[:, cut:], batch.inputs_embeds[:, cut:],
                          batch.position_ids[..., cut:], batch.target_mask[:, cut:])
        sel = batch.target_mask[:, 1:]  # [b, s-1]: position t predicts token t+1
        logits = self.lm_head(h[:, :-1][sel]).float()  # [n_target_tokens, vocab]
        return logits, batch.ids[:, 1:][sel], torch.nonzero(sel, as_tuple=True)[0]

    def _grouped_forward(self, batch: Batch, first_rows: list[int], group_of: list[int], P: int, S: int,
                         prefix: list[int]) -> torch.Tensor:
        """Hidden states of tokens S: of every row. Tokens P:S (the media and the template around it)
        run once per group (from its first row) on top of the cached template prefix; each row then
        reads its group's KV."""
        first = torch.tensor(first_rows, device=self.device)
        inv = torch.tensor(group_of, device=self.device)
        mask, pos = batch.attention_mask, batch.position_ids
        cache = self._prefix_cache(prefix, pos[..., :1, :P], len(first_rows)) if P else DynamicCache()
        self._lm(batch.inputs_embeds[first, P:S], mask[first, :S], pos[..., first, P:S], cache)
        shared = DynamicCache()
        for i, layer in enumerate(cache.layers):
            shared.update(layer.keys[inv], layer.values[inv], i)
        return self._lm(batch.inputs_embeds[:, S:], mask, pos[..., S:], shared).last_hidden_state

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

    # ----- convenience --------------------------------------------------------------------------
    def to_llm(self, modality: str, feats: Features) -> torch.Tensor:
        return self.project(modality, feats.x[None].to(self.device, self.dtype), feats.meta)[0]

    def media_items(self, modality: str, media: Sequence[Any], prompts: Sequence[str]) -> list[Item]:
        feats = self.encode(modality, media)
        return [Item(prompt=p, modality=modality, mm=self.to_llm(modality, f), meta=f.meta)
                for p, f in zip(prompts, feats)]

    def frozen_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
