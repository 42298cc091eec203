"""Which device and dtype a model loads with: pure functions of what the machine has.

`probe()` asks torch what is there (a `Machine`); `resolve_device` / `resolve_dtype` decide from a
`Machine` alone, so the choice is testable on a CPU-only machine by passing a made-up one.
- device `auto`: the GPU when there is one (CUDA, then Apple MPS), else the CPU.
- dtype `auto`: bfloat16 where the device computes it natively: a CUDA card with bf16 (compute
  capability 8.0+), or a CPU with AVX512-BF16 or AMX for a model of at least `CPU_BF16_MIN_PARAMS`
  parameters, where it was measured faster with the same verdicts (`sea bench dtype`, docs/results.md,
  "Speed"); else float32 (bf16 on an AVX2-only CPU is emulated and slower; the tiny random test models
  stay float32).
Under a multi-process launch (WORLD_SIZE > 1) `auto` and `cuda` mean this process's card, cuda:LOCAL_RANK.
This module imports no torch until `probe()` is called: the CLI validates flags with it before any model loads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sea_align.runtime.io import DataError

DEVICES = "auto, cpu, cuda, cuda:N, mps"
DTYPES = ("auto", "float32", "bfloat16", "float16")
_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(DataError):
    """A device that is malformed or not on this machine (one-line message)."""


@dataclass(frozen=True)
class Machine:
    """What the machine offers, as far as the choice is concerned."""

    cuda_count: int = 0  # CUDA devices torch sees
    cuda_bf16: bool = False  # the CUDA card computes bfloat16 natively
    mps: bool = False  # Apple Metal backend available
    cpu_bf16: bool = False  # the CPU computes bfloat16 natively (AVX512-BF16 or AMX)
    local_rank: int | None = None  # this process's rank on its node under a multi-process launch


def check_spec(spec: str) -> str:
    """The spec itself, if it is well formed (no torch needed); argparse `type=` and config validation."""
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise DeviceError(f"device {spec!r}: expected one of {DEVICES}")
    return spec


def probe() -> Machine:
    """Ask torch (imported here, not at module import) what this machine has."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    rank = (
        int(os.environ["LOCAL_RANK"])
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("LOCAL_RANK", "").isdigit()
        else None
    )
    return Machine(
        cuda_count=n,
        cuda_bf16=bool(n and torch.cuda.is_bf16_supported()),
        mps=mps,
        local_rank=rank,
        cpu_bf16=bf16_native("cpu") == "bf16",
    )


def resolve_device(spec: str, m: Machine) -> str:
    """`auto` -> cuda / mps / cpu by what `m` has; an explicit device must exist on `m`."""
    check_spec(spec)
    if spec == "auto":
        spec = "cuda" if m.cuda_count else ("mps" if m.mps else "cpu")
    if spec.startswith("cuda"):
        return _cuda(spec, m)
    if spec == "mps" and not m.mps:
        raise DeviceError("device 'mps': Apple MPS is not available on this machine (use --device auto or cpu)")
    return spec


def _cuda(spec: str, m: Machine) -> str:
    if not m.cuda_count:
        raise DeviceError(f"device '{spec}': no CUDA GPU on this machine (torch sees none; use --device auto or cpu)")
    if spec == "cuda":
        return f"cuda:{m.local_rank}" if m.local_rank is not None else "cuda:0"
    index = int(spec.split(":")[1])
    if index >= m.cuda_count:
        raise DeviceError(
            f"device '{spec}': this machine has {m.cuda_count} CUDA GPU(s) (cuda:0..cuda:{m.cuda_count - 1})"
        )
    return spec


CPU_BF16_MIN_PARAMS = 100_000_000  # measured faster in bf16 at 135M and 1.5B (the built-ins); smaller: not measured


def resolve_dtype(spec: str, device: str, m: Machine, params: int | None = None) -> str:
    """`auto` -> bfloat16 on a CUDA card with native bf16, or on a CPU with native bf16 for a model of at
    least CPU_BF16_MIN_PARAMS parameters (`params`; None = unknown); else float32. An explicit dtype is kept."""
    if spec not in DTYPES:
        raise DeviceError(f"dtype {spec!r}: expected one of {', '.join(DTYPES)}")
    if spec != "auto":
        return spec
    if device.startswith("cuda"):
        return "bfloat16" if m.cuda_bf16 else "float32"
    if device == "cpu" and m.cpu_bf16 and params is not None and params >= CPU_BF16_MIN_PARAMS:
        return "bfloat16"
    return "float32"


def _params(model: str | None) -> int | None:
    """The model's parameter count where it can be known without loading it (modelsize.param_count)."""
    if not model:
        return None
    try:
        from sea_align.runtime.modelsize import param_count

        return param_count(model)[0]
    except Exception:  # noqa: BLE001 - unknown size: auto keeps float32 on the CPU
        return None


def choose(
    device: str = "auto", dtype: str = "auto", machine: Machine | None = None, model: str | None = None
) -> tuple[str, str]:
    """(device, dtype) for this machine (probed unless given); `model` (a name or directory) lets `auto`
    pick bf16 on a CPU with native bf16 for a model large enough to gain from it."""
    m = machine if machine is not None else probe()
    dev = resolve_device(device, m)
    params = _params(model) if dtype == "auto" and dev == "cpu" and m.cpu_bf16 else None
    return dev, resolve_dtype(dtype, dev, m, params)


def bf16_native(device: str = "cpu") -> str:
    """'bf16' where bfloat16 matmuls are native (a CUDA card with bf16, or a CPU with AVX512-BF16 or
    AMX), else 'none': emulated bf16 on an older CPU is slower than float32."""
    import torch

    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "none"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = f.read()
    except OSError:
        return "none"
    return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "none"
