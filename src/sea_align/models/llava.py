"""LLaVA-1.5 (`LlavaForConditionalGeneration`): image. Encoder space = the selected tower layer
(CLS dropped under the "default" strategy), [576, 1024] for LLaVA-1.5-7B; LLM space = after the MLP projector.
Pixels as CLIPImageProcessor makes them, with the checkpoint's size/crop/mean/std (else the tower's side)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from sea_align.models.base import BaseAdapter, Features, ModelError
from sea_align.models.media import CLIP_MEAN, CLIP_STD, clip_pixels, load_image

LLAVA15_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }} "
    "{% elif m['role'] == 'user' %}USER: {{ m['content'] }} {% else %}ASSISTANT: {{ m['content'] }}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


class LlavaAdapter(BaseAdapter):
    family = "llava"
    modalities = ("image",)
    placeholder = {"image": "<image>"}
    default_template = LLAVA15_TEMPLATE

    def __init__(self, model: Any, tokenizer: Any, processors: dict[str, Any] | None = None, **kw: Any):
        super().__init__(model, tokenizer, processors, **kw)
        cfg = model.config
        self.feature_layer = cfg.vision_feature_layer
        self.select = cfg.vision_feature_select_strategy
        side = int(getattr(cfg.vision_config, "image_size", 336))
        pp = self.preprocessor()
        self.resize_side = _side(pp.get("size"), side)  # short side after resizing
        self.image_size = _side(pp.get("crop_size"), side)  # centre crop = the tower's input
        self.mean = tuple(pp.get("image_mean", CLIP_MEAN))
        self.std = tuple(pp.get("image_std", CLIP_STD))
        self.resample = int(pp.get("resample", Image.BICUBIC))

    def preprocessor(self) -> dict[str, Any]:
        """The checkpoint's processor config (preprocessor_config.json), {} when there is none."""
        return self.processors.get("preprocessor") or {}

    @property
    def core(self):
        return self.model.model

    def tower(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] -> selected tower features [n, slots, d_enc]."""
        out = self.core.vision_tower(
            pixel_values.to(self.device, self.dtype), output_hidden_states=True, return_dict=True
        )
        layers = self.feature_layer if isinstance(self.feature_layer, (list, tuple)) else [self.feature_layer]
        hs = torch.cat([out.hidden_states[i] for i in layers], dim=-1)
        return hs[:, 1:] if self.select == "default" else hs

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        custom = self.processors.get("image")
        if callable(custom):  # built-in models bring their own preprocessing
            return torch.as_tensor(custom(list(images)))
        return torch.from_numpy(
            clip_pixels(images, self.resize_side, self.image_size, self.mean, self.std, self.resample)
        )

    def blank(self, modality: str, size: int = 0, **_: Any) -> Features:
        self.check_modality(modality)
        s = size or self.image_size
        return self.encode(modality, [Image.new("RGB", (s, s), "white")])[0]

    @torch.no_grad()
    def encode(self, modality: str, media: Sequence[Any]) -> list[Features]:
        self.check_modality(modality)
        images = [load_image(m) for m in media]
        hs = self.tower(self.pixels(images))
        return [Features(h) for h in hs]

    def project(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        return self.core.multi_modal_projector(x)

    def pixel_start(self, modality: str, media: Any | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """[3, crop, crop] in [0, 1]: `pixels` without the mean/std step (the same resize, crop and x/255)."""
        self._check_pixel_path(modality)
        image = load_image(media) if media is not None else Image.new("RGB", (self.image_size,) * 2, "white")
        x = clip_pixels([image], self.resize_side, self.image_size, (0.0,) * 3, (1.0,) * 3, self.resample)
        return torch.from_numpy(x[0]), {}

    def pixel_encode(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        self._check_pixel_path(modality)
        mean = x.new_tensor(self.mean)[:, None, None]
        std = x.new_tensor(self.std)[:, None, None]
        return self.tower(((x - mean) / std)[None])[0]

    def _check_pixel_path(self, modality: str) -> None:
        """Images only, through the CLIP preprocessing we own: a built-in's own (`processors["image"]`, an OCR
        reader's) is not differentiable."""
        self.check_modality(modality)
        if modality != "image":
            raise ModelError(f"model family '{self.family}': pixel attacks take images, not {modality}")
        if callable(self.processors.get("image")):
            raise ModelError(
                f"model family '{self.family}' here preprocesses images its own way (an OCR reader), "
                "not differentiably: no path from pixels to the tower"
            )


def _side(v: Any, default: int) -> int:
    """A processor's size entry (int, {"shortest_edge": n} or {"height": n, ...}) as one side."""
    if isinstance(v, dict):
        v = v.get("shortest_edge") or v.get("height")
    return int(v or default)
