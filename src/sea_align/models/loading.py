"""Load any supported model by name or path and wrap it in its family adapter.

`load_adapter("sea-tiny-vl")` (built-in), `load_adapter("tiny-random-qwen2_vl")` (random, for tests),
`load_adapter("/path/to/llava-1.5-7b-hf")` or a hub id (honours HF_HUB_OFFLINE=1).
`device="auto"` puts the model on the GPU when there is one, `dtype="auto"` picks bf16 where native
(`sea_align.runtime.device`); `device_map="auto"` spreads a pretrained model over the GPUs (accelerate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sea_align.models.base import BaseAdapter, ModelError
from sea_align.models.registry import adapter_class, builtin_names, check_family, is_builtin, load_builtin, model_class

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_adapter(
    spec: str,
    dtype: str | torch.dtype = "float32",
    adapter_dir: str | None = None,
    modality: str | None = None,
    trust_remote_code: bool = False,
    device: str = "cpu",
    device_map: str | None = None,
) -> BaseAdapter:
    """Resolve `spec`, load model + tokenizer onto `device` (auto|cpu|cuda|cuda:N|mps), wrap in the family
    adapter; optionally load a PEFT adapter. A dtype of "auto" is resolved for the device."""
    device, dtype = _placement(device, dtype, spec)
    dt = DTYPES[dtype] if isinstance(dtype, str) else dtype
    builtin = spec.startswith("tiny-random-") or is_builtin(spec)
    if device_map and builtin:
        raise ModelError(f"--device-map {device_map}: only for a pretrained model directory or hub id, not {spec}")
    if builtin:
        adapter = _load_builtin_or_test(spec, dt, modality)
        adapter.model.to(device)
    else:
        adapter = _load_pretrained(spec, dt, trust_remote_code, device_map or (None if device == "cpu" else device))
    if adapter_dir:
        _load_peft(adapter, adapter_dir)
    if modality:
        adapter.check_modality(modality)
    adapter.model.eval()
    adapter.model.requires_grad_(False)
    return adapter


def _placement(device: str, dtype: str | torch.dtype, spec: str) -> tuple[str, str | torch.dtype]:
    """(device, dtype) resolved for this machine and model; an unavailable device is a one-line DeviceError."""
    from sea_align.runtime.device import choose

    if isinstance(dtype, torch.dtype):
        return choose(device, "float32")[0], dtype
    return choose(device, dtype, model=spec)


def _load_builtin_or_test(spec: str, dt: torch.dtype, modality: str | None) -> BaseAdapter:
    """The built-in models (entry points, `registry.load_builtin`) and the tiny random test models,
    built here on the CPU."""
    if spec.startswith("tiny-random-"):
        from sea_align.models.tiny import build_tiny

        family = spec[len("tiny-random-") :]
        check_family(family, where=f"--model {spec}: ")
        model, tok, procs = build_tiny(family, dtype=dt)
        return adapter_class(family)(model, tok, procs)
    built = load_builtin(spec, dt, modality)
    adapter = adapter_class(built.family)(built.model, built.tokenizer, dict(built.preprocess), **built.adapter_kwargs)
    adapter.builtin_info = built.info
    return adapter


def _load_pretrained(spec: str, dt: torch.dtype, trust_remote_code: bool, device_map: str | None) -> BaseAdapter:
    """`device_map`: None (CPU), a device ("cuda:0": weights load straight onto it) or "auto" (accelerate)."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        cfg = AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ModelError(
            f"--model {spec}: not a built-in name, a local model directory or a reachable hub id "
            f"(built-ins: {', '.join(builtin_names())}; {str(e).splitlines()[0]})"
        ) from None
    check_family(cfg.model_type, where=f"--model {spec}: ")
    model = model_class(cfg.model_type).from_pretrained(
        spec, dtype=dt, trust_remote_code=trust_remote_code, device_map=device_map
    )
    tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
    if Path(spec).is_dir():
        _read_chat_template(Path(spec), tok)
    return adapter_class(cfg.model_type)(model, tok, _processor_configs(spec))


def _processor_configs(spec: str) -> dict[str, Any]:
    """{"preprocessor": preprocessor_config.json, "video_preprocessor": ...} of a directory or (cached) hub
    id, where present: the family's own processor settings (sizes, pixel bounds, mean/std, mel bins)."""
    from transformers.utils import cached_file

    out = {}
    for key in ("preprocessor", "video_preprocessor"):
        f = cached_file(
            spec,
            f"{key}_config.json",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        if f:
            out[key] = json.loads(Path(f).read_text())
    return out


def _read_chat_template(d: Path, tok: Any) -> None:
    """Processors keep the chat template beside the tokenizer in recent checkpoints."""
    if getattr(tok, "chat_template", None):
        return
    if (d / "chat_template.jinja").is_file():
        tok.chat_template = (d / "chat_template.jinja").read_text()
    elif (d / "chat_template.json").is_file():
        tok.chat_template = json.loads((d / "chat_template.json").read_text()).get("chat_template")


def _load_peft(adapter: BaseAdapter, adapter_dir: str) -> None:
    """Load the PEFT adapter in `adapter_dir` onto the adapter's model and attach it."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise ModelError(f"--adapter {adapter_dir}: no adapter_config.json there (expected a PEFT adapter directory)")
    peft_model = PeftModel.from_pretrained(adapter.model, adapter_dir)
    peft_model.eval()
    adapter.attach_peft(peft_model)
