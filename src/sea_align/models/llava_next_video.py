"""LLaVA-NeXT-Video (`LlavaNextVideoForConditionalGeneration`): video. Frames go through the image
tower one by one. Encoder space = per-frame tower features stacked, [frames * slots, d_enc];
`project` applies the family's spatial pooling (`vision_resampler`) and the projector per frame.
Frames are processed like the family's video processor: CLIP resize + centre crop + normalise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from sea_align.models.base import Features
from sea_align.models.llava import LlavaAdapter
from sea_align.models.media import load_video


class LlavaNextVideoAdapter(LlavaAdapter):
    family = "llava_next_video"
    modalities = ("video",)
    placeholder = {"video": "<video>"}

    def __init__(
        self, model: Any, tokenizer: Any, processors: dict[str, Any] | None = None, n_frames: int = 8, **kw: Any
    ):
        super().__init__(model, tokenizer, processors, **kw)
        self.n_frames = n_frames

    def preprocessor(self) -> dict[str, Any]:
        """video_preprocessor_config.json, else preprocessor_config.json (as transformers falls back)."""
        return self.processors.get("video_preprocessor") or super().preprocessor()

    def blank(self, modality: str, size: int = 0, frames: int = 0, **_: Any) -> Features:
        self.check_modality(modality)
        s = size or self.image_size
        black = [Image.new("RGB", (s, s), "black")] * (frames or self.n_frames)
        return self.encode(modality, [black])[0]

    @torch.no_grad()
    def encode(self, modality: str, media: Sequence[Any]) -> list[Features]:
        self.check_modality(modality)
        feats = []
        for m in media:
            frames = (
                load_video(m, self.n_frames)
                if not isinstance(m, list) or len(m) != self.n_frames
                else [f.convert("RGB") for f in m]
            )
            hs = self.tower(self.pixels(frames))  # [f, slots, d]
            feats.append(Features(hs.reshape(-1, hs.shape[-1]), {"frames": len(frames)}))
        return feats

    def project(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        b, f = x.shape[0], int(meta["frames"])
        per_frame = x.reshape(b * f, x.shape[1] // f, x.shape[2])
        y = self.core.multi_modal_projector(self.core.vision_resampler(per_frame))
        return y.reshape(b, -1, y.shape[-1])
