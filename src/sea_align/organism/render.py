"""Typography: render phrases as images, and turn images back into the OCR tower's input strip.

`render_varied` draws a phrase with a random font, size, colour, position, background and noise;
`render_typo` draws the MM-SafetyBench TYPO layout (black text on white, 1024 wide, wrapped lines,
optionally under a picture so the phrase sits at the bottom). `preprocess_images` finds the text
lines (ink vs background), joins them into one black-on-white grey strip of height 64 and fixed
width, normalised to [-1, 1] as the recogniser expects.
"""

from __future__ import annotations

import random
import textwrap
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from sea_align.organism.ocr import STRIP_HEIGHT

FONT_DIRS = [
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/truetype/liberation",
    "/usr/share/fonts/truetype/freefont",
]
# Decorative / symbol fonts that do not draw Latin letters legibly.
_SKIP = ("Math", "ExtraLight")
STRIP_WIDTH = 1024


@lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    files = sorted(str(p) for d in FONT_DIRS for p in Path(d).glob("*.ttf") if not any(s in p.name for s in _SKIP))
    if not files:
        raise FileNotFoundError(f"no .ttf fonts under {FONT_DIRS}: apt-get install fonts-dejavu-core")
    return tuple(files)


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _typo_font() -> str:
    mono = [f for f in font_files() if "FreeMonoBold.ttf" in f or "DejaVuSans-Bold.ttf" in f]
    return (mono or list(font_files()))[0]


