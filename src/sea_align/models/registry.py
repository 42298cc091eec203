"""Family -> (transformers model class, adapter class). One line per supported family."""
from __future__ import annotations

import importlib

from sea_align.models.base import ModelError

FAMILIES = {
    # model_type: (transformers class, adapter module:class)
    "llava": ("LlavaForConditionalGeneration", "llava:LlavaAdapter"),
    "llava_next_video": ("LlavaNextVideoForConditionalGeneration", "llava_next_video:LlavaNextVideoAdapter"),
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "qwen2_vl:Qwen2VLAdapter"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "qwen2_vl:Qwen2VLAdapter"),
    "qwen2_audio": ("Qwen2AudioForConditionalGeneration", "qwen2_audio:Qwen2AudioAdapter"),
}


def check_family(model_type: str, where: str = "") -> None:
    if model_type not in FAMILIES:
        raise ModelError(f"{where}unsupported model family '{model_type}' "
                         f"(supported: {', '.join(sorted(FAMILIES))})")


def model_class(model_type: str):
    check_family(model_type)
    import transformers
    return getattr(transformers, FAMILIES[model_type][0])


def adapter_class(model_type: str):
    check_family(model_type)
    mod, cls = FAMILIES[model_type][1].split(":")
    return getattr(importlib.import_module(f"{__package__}.{mod}"), cls)
