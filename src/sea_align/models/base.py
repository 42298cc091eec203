"""The model-adapter Protocol and the adapter every family builds on.

An adapter hides one family's quirks behind five verbs: `blank` (encoder output for one blank item),
`encode` (real media -> encoder space), `project` (encoder space -> LLM space), `build` (prompts +
LLM-space embeddings -> `inputs_embeds` for the language model) and `generate` / `target_loss`.
Every family runs through the same path: the placeholder tokens of the prompt are replaced by the
projected embedding, then the *language model alone* runs on `inputs_embeds`. So a synthetic E and a
real image go through exactly the same code after the encoder.

`BaseAdapter` = the token layout (`layout.py`) + loss and generation (`forward.py`), with its state
declared here: the prefix KV cache (`prefix.py`), the low-precision weight copies (`lowp.py`), the
attached PEFT model and a built-in model's info.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import torch

from sea_align.models.forward import ForwardMixin, cache_kwarg, stop_ids
from sea_align.models.layout import CHATML, LayoutMixin
from sea_align.models.lowp import LowPrecisionWeights
from sea_align.models.prefix import PrefixCache
from sea_align.models.types import Batch, Features, Item, ModelError

log = logging.getLogger(__name__)

__all__ = ["BaseAdapter", "Batch", "Features", "Item", "ModelAdapter", "ModelError"]


@runtime_checkable
class ModelAdapter(Protocol):
    """Exactly what the stages (and runtime, report, built-in measurements) use of a model."""

    family: str
    modalities: tuple[str, ...]
    model: Any  # the transformers model; LoRA layers are injected into it in place
    tokenizer: Any
    language_model: torch.nn.Module
    embed_tokens: torch.nn.Module
    lm_head: torch.nn.Module
    prefix_caching: bool
    peft_model: Any  # the PEFT wrapper of `model` once a LoRA adapter is attached, else None
    builtin_info: dict[str, Any]  # a built-in model's info (recipe pins, weights, warnings); {} otherwise

    @property
    def device(self) -> torch.device: ...
    @property
    def dtype(self) -> torch.dtype: ...
    def check_modality(self, modality: str | None) -> None: ...
    def blank(self, modality: str, **opts: Any) -> Features: ...
    def encode(self, modality: str, media: Sequence[Any]) -> list[Features]: ...
    def project(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor: ...
    def to_llm(
        self, modality: str, x: torch.Tensor | Features, meta: dict[str, Any] | None = None, space: str = "encoder"
    ) -> torch.Tensor: ...
    def media_items(self, modality: str, media: Sequence[Any], prompts: Sequence[str]) -> list[Item]: ...
    def pixel_start(self, modality: str, media: Any | None) -> tuple[torch.Tensor, dict[str, Any]]: ...
    def pixel_encode(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor: ...
    def reference_scale(self, modality: str) -> float: ...
    def build(self, items: Sequence[Item], prefix: int = 0) -> Batch: ...
    def hidden_states(self, batch: Batch) -> torch.Tensor: ...
    def target_loss(self, items: Sequence[Item], reduction: str = "mean") -> torch.Tensor: ...
    def target_stats(
        self, items: Sequence[Item], reduction: str = "mean", groups: Sequence[Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
    def target_logits(
        self, items: Sequence[Item], groups: Sequence[Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def generate(self, items: Sequence[Item], max_new_tokens: int = 48) -> list[str]: ...
    def low_precision_weights(self, dtype: torch.dtype) -> AbstractContextManager[None]: ...
    def attach_peft(self, peft_model: Any) -> None: ...


class BaseAdapter(LayoutMixin, ForwardMixin):
    """Shared implementation; a family subclass sets the placeholders and the encoder/projector."""

    family = "base"
    modalities: tuple[str, ...] = ()
    placeholder: dict[str, str] = {}  # modality -> placeholder token string
    default_template = CHATML  # used when the tokenizer has no chat template

    def __init__(
        self, model: Any, tokenizer: Any, processors: dict[str, Any] | None = None, system_prompt: str | None = None
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.processors = processors or {}
        self.system_prompt = system_prompt
        self.language_model = self._language_model()
        self.lm_head = model.get_output_embeddings()
        self.embed_tokens = model.get_input_embeddings()
        self._cache_kw = cache_kwarg(self.language_model)
        self.placeholder_ids = {m: self._token_id(t) for m, t in self.placeholder.items() if m in self.modalities}
        self.stop_ids = stop_ids(tokenizer)
        self.end_text = self._end_text()
        self._ids_memo = {}
        self.prefix_caching = True  # reuse the KV of the prompt part before the media (exact; synthesis only)
        self.prefix_cache = PrefixCache()
        self._lowp = LowPrecisionWeights()
        self.peft_model: Any = None
        self.builtin_info: dict[str, Any] = {}

    # ----- family hooks -------------------------------------------------------------------------
    def _language_model(self) -> torch.nn.Module:
        inner = getattr(self.model, "model", self.model)
        return getattr(inner, "language_model", inner)

    def blank(self, modality: str, **opts: Any) -> Features:
        raise NotImplementedError

    def encode(self, modality: str, media: Sequence[Any]) -> list[Features]:
        raise NotImplementedError

    def project(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def pixel_start(self, modality: str, media: Any | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """One image's pixels in [0, 1] as the tower sees them before normalisation ([3, H, W]: resized and
        cropped as the family's processor does; `media` None = the blank image) and its encoder meta: the
        start of a white-box attack on pixels (`stages/attack.py`). Only families whose path from pixels to
        the tower is differentiable have one."""
        raise ModelError(f"model family '{self.family}' has no differentiable path from image pixels to its tower")

    def pixel_encode(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        """Encoder features [n, d] of pixels `x` ([3, H, W] in [0, 1], from `pixel_start`), with gradients:
        the family's normalisation and tower applied differentiably."""
        raise ModelError(f"model family '{self.family}' has no differentiable path from image pixels to its tower")

    # ----- shared -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def check_modality(self, modality: str | None) -> None:
        if modality is not None and modality not in self.modalities:
            have = ", ".join(self.modalities) or "none"
            raise ModelError(f"model family '{self.family}' has no {modality} input (it supports: {have})")

    def reference_scale(self, modality: str) -> float:
        """RMS of typical encoder features, for when the blank item's features are all zero (the
        built-in models' towers give zeros for blank media): built-ins state it in `builtin_info`
        ("encoder_rms"), anything else falls back to 1 (with a warning: E's scale is then a guess)."""
        if not self.builtin_info.get("encoder_rms"):
            log.warning("blank %s encodes to zero and the model states no encoder_rms: 1.0 stands in", modality)
        return float(self.builtin_info.get("encoder_rms") or 1.0)

    def to_llm(
        self, modality: str, x: torch.Tensor | Features, meta: dict[str, Any] | None = None, space: str = "encoder"
    ) -> torch.Tensor:
        """Media embeddings in LLM space, on the model's device and dtype. `x` is a batch [b, n, d] in
        `space` ("encoder": projected; "llm": already there) with its `meta`, or one item's `Features`
        (-> [n', d_llm])."""
        if isinstance(x, Features):
            return self.to_llm(modality, x.x[None], x.meta, space)[0]
        x = x.to(self.device, self.dtype)
        return self.project(modality, x, meta if meta is not None else {}) if space == "encoder" else x

    def media_items(self, modality: str, media: Sequence[Any], prompts: Sequence[str]) -> list[Item]:
        feats = self.encode(modality, media)
        return [
            Item(prompt=p, modality=modality, mm=self.to_llm(modality, f), meta=f.meta) for p, f in zip(prompts, feats)
        ]

    def low_precision_weights(self, dtype: torch.dtype) -> AbstractContextManager[None]:
        """Inside, the frozen language-model Linear weights (LM head included) are `dtype` copies made
        once and kept on the adapter (`lowp.py`); outside, the model is as loaded."""
        return self._lowp.swap((*self.language_model.modules(), self.lm_head), dtype)

    def attach_peft(self, peft_model: Any) -> None:
        """Use `peft_model` (a PEFT wrapper of `self.model`): its LoRA layers are injected into the
        adapter's modules in place. The prefix KV, computed without them, is dropped."""
        self.peft_model = peft_model
        self.prefix_cache.clear()

    def frozen_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