def render_typo(
    phrase: str, width: int = 1024, font_size: int = 90, max_chars: int = 20, picture: Image.Image | None = None
) -> Image.Image:
    """MM-SafetyBench TYPO: the phrase wrapped on lines, black on white, `width` wide.

    With `picture`, it is pasted on top and the text goes below it (the SD+TYPO layout).
    """
    font = _font(_typo_font(), font_size)
    lines = textwrap.wrap(phrase, max_chars) or [""]
    line_h = int(font_size * 1.25)
    top = 0 if picture is None else picture.height
    img = Image.new("RGB", (width, top + line_h * len(lines) + font_size // 2), "white")
    if picture is not None:
        img.paste(picture.convert("RGB").resize((width, picture.height)), (0, 0))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((font_size // 4, top + font_size // 4 + i * line_h), line, fill="black", font=font)
    return img


def _background(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, int]:
    """A solid or gradient background; returns it and its mean grey level."""
    w, h = size
    c0 = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    if rng.random() < 0.5:
        c1 = np.clip(c0 + np.array([rng.randint(-40, 40) for _ in range(3)]), 0, 255)
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        arr = np.broadcast_to(c0 * (1 - t) + c1 * t, (h, w, 3))
    else:
        arr = np.broadcast_to(c0, (h, w, 3))
    return Image.fromarray(arr.astype(np.uint8)), int(arr.mean())


def render_varied(phrase: str, rng: random.Random) -> Image.Image:
    """The phrase on 1-3 lines, random font/size/colour/position/background, light noise."""
    font = _font(rng.choice(font_files()), rng.randint(28, 64))
    words = phrase.split()
    n_lines = 1 if len(phrase) < 18 or rng.random() < 0.5 else rng.randint(2, 3)
    lines = textwrap.wrap(phrase, max(8, len(phrase) // n_lines + 1)) if n_lines > 1 else [" ".join(words)]
    boxes = [font.getbbox(line) for line in lines]
    text_w = max(b[2] for b in boxes)
    line_h = int(font.size * rng.uniform(1.2, 1.6))
    w = text_w + rng.randint(20, 300)
    h = line_h * len(lines) + rng.randint(20, 200)
    img, grey = _background(rng, (w, h))
    # Ink contrasts with the background by at least ~100 grey levels.
    ink_grey = rng.randint(0, max(0, grey - 100)) if grey > 127 else rng.randint(min(255, grey + 100), 255)
    tint = [int(np.clip(ink_grey + rng.randint(-30, 30), 0, 255)) for _ in range(3)]
    x0, y0 = rng.randint(5, w - text_w - 5), rng.randint(5, h - line_h * len(lines) - 5 + 1)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((x0, y0 + i * line_h), line, fill=tuple(tint), font=font)
    if rng.random() < 0.5:
        arr = np.asarray(img, dtype=np.float32) + np.random.default_rng(rng.randint(0, 2**31)).normal(
            0, rng.uniform(2, 12), (h, w, 3)
        )
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


def _bands(mask: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """Runs of True in a 1-d mask, merging gaps shorter than min_gap: [(start, end), ...]."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    runs, start, prev = [], idx[0], idx[0]
    for i in idx[1:]:
        if i - prev > min_gap:
            runs.append((start, prev + 1))
            start = i
        prev = i
    runs.append((start, prev + 1))
    return runs


def _ink(img: Image.Image) -> np.ndarray:
    """Ink strength in [0, 1] per pixel: distance from the background grey (the median)."""
    grey = np.asarray(img.convert("L").filter(ImageFilter.MedianFilter(3)), dtype=np.float32)
    d = np.abs(grey - np.median(grey))
    top = max(np.percentile(d, 99.5), 1.0)
    return np.clip(d / top, 0, 1)


def text_lines(img: Image.Image) -> list[Image.Image]:
    """Crop the text lines (black on white, grey). Lines come from the bottom up while they look
    like text lines (height within 2x of the bottom line), so a picture above the phrase is skipped."""
    ink = _ink(img)
    on = ink > 0.4
    rows = _bands(on.sum(1) > max(2, 0.002 * on.shape[1]), min_gap=max(2, img.height // 100))
    rows = [r for r in rows if r[1] - r[0] >= 6]
    if not rows:
        return []
    keep = [rows[-1]]
    for r in reversed(rows[:-1]):
        if (r[1] - r[0]) > 2 * (keep[-1][1] - keep[-1][0]):
            break
        keep.append(r)
    lines = []
    for y0, y1 in reversed(keep):
        cols = _bands(on[y0:y1].any(0), min_gap=10**6)
        x0, x1 = cols[0][0], cols[-1][1]
        pad = max(2, (y1 - y0) // 8)
        y0, y1 = max(0, y0 - pad), min(ink.shape[0], y1 + pad)
        x0, x1 = max(0, x0 - pad), min(ink.shape[1], x1 + pad)
        lines.append(Image.fromarray(((1 - ink[y0:y1, x0:x1]) * 255).astype(np.uint8)))
    return lines


def to_strip(lines: list[Image.Image], width: int = STRIP_WIDTH, height: int = STRIP_HEIGHT) -> Image.Image:
    """Scale each line to `height`, join them with a space-sized gap, fit into a fixed-width strip."""
    strip = Image.new("L", (width, height), 255)
    if not lines:
        return strip
    scaled = [ln.resize((max(1, round(ln.width * height / ln.height)), height), Image.BICUBIC) for ln in lines]
    gap = height // 3
    joined = Image.new("L", (sum(s.width for s in scaled) + gap * (len(scaled) - 1), height), 255)
    x = 0
    for s in scaled:
        joined.paste(s, (x, 0))
        x += s.width + gap
    if joined.width > width:  # too long: shrink, centre vertically
        h = max(8, round(height * width / joined.width))
        joined = joined.resize((width, h), Image.BICUBIC)
        strip.paste(joined, (0, (height - h) // 2))
    else:
        strip.paste(joined, (0, 0))
    return strip


def strip_tensor(strip: Image.Image) -> torch.Tensor:
    """Grey strip -> [1, 64, W] float in [-1, 1] (EasyOCR's normalisation)."""
    x = torch.from_numpy(np.asarray(strip, dtype=np.float32) / 255.0)
    return ((x - 0.5) / 0.5).unsqueeze(0)


def preprocess_images(images: list[Image.Image], width: int = STRIP_WIDTH) -> torch.Tensor:
    """Images -> pixel_values [b, 1, 64, width] for the `sea-tiny-vl` OCR tower."""
    return torch.stack([strip_tensor(to_strip(text_lines(im), width)) for im in images])
