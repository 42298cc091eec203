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


def load_checkpoint(path: Path, params: dict[str, torch.nn.Parameter], opt: torch.optim.Optimizer) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[f"param.{n}"].to(p.device))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["info"])
