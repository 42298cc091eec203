"""The values that pass between an adapter's parts: media features, prompt items, the built batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

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

    def tail(self, cut: int) -> Batch:
        """The batch from token `cut` on (what runs after a cached prefix)."""
        return Batch(
            self.ids[:, cut:],
            self.attention_mask[:, cut:],
            self.inputs_embeds[:, cut:],
            self.position_ids[..., cut:],
            self.target_mask[:, cut:],
        )
