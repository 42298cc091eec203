"""Training checkpoints without pickle: parameters and optimizer state as plain tensors in one
safetensors file, everything else (step, fingerprint, the optimizer's param groups) as JSON metadata.
Written atomically (temp file + rename), so a kill mid-write leaves the previous checkpoint intact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sea_align.runtime.faults import crash_point
from sea_align.runtime.io import atomic_path


def save_checkpoint(
    path: Path, params: dict[str, torch.nn.Parameter], opt: torch.optim.Optimizer, info: dict[str, Any]
) -> None:
    """LoRA weights + AdamW state as plain tensors in safetensors (no pickle); `info` in the metadata."""
    sd = opt.state_dict()
    tensors = {f"param.{n}": p.detach().contiguous().cpu() for n, p in params.items()}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().contiguous().cpu()
    meta = {"info": json.dumps(info), "param_groups": json.dumps(sd["param_groups"])}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        crash_point("align.ckpt_tmp")


def load_checkpoint(
    path: Path, params: dict[str, torch.nn.Parameter], opt: torch.optim.Optimizer, fingerprint: str | None = None
) -> dict[str, Any]:
    """Load a checkpoint into `params` and `opt`; -> its `info`. With `fingerprint`, a checkpoint whose
    info holds another one is not loaded (its info is still returned): weights trained under another
    config must not leak into a fresh start. Every tensor is read and checked before any is copied, so a
    damaged file raises with `params` and `opt` untouched."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        info = json.loads(meta["info"])
        if fingerprint is not None and info.get("fingerprint") != fingerprint:
            return info
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for n, p in params.items():
        t = tensors.get(f"param.{n}")
        if t is None or t.shape != p.shape:
            raise ValueError(f"{path}: parameter {n} is {'missing' if t is None else tuple(t.shape)}")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})  # checks, then sets
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[f"param.{n}"].to(p.device))
    return info
