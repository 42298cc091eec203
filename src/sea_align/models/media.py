"""Reading media from disk with clear errors, and the pixel/audio preprocessing we own.

We keep preprocessing in numpy/PIL/PyAV (no torchvision/torchaudio) and make the same tensors as each
family's transformers processor (PIL backend): CLIP resize + centre crop + normalise for LLaVA towers,
Qwen2-VL's dynamic resolution and patch layout, and Whisper log-mel features (transformers' own
feature extractor) on audio resampled by PyAV. `tests/test_inputs.py` checks the equality.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sea_align.runtime.io import DataError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_image(src: Any) -> Image.Image:
    if isinstance(src, Image.Image):
        return src.convert("RGB")
    path = Path(src)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # PIL raises OSError, SyntaxError, struct.error, DecompressionBombError ... on bad files
        raise DataError(f"{path}: not a readable image ({type(e).__name__})") from None


def load_video(src: Any, n_frames: int = 8) -> list[Image.Image]:
    """`n_frames` frames sampled uniformly (frame i*(n-1)/(n_frames-1), rounded) from a video (PyAV) or a
    list of frames. Only the chosen frames are converted to images, so memory does not grow with length."""
    if isinstance(src, (list, tuple)):
        frames = [load_image(f) for f in src]
        if not frames:
            raise DataError(f"{src}: video has no frames")
        return [frames[i] for i in frame_index(len(frames), n_frames)]
    path = Path(src)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    try:
        total = _video_stream_frames(path)  # container metadata; 0 when unknown
        frames, seen = _decode_at(path, frame_index(total, n_frames))
        if seen != total:  # unknown (or wrong) metadata: that pass only counted, decode again
            frames, seen = _decode_at(path, frame_index(seen, n_frames))
    except DataError:
        raise
    except Exception as e:  # PyAV raises many error types for corrupt files
        raise DataError(f"{path}: not a readable video ({type(e).__name__})") from None
    if not frames:
        raise DataError(f"{path}: video has no frames")
    return frames


def frame_index(total: int, n_frames: int) -> np.ndarray:
    """Indices of `n_frames` uniformly spaced frames among `total` (empty when total is 0)."""
    return np.linspace(0, total - 1, n_frames).round().astype(int) if total > 0 else np.zeros(0, int)


def _video_stream_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DataError(f"{path}: has no video stream")
        return int(container.streams.video[0].frames or 0)


def _decode_at(path: Path, index: np.ndarray) -> tuple[list[Image.Image], int]:
    """Decode every frame, convert only those at `index` (repeats allowed): (frames in `index` order, count)."""
    import av

    wanted, kept, seen = set(index.tolist()), {}, 0
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            seen = i + 1
            if i in wanted:
                kept[i] = frame.to_image().convert("RGB")
    if len(kept) < len(wanted):  # fewer frames than the metadata said: the caller decodes again
        return [], seen
    return [kept[i] for i in index.tolist()], seen


def load_audio(src: Any, sr: int = 16000) -> np.ndarray:
    """Mono float32 waveform at `sr` Hz. WAV/FLAC via soundfile, anything else via PyAV; any other
    rate is resampled by PyAV (FFmpeg's swresample). An array passes through as already at `sr`."""
    if isinstance(src, np.ndarray):
        wav = src.astype(np.float32)
    else:
        path = Path(src)
        if not path.is_file():
            raise DataError(f"{path}: audio file not found")
        if path.stat().st_size == 0:
            raise DataError(f"{path}: audio has zero length (empty file)")
        try:
            import soundfile as sf

            data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
            mono = data.mean(axis=1)
        except Exception:
            wav = _decode_av(path, sr)
        else:
            wav = resample(mono, file_sr, sr)
    if wav.size == 0:
        raise DataError(f"{src}: audio has zero length")
    return wav


def check_media(kind: str, src: str | Path) -> None:
    """Cheap up-front check of one media file (before a stage writes anything): DataError if it is
    missing, empty or undecodable. Images are decoded, audio fully read, videos opened."""
    path = Path(src)
    if not path.is_file():
        raise DataError(f"{path}: {kind} file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: {kind} file has zero length (empty file)")
    if kind == "image":
        load_image(path)
    elif kind == "audio":
        load_audio(path)
    elif kind == "video":
        try:
            import av

            with av.open(str(path)) as container:
                ok = bool(container.streams.video)
        except Exception as e:
            raise DataError(f"{path}: not a readable video ({type(e).__name__})") from None
        if not ok:
            raise DataError(f"{path}: has no video stream")
    else:
        raise DataError(f"{path}: unknown media type {kind!r}")


def _decode_av(path: Path, sr: int) -> np.ndarray:
    try:
        import av

        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            return _drain(resampler, container.decode(audio=0))
    except Exception as e:
        raise DataError(f"{path}: not a readable audio file ({type(e).__name__})") from None


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Mono float32 `wav` from `sr_in` to `sr_out` Hz with PyAV's resampler (the one used for decoding)."""
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if sr_in == sr_out or wav.size == 0:
        return wav
    import av

    frame = av.AudioFrame.from_ndarray(wav[None], format="flt", layout="mono")
    frame.sample_rate = int(sr_in)
    return _drain(av.AudioResampler(format="flt", layout="mono", rate=sr_out), [frame])


def _drain(resampler: Any, frames: Any) -> np.ndarray:
    """Resample `frames` and flush the resampler's buffered tail (else the last few ms are lost)."""
    chunks = [out.to_ndarray().reshape(-1) for f in frames for out in resampler.resample(f)]
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def normalise(im: Image.Image, mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """uint8 RGB -> [3, H, W] float32, in the processors' arithmetic (x/255 in float64, then float32 (x-mean)/std)."""
    x = (np.asarray(im, dtype=np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1)


def clip_pixels(
    images: Sequence[Image.Image], size: int, crop: int = 0, mean=CLIP_MEAN, std=CLIP_STD, resample: int = Image.BICUBIC
) -> np.ndarray:
    """CLIPImageProcessor: short side to `size` (long side truncated), centre crop `crop` (default
    `size`), normalise: [n, 3, crop, crop]."""
    crop = crop or size
    out = []
    for im in images:
        w, h = im.size
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        im = im.resize((nw, nh), resample)
        left, top = (nw - crop) // 2, (nh - crop) // 2
        out.append(normalise(im.crop((left, top, left + crop, top + crop)), mean, std))
    return np.stack(out)


QWEN_IMAGE_PIXELS = (56 * 56, 28 * 28 * 1280)  # Qwen2VLImageProcessor's default (min_pixels, max_pixels)
QWEN_VIDEO_PIXELS = (128 * 28 * 28, 768 * 28 * 28)  # Qwen2VLVideoProcessor's default


def smart_size(h: int, w: int, unit: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's dynamic resolution: (height, width) with sides multiples of `unit` (patch * merge), area
    within [min_pixels, max_pixels] where possible and the aspect ratio kept (transformers' smart_resize)."""
    if max(h, w) / min(h, w) > 200:
        raise DataError(f"image of {w}x{h} pixels: aspect ratio over 200, Qwen2-VL cannot take it")
    rh, rw = round(h / unit) * unit, round(w / unit) * unit
    if rh * rw > max_pixels:
        shrink = math.sqrt(h * w / max_pixels)
        rh = max(unit, math.floor(h / shrink / unit) * unit)
        rw = max(unit, math.floor(w / shrink / unit) * unit)
    elif rh * rw < min_pixels:
        grow = math.sqrt(min_pixels / (h * w))
        rh, rw = math.ceil(h * grow / unit) * unit, math.ceil(w * grow / unit) * unit
    return rh, rw


def qwen_patches(
    frames: Sequence[Image.Image],
    patch: int = 14,
    merge: int = 2,
    temporal: int = 2,
    pixels: tuple[int, int] = QWEN_IMAGE_PIXELS,
    size: int = 0,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    resample: int = Image.BICUBIC,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Qwen2-VL pixel layout for one image (1 frame) or video: ([t*h*w, 3*T*P*P], grid (t, h, w)).

    Each frame is resized to `smart_size` within `pixels` = (min, max) as the family's processor does,
    or to a pinned `size` x `size` square when `size` > 0. An image is repeated to fill one temporal
    patch, a video padded with its last frame to a multiple of `temporal`."""
    unit = patch * merge
    w, h = frames[0].size
    rh, rw = (max(unit, size // unit * unit),) * 2 if size else smart_size(h, w, unit, *pixels)
    arr = np.stack([normalise(f.resize((rw, rh), resample), mean, std) for f in frames])  # [n, 3, H, W]
    if len(arr) % temporal:
        arr = np.concatenate([arr] + [arr[-1:]] * (temporal - len(arr) % temporal))
    t, gh, gw = len(arr) // temporal, rh // patch, rw // patch
    x = arr.reshape(t, temporal, 3, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # [t, h/m, w/m, m, m, 3, T, P, P]: merge groups contiguous
    return np.ascontiguousarray(x).reshape(t * gh * gw, 3 * temporal * patch * patch), (t, gh, gw)


def pixel_bounds(cfg: dict[str, Any], default: tuple[int, int]) -> tuple[int, int]:
    """(min_pixels, max_pixels) of a Qwen2-VL processor config (`min_pixels`/`max_pixels` win over `size`)."""
    size = cfg.get("size") if isinstance(cfg.get("size"), dict) else {}
    lo = cfg.get("min_pixels") or size.get("shortest_edge") or size.get("min_pixels") or default[0]
    hi = cfg.get("max_pixels") or size.get("longest_edge") or size.get("max_pixels") or default[1]
    return int(lo), int(hi)


def image_bytes_ok(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).verify()
        return True
    except Exception:
        return False
