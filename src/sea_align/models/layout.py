"""Token layout: items -> chat-formatted token ids with each media placeholder expanded to the length of
its embedding, rows padded into one `Batch` whose placeholder slots hold the media embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sea_align.models.types import Batch, Item, ModelError

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MEMO_SIZE = 4096  # tokenized (prompt, modality, target, media length) kept per adapter


class LayoutMixin:
    """The layout half of `BaseAdapter`. Family hooks: `placeholder`, `default_template`, `media_text`,
    `positions`. Uses the adapter's `tokenizer`, `system_prompt`, `embed_tokens`, `device`, `check_modality`."""

    family: str
    placeholder: dict[str, str]  # modality -> placeholder token string
    default_template: str  # used when the tokenizer has no chat template
    tokenizer: Any
    system_prompt: str | None
    embed_tokens: torch.nn.Module
    placeholder_ids: dict[str, int]  # modality -> placeholder token id
    end_text: str  # appended to a target (the end-of-turn marker)
    _ids_memo: dict[tuple, tuple[tuple[int, ...], int]]

    # ----- family hooks -------------------------------------------------------------------------
    def media_text(self, modality: str) -> str:
        """Text put in the user turn where the media goes; contains one placeholder (expanded later)."""
        return self.placeholder[modality] + "\n"

    def positions(self, ids: torch.Tensor, mask: torch.Tensor, items: Sequence[Item]) -> torch.Tensor:
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    # ----- tokens -------------------------------------------------------------------------------
    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ModelError(f"tokenizer has no placeholder token {token!r} for family '{self.family}'")
        return int(tid)

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
        return self.tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=True
        )

    def _item_ids(self, item: Item) -> tuple[list[int], int]:
        """Token ids of one item with its placeholder expanded to the embedding's length; returns (ids, n_target)."""
        self.check_modality(item.modality)
        if item.modality is not None and item.mm is None:
            raise ModelError("an item with a modality needs its embedding")
        n_media = int(item.mm.shape[0]) if item.modality is not None else 0
        key = (self.system_prompt, item.prompt, item.modality, item.target, n_media)
        memo = self._ids_memo
        if key not in memo:  # synthesis asks for the same few prompts at every step
            if len(memo) > MEMO_SIZE:
                memo.clear()
            memo[key] = self._tokenize_item(*key[1:])
        ids, n_target = memo[key]
        return list(ids), n_target

    def _tokenize_item(
        self, prompt: str, modality: str | None, target: str | None, n_media: int
    ) -> tuple[tuple[int, ...], int]:
        ids = self.tokenizer(self.chat(prompt, modality), add_special_tokens=False)["input_ids"]
        if modality is not None:
            ph = self.placeholder_ids[modality]
            pos = [i for i, t in enumerate(ids) if t == ph]
            if len(pos) != 1:
                raise ModelError(f"expected one {modality} placeholder in the prompt, found {len(pos)}")
            ids = ids[: pos[0]] + [ph] * n_media + ids[pos[0] + 1 :]
        n_target = 0
        if target is not None:
            tgt = self.tokenizer(target + self.end_text, add_special_tokens=False)["input_ids"]
            ids = ids + tgt
            n_target = len(tgt)
        return tuple(ids), n_target

    # ----- batches ------------------------------------------------------------------------------
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
            ids[b, s - len(tail) :] = torch.tensor(tail)
            mask[b, s - len(tail) :] = 1
            if nt:
                tmask[b, s - nt :] = True
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
