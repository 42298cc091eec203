"""A model's size without loading it, and the memory a device has: what `dtype: auto` and `sea run --plan`
read. The built-ins' parameter counts are recorded with their measured rates (data/rates.json); any other
model's come from its safetensors headers."""

from __future__ import annotations

import json
import math
import struct
from importlib import resources
from pathlib import Path
from typing import Any


def rates() -> dict[str, Any]:
    """data/rates.json: the measured stage rates (and parameter counts) per built-in, device and dtype."""
    return json.loads(resources.files("sea_align").joinpath("data/rates.json").read_text(encoding="utf-8"))


def safetensors_params(folder: str | Path) -> int:
    """Parameters stored in a folder's *.safetensors files, read from their headers only."""
    n = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with f.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        n += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return n


def param_count(model: str) -> tuple[int | None, str]:
    """(parameters, where the count comes from); None when it cannot be known without a download."""
    for r in rates()["rates"]:
        if r["model"] == model:
            return r["params"], "recorded"
    if model.startswith("tiny-random-"):
        return None, "a tiny random model (well under a million parameters)"
    folder = Path(model)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model, local_files_only=True, allow_patterns=["*.json", "*.safetensors"]))
        except Exception:  # noqa: BLE001 - any miss means: not on this machine
            return None, "not on this machine yet (the run downloads it)"
    n = safetensors_params(folder)
    return (n, "its safetensors files") if n else (None, f"no *.safetensors in {folder}")


def device_memory(device: str) -> tuple[int | None, str]:
    """(bytes, what) the device offers: a CUDA card's memory, else the machine's RAM."""
    if device.startswith("cuda"):
        import torch

        idx = int(device.split(":")[1]) if ":" in device else 0
        p = torch.cuda.get_device_properties(idx)
        return p.total_memory, p.name
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        return kb * 1024, "RAM"
    except (OSError, StopIteration, ValueError):
        return None, "RAM"
