"""Reading media from disk with clear errors, and the small pixel/audio preprocessing we own.

We keep preprocessing in numpy/PIL (no torchvision/torchaudio): CLIP-style resize+crop+normalise for
LLaVA towers, the Qwen2-VL patch layout, and Whisper log-mel features via transformers'
numpy feature extractor.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .io import DataError

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
    """Decode a video into `n_frames` frames sampled uniformly (PyAV). A list of PIL frames passes through."""
    if isinstance(src, (list, tuple)):
        frames = [load_image(f) for f in src]
    else:
        path = Path(src)
        if not path.is_file():
            raise DataError(f"{path}: video file not found")
        try:
            import av
            with av.open(str(path)) as container:
                frames = [f.to_image().convert("RGB") for f in container.decode(video=0)]
        except Exception as e:  # PyAV raises many error types for corrupt files
            raise DataError(f"{path}: not a readable video ({type(e).__name__})") from None
    if not frames:
        raise DataError(f"{src}: video has no frames")
    idx = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
    return [frames[i] for i in idx]


def load_audio(src: Any, sr: int = 16000) -> np.ndarray:
    """Mono float32 waveform at `sr` Hz. WAV/FLAC via soundfile, anything else via PyAV."""
    if isinstance(src, np.ndarray):
        wav = src.astype(np.float32)
    else:
        path = Path(src)
        if not path.is_file():
            raise DataError(f"{path}: audio file not found")
        if path.stat().st_size == 0:
            raise DataError(f"{path}: audio has zero length (empty file)")
        wav = None
        try:
            import soundfile as sf
            data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
            wav = _resample(data.mean(axis=1), file_sr, sr)
        except Exception:
            wav = _decode_av(path, sr)
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
        chunks = []
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    except Exception as e:
        raise DataError(f"{path}: not a readable audio file ({type(e).__name__})") from None


def _resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out or wav.size == 0:
        return wav.astype(np.float32)
    n_out = int(round(len(wav) * sr_out / sr_in))
    x_old = np.linspace(0.0, 1.0, num=len(wav), endpoint=False)
    x_new = np.linspace(0.0, 1.0, num=n_out, endpoint=False)
    return np.interp(x_new, x_old, wav).astype(np.float32)


def clip_pixels(images: Sequence[Image.Image], size: int, mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """Resize the short side to `size`, centre-crop `size`x`size`, normalise: [n, 3, size, size]."""
    out = []
    for im in images:
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        arr = np.asarray(im, dtype=np.float32) / 255.0
        out.append(((arr - np.array(mean)) / np.array(std)).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def qwen_patches(frames: Sequence[Image.Image], size: int, patch: int = 14, merge: int = 2, temporal: int = 2,
                 mean=CLIP_MEAN, std=CLIP_STD) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Qwen2-VL pixel layout for one image (1 frame) or video: returns ([t*h*w, 3*T*P*P], (t, h, w)).

    Frames are resized to `size`x`size` (a multiple of patch*merge); an image is repeated to fill one
    temporal patch, a video is padded with its last frame to a multiple of `temporal`."""
    unit = patch * merge
    size = max(unit, size // unit * unit)
    arr = clip_pixels([f.resize((size, size), Image.BICUBIC) for f in frames], size, mean, std)  # [n,3,S,S]
    if len(arr) % temporal:
        arr = np.concatenate([arr] + [arr[-1:]] * (temporal - len(arr) % temporal))
    t, gh, gw = len(arr) // temporal, size // patch, size // patch
    x = arr.reshape(t, temporal, 3, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * gh * gw, 3 * temporal * patch * patch), (t, gh, gw)


def image_bytes_ok(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).verify()
        return True
    except Exception:
        return False
