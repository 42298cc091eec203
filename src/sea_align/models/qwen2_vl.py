"""Qwen2-VL and Qwen2.5-VL: image and video. The patch merger sits inside the vision tower, so
encoder space = the tower's last hidden state *before* the merger ([t*h*w, 1280], natural patch
order); `project` = the merger. Positions are 3-D (M-RoPE) from the model's own `get_rope_index`.

Pixels as the family's processor makes them: dynamic resolution (aspect kept, sides multiples of
patch*merge, area within min/max_pixels of the checkpoint's preprocessor config, else the processor's
defaults; videos use the video processor's bounds). `processors["image_size"]` pins a square instead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from sea_align.models.base import BaseAdapter, Features, Item, ModelError
from sea_align.models.media import (
    CLIP_MEAN,
    CLIP_STD,
    QWEN_IMAGE_PIXELS,
    QWEN_VIDEO_PIXELS,
    load_image,
    load_video,
    pixel_bounds,
    qwen_patches,
)

BLANK_SIDE = 224  # blank image/frame side when none is asked for (then sized like any input)


class Qwen2VLAdapter(BaseAdapter):
    family = "qwen2_vl"
    modalities = ("image", "video")
    placeholder = {"image": "<|image_pad|>", "video": "<|video_pad|>"}

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        processors: dict[str, Any] | None = None,
        image_size: int = 0,
        n_frames: int = 4,
        **kw: Any,
    ):
        super().__init__(model, tokenizer, processors, **kw)
        vc = model.config.vision_config
        self.patch = int(vc.patch_size)
        self.merge = int(vc.spatial_merge_size)
        self.temporal = int(getattr(vc, "temporal_patch_size", 2))
        self.image_size = int(self.processors.get("image_size", image_size))  # 0: dynamic resolution
        pp = self.processors.get("preprocessor") or {}  # preprocessor_config.json
        vp = self.processors.get("video_preprocessor") or pp  # transformers falls back the same way
        self.bounds = {"image": pixel_bounds(pp, QWEN_IMAGE_PIXELS), "video": pixel_bounds(vp, QWEN_VIDEO_PIXELS)}
        self.norm = {"image": _norm(pp), "video": _norm(vp)}
        self.n_frames = n_frames
        self.visual = model.model.visual
        self.windowed = hasattr(self.visual, "fullatt_block_indexes")  # Qwen2.5-VL window attention

    def media_text(self, modality: str) -> str:
        return "<|vision_start|>" + self.placeholder[modality] + "<|vision_end|>"

    def blank(self, modality: str, size: int = 0, frames: int = 0, **_: Any) -> Features:
        self.check_modality(modality)
        s = size or self.image_size or BLANK_SIDE
        if modality == "image":
            return self.encode("image", [Image.new("RGB", (s, s), "white")])[0]
        return self.encode("video", [[Image.new("RGB", (s, s), "black")] * (frames or self.n_frames)])[0]

    @torch.no_grad()
    def encode(self, modality: str, media: Sequence[Any]) -> list[Features]:
        self.check_modality(modality)
        out = []
        for m in media:
            if modality == "image":
                frames = [load_image(m)]
            else:
                frames = [load_image(f) for f in m] if isinstance(m, list) else load_video(m, self.n_frames)
            pv, grid = self.pixels(modality, frames)
            grid_t = torch.tensor([grid])
            res = self.visual(torch.from_numpy(pv).to(self.device, self.dtype), grid_thw=grid_t)
            x = res.last_hidden_state
            if self.windowed:  # undo the window permutation so that E is in natural patch order
                x = self._unwindow(x, grid_t)
            out.append(Features(x, {"grid": grid}))
        return out

    def pixels(self, modality: str, frames: Sequence[Image.Image]) -> tuple[np.ndarray, tuple[int, int, int]]:
        """(pixel_values [t*h*w, 3*T*P*P], grid_thw) of one image ([frame]) or video, as the processor makes them."""
        return qwen_patches(
            frames, self.patch, self.merge, self.temporal, self.bounds[modality], self.image_size, *self.norm[modality]
        )

    def pixel_start(self, modality: str, media: Any | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """[3, H, W] in [0, 1] at the processor's dynamic resolution (`pixels` without mean/std, patches undone)."""
        self._check_pixel_path(modality)
        s = self.image_size or BLANK_SIDE
        image = load_image(media) if media is not None else Image.new("RGB", (s, s), "white")
        pv, grid = qwen_patches(
            [image],
            self.patch,
            self.merge,
            self.temporal,
            self.bounds["image"],
            self.image_size,
            (0.0,) * 3,
            (1.0,) * 3,
        )
        frames = unpatchify(torch.from_numpy(pv), grid, self.patch, self.merge, self.temporal)  # [T, 3, H, W]
        return frames[0].clone(), {"grid": grid}

    def pixel_encode(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        """The image fills one temporal patch (T copies, as `qwen_patches` repeats it), normalised per channel,
        cut into the processor's patch layout, then the ViT (window order undone for 2.5)."""
        self._check_pixel_path(modality)
        mean, std = (x.new_tensor(v)[:, None, None] for v in self.norm["image"])
        frames = ((x - mean) / std)[None].expand(self.temporal, -1, -1, -1)
        pv = patchify(frames, self.patch, self.merge, self.temporal)
        grid_t = torch.tensor([list(meta["grid"])])
        h = self.visual(pv.to(self.device, self.dtype), grid_thw=grid_t).last_hidden_state
        return self._unwindow(h, grid_t) if self.windowed else h

    def _check_pixel_path(self, modality: str) -> None:
        self.check_modality(modality)
        if modality != "image":
            raise ModelError(f"model family '{self.family}': pixel attacks take images, not {modality}")

    def _unwindow(self, x: torch.Tensor, grid_t: torch.Tensor) -> torch.Tensor:
        from transformers.vision_utils import get_vision_window_index

        v = self.visual
        window_index, _ = get_vision_window_index(
            grid_t,
            spatial_merge_size=v.spatial_merge_size,
            window_size=v.window_size,
            patch_size=v.patch_size,
            kwargs={},
        )
        unit = v.spatial_merge_unit
        x = x.reshape(x.shape[0] // unit, unit, -1)[torch.argsort(window_index)]
        return x.reshape(-1, x.shape[-1])

    def project(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        b, n, d = x.shape
        y = self.visual.merger(x.reshape(b * n, d))  # groups of merge^2 consecutive patches -> 1 token
        return y.reshape(b, -1, y.shape[-1])

    def positions(self, ids: torch.Tensor, mask: torch.Tensor, items: Sequence[Item]) -> torch.Tensor:
        if all(it.modality is None for it in items):
            pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
            return pos[None].expand(3, -1, -1)
        ttype = torch.zeros_like(ids, dtype=torch.int)
        ttype[ids == self.placeholder_ids.get("image", -1)] = 1
        ttype[ids == self.placeholder_ids.get("video", -1)] = 2
        grids = {"image": [], "video": []}
        for it in items:
            if it.modality:
                grids[it.modality].append(list(it.meta["grid"]))
        g = {k: (torch.tensor(v, device=ids.device) if v else None) for k, v in grids.items()}
        pos, _ = self.model.model.get_rope_index(
            ids, ttype, image_grid_thw=g["image"], video_grid_thw=g["video"], attention_mask=mask
        )
        return pos


def _norm(cfg: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(cfg.get("image_mean", CLIP_MEAN)), tuple(cfg.get("image_std", CLIP_STD))


# [t, h/m, w/m, m, m, 3, T, P, P] <-> [t, T, 3, h/m, m, P, w/m, m, P]: `qwen_patches`' layout and its inverse
_TO_PATCHES = (0, 3, 6, 4, 7, 2, 1, 5, 8)
_FROM_PATCHES = (0, 6, 5, 1, 3, 7, 2, 4, 8)


def patchify(frames: torch.Tensor, patch: int, merge: int, temporal: int) -> torch.Tensor:
    """[t*T, 3, H, W] -> [t*h*w, 3*T*P*P], the layout of `qwen_patches` (merge groups contiguous), in torch so
    that gradients reach the pixels."""
    n, c, H, W = frames.shape
    t, gh, gw = n // temporal, H // patch, W // patch
    x = frames.reshape(t, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch).permute(*_TO_PATCHES)
    return x.reshape(t * gh * gw, c * temporal * patch * patch)


def unpatchify(pv: torch.Tensor, grid: Sequence[int], patch: int, merge: int, temporal: int) -> torch.Tensor:
    """The inverse of `patchify`: [t*h*w, 3*T*P*P] with grid (t, h, w) -> [t*T, 3, H, W]."""
    t, gh, gw = grid
    c = pv.shape[1] // (temporal * patch * patch)
    x = pv.reshape(t, gh // merge, gw // merge, merge, merge, c, temporal, patch, patch).permute(*_FROM_PATCHES)
    return x.reshape(t * temporal, c, gh * patch, gw * patch)
