"""Family -> (transformers model class, adapter class), one line per supported family; and the built-in
models, which installed packages declare as entry points in the group "sea_align.models" (this package's
own live in `sea_align.organism`, which the core never imports)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from sea_align.models.types import ModelError

if TYPE_CHECKING:
    import torch

FAMILIES = {
    # model_type: (transformers class, adapter module:class)
    "llava": ("LlavaForConditionalGeneration", "llava:LlavaAdapter"),
    "llava_next_video": ("LlavaNextVideoForConditionalGeneration", "llava_next_video:LlavaNextVideoAdapter"),
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "qwen2_vl:Qwen2VLAdapter"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "qwen2_vl:Qwen2VLAdapter"),
    "qwen2_audio": ("Qwen2AudioForConditionalGeneration", "qwen2_audio:Qwen2AudioAdapter"),
}
BUILTIN_GROUP = "sea_align.models"  # entry point: name -> load_builtin(name, dtype, modality, **kw) -> BuiltModel


@dataclass
class BuiltModel:
    """What a built-in model's loader returns: the parts `load_adapter` wraps in the family's adapter."""

    model: Any  # a transformers model of one of FAMILIES, e.g. LlavaForConditionalGeneration
    tokenizer: Any  # with the family's placeholder tokens
    family: str  # a FAMILIES key, e.g. "llava"
    preprocess: dict[str, Callable] = field(default_factory=dict)  # {"image": list[PIL] -> pixel_values}
    info: dict = field(default_factory=dict)  # recipe pins, weight files, warnings, "encoder_rms"
    adapter_kwargs: dict = field(default_factory=dict)  # e.g. {"n_frames": 4} for a video model


def check_family(model_type: str, where: str = "") -> None:
    if model_type not in FAMILIES:
        raise ModelError(f"{where}unsupported model family '{model_type}' (supported: {', '.join(sorted(FAMILIES))})")


def model_class(model_type: str):
    check_family(model_type)
    import transformers

    return getattr(transformers, FAMILIES[model_type][0])


def adapter_class(model_type: str):
    check_family(model_type)
    mod, cls = FAMILIES[model_type][1].split(":")
    return getattr(importlib.import_module(f"{__package__}.{mod}"), cls)


def _builtins() -> dict[str, Any]:
    """name -> entry point of every built-in model the installed packages declare (the first one per name)."""
    out: dict[str, Any] = {}
    for ep in entry_points(group=BUILTIN_GROUP):
        out.setdefault(ep.name, ep)
    return out


def builtin_names() -> tuple[str, ...]:
    """The built-in model names the installed packages declare, sorted."""
    return tuple(sorted(_builtins()))


def builtin_teacher(name: str) -> str | None:
    """The model that answers a built-in's benign requests in distillation, where its loader names one
    (the loader's `teachers` attribute, {name: teacher}); None: the model answers for itself."""
    ep = _builtins().get(name.split(":")[0])
    return getattr(ep.load(), "teachers", {}).get(name) if ep is not None else None


def is_builtin(spec: str) -> bool:
    """`spec` names a built-in model ("NAME" or "NAME:VARIANT"; the loader reads the variant)."""
    return spec.split(":")[0] in _builtins()


def load_builtin(spec: str, dtype: torch.dtype, modality: str | None = None) -> BuiltModel:
    """Build the built-in model `spec` through its entry point; a loader's refusal is a ModelError."""
    found = _builtins()
    ep = found.get(spec.split(":")[0])
    if ep is None:
        raise ModelError(f"--model {spec}: not a built-in model (built-ins: {', '.join(sorted(found))})")
    try:
        return ep.load()(spec, dtype=dtype, modality=modality)
    except (ValueError, FileNotFoundError) as e:
        raise ModelError(f"--model {spec}: {e}") from None
