"""The phrase rendered in a modality, for `synthesize.init: media`: a typography image (black on white), a
clip of typography frames (white on black), or espeak-ng speech, each with the blank item's geometry (side,
frames, seconds) so that the tower gives as many slots as the blank. The search for E then starts where the
frozen model already reads the phrase; the optimisation and the verification are unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from sea_align.benchmarks.typovideo import TYPO_FONTS, _draw, fit

SR = 16000


def typography(phrase: str, side: int, dark: bool = False) -> Image.Image:
    """The phrase centred on a `side` x `side` square, as large as it fits (greedy word wrap)."""
    margin = max(4, side // 16)
    fnt, lines, line_h = fit(phrase, TYPO_FONTS[0], (side - 2 * margin, side - 2 * margin), start=max(12, side // 5))
    bg, fg = ("black", "white") if dark else ("white", "black")
    return _draw(lines, phrase, fnt, line_h, side, bg, fg)


def speech(phrase: str, seconds: float) -> np.ndarray:
    """espeak-ng speech of the phrase in exactly `seconds` (faster speech when it would not fit, then cut)."""
    from sea_align.benchmarks.speech import speak

    n = int(SR * seconds)
    wav = speak(phrase)
    if len(wav) > n:
        wav = speak(phrase, speed=min(450, int(165 * len(wav) / n) + 10))
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(wav))] = wav[:n]
    return out


def render(modality: str, phrase: str, side: int, frames: int, seconds: float) -> Any:
    """The raw media an adapter's `encode` takes: a PIL image, a list of frames, or a 16 kHz waveform."""
    if modality == "image":
        return typography(phrase, side)
    if modality == "video":
        return [typography(phrase, side, dark=True)] * frames
    if modality == "audio":
        return speech(phrase, seconds)
    raise ValueError(f"no renderer for modality '{modality}'")
