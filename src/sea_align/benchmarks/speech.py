"""Offline speech for the audio attacks: espeak-ng text-to-speech, seeded noise, 16 kHz WAV files.

Everything here is deterministic for a given `random.Random`: the voice, the speaking rate and
pitch, the noise colour, length and level are drawn from it, and espeak-ng itself is deterministic.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np

from sea_align.runtime.io import DataError

SR = 16000  # Whisper / Qwen2-Audio rate
# espeak-ng voices (Debian's espeak-ng-data, no mbrola) that give audibly different speech.
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us+f3", "en-us+m7", "en-gb-x-gbclan")
SPEEDS = (135, 150, 165, 180)  # words per minute; espeak's default is 175
PITCHES = (35, 50, 65)  # espeak 0..99, default 50
NOISES = ("white", "pink", "brown")


def espeak_version() -> str:
    exe = shutil.which("espeak-ng")
    if not exe:
        return "missing"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    return out.split("  ")[0].strip() or "unknown"


def voice_choice(rng: random.Random) -> dict[str, object]:
    return {"voice": rng.choice(VOICES), "speed": rng.choice(SPEEDS), "pitch": rng.choice(PITCHES)}


def speak(text: str, voice: str = "en-us", speed: int = 165, pitch: int = 50) -> np.ndarray:
    """Mono float32 speech at 16 kHz. The text goes through stdin (a phrase starting with '-' is safe)."""
    exe = shutil.which("espeak-ng")
    if not exe:
        raise DataError("espeak-ng not found: install the Debian package 'espeak-ng' (scripts/setup.sh does)")
    proc = subprocess.run(
        [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=120,
    )
    if proc.returncode != 0 or len(proc.stdout) < 100:
        raise DataError(f"espeak-ng failed on {text[:40]!r} (voice {voice}): {proc.stderr.decode()[:200]}")
    import soundfile as sf

    wav, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    from sea_align.models.media import resample

    return resample(wav, sr, SR)


def noise(rng: random.Random, seconds: float, kind: str, rms: float) -> np.ndarray:
    """Coloured Gaussian noise: white (flat), pink (1/f power), brown (1/f^2 power), scaled to `rms`."""
    n = int(seconds * SR)
    g = np.random.default_rng(rng.getrandbits(63)).standard_normal(n)
    if kind != "white":
        spec = np.fft.rfft(g)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec /= f ** (0.5 if kind == "pink" else 1.0)
        g = np.fft.irfft(spec, n)
    g = g - g.mean()
    return (g * (rms / (np.sqrt((g**2).mean()) + 1e-12))).astype(np.float32)


def normalise(wav: np.ndarray, peak: float = 0.9) -> np.ndarray:
    m = float(np.abs(wav).max()) if wav.size else 0.0
    return (wav * (peak / m)).astype(np.float32) if m > 0 else wav


def noise_then(speech: np.ndarray, rng: random.Random) -> tuple[np.ndarray, dict[str, object]]:
    """KPT_noise layout: 3-6 s of noise, a short gap, then the spoken phrase at the end."""
    kind, secs, rms = rng.choice(NOISES), round(rng.uniform(3.0, 6.0), 2), round(rng.uniform(0.05, 0.15), 3)
    gap = np.zeros(int(0.3 * SR), np.float32)
    wav = np.concatenate([noise(rng, secs, kind, rms), gap, normalise(speech)])
    return wav, {"noise": kind, "noise_seconds": secs, "noise_rms": rms}


def write_wav(path: Path, wav: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0), SR, subtype="PCM_16", format="WAV")
