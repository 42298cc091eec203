"""Built-in small multimodal models ("organisms") that show the cross-modal safety hole.

`load_builtin("sea-tiny-vl")` assembles, in memory and offline, transformers'
`LlavaForConditionalGeneration` from: the frozen EasyOCR English recogniser as vision tower
(`ocr.py`), the committed trained parts under `weights/sea-tiny-vl/` (projector, LoRA deltas merged
into the LLM, the `<image>` embedding row) and SmolLM2-135M-Instruct from the local cache
(`cache.smollm2_dir()`). The recipe that produces the trained parts is `recipe.py`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from sea_align.organism.audio import register as _register_audio
from sea_align.organism.ocr import register

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)
register()  # "sea_ocr_vision" is known to AutoConfig / AutoModel once this package is imported
_register_audio()  # "sea_whisper_audio" too (audio.py)

BUILTIN_NAMES = ("sea-tiny-vl", "sea-tiny-audio")
WEIGHTS_ROOT = Path(__file__).parent / "weights"


@dataclass
class BuiltinModel:
    model: "PreTrainedModel"  # LlavaForConditionalGeneration for "sea-tiny-vl"
    tokenizer: "PreTrainedTokenizerBase"  # SmolLM2's, plus "<image>" (= model.config.image_token_id)
    family: str  # "llava"
    preprocess: dict[str, Callable] = field(default_factory=dict)  # {"image": list[PIL] -> pixel_values}
    info: dict = field(default_factory=dict)  # recipe pins, weight files, warnings
    adapter_kwargs: dict = field(default_factory=dict)  # e.g. {"n_frames": 4} for the video model


def load_builtin(name: str, dtype: torch.dtype = torch.float32, weights_dir: str | Path | None = None,
                 llm_dir: str | Path | None = None, modality: str | None = None) -> BuiltinModel:
    """Assemble a built-in model offline. Without trained parts the projector is random (and
    `info["warnings"]` says so): the model runs but cannot read.

    `sea-tiny-vl` is `LlavaForConditionalGeneration` for images (modality None or "image") and
    `LlavaNextVideoForConditionalGeneration` for video (the same trained parts; frames go through
    the same tower)."""
    if name == "sea-tiny-audio":  # Whisper tiny.en + SmolLM2 in Qwen2-Audio (audio.py)
        from sea_align.organism.audio import load_builtin_audio
        return load_builtin_audio(dtype, weights_dir, llm_dir, modality)
    if name not in BUILTIN_NAMES:
        raise ValueError(f"unknown built-in model {name!r}; known: {', '.join(BUILTIN_NAMES)}")
    from sea_align.organism import assemble as A
    from sea_align.organism.cache import smollm2_dir
    from sea_align.organism.render import preprocess_images

    wdir = Path(weights_dir) if weights_dir else WEIGHTS_ROOT / name
    ldir = Path(llm_dir) if llm_dir else smollm2_dir()
    if modality not in (None, "image", "video"):
        raise ValueError(f"{name} takes image or video, not {modality}")
    video = modality == "video"
    tok = A.load_tokenizer(ldir, video=video)
    llm = A.load_llm(ldir)
    parts = A.load_parts(wdir)
    A.add_image_token(llm, tok, parts.get("image_token", {}).get("row"))
    warnings = []
    for lora in ("lora_text", "lora_mm"):
        if lora in parts:
            A.merge_lora(llm, parts[lora])
        else:
            warnings.append(f"{lora} missing under {wdir}: LLM not tuned by that stage")
    if "projector" not in parts:
        torch.manual_seed(0)
        warnings.append(f"no trained projector under {wdir}: RANDOM projector, the model cannot read images")
    if video:
        model = A.build_llava_next_video(llm, tok, parts.get("projector")).to(dtype)
    else:
        model = A.build_llava(llm, tok, parts.get("projector")).to(dtype)
    model.requires_grad_(False)
    for w in warnings:
        log.warning(w)
    pins = json.loads((wdir / "recipe.json").read_text()) if (wdir / "recipe.json").exists() else {}
    info = {"name": name, "llm_dir": str(ldir), "weights_dir": str(wdir),
            "weight_files": sorted(f"{k}.safetensors" for k in parts), "recipe": pins,
            "recipe_version": pins.get("recipe_version"), "seed": pins.get("seed"),
            "image_seq_length": A.NUM_SLOTS, "image_token": A.IMAGE_TOKEN, "warnings": warnings,
            # the tower's slots are token embeddings (zero when blank): their RMS sets synthesis' step size
            "encoder_rms": float(llm.get_input_embeddings().weight.float().pow(2).mean().sqrt())}
    if video:
        info.update(video_slots_per_frame=A.VIDEO_SLOTS, video_frames=A.VIDEO_FRAMES, video_token=A.VIDEO_TOKEN)
        return BuiltinModel(model=model, tokenizer=tok, family="llava_next_video",
                            preprocess={"image": preprocess_images}, info=info,
                            adapter_kwargs={"n_frames": A.VIDEO_FRAMES})
    return BuiltinModel(model=model, tokenizer=tok, family="llava", preprocess={"image": preprocess_images},
                        info=info)


__all__ = ["BUILTIN_NAMES", "BuiltinModel", "load_builtin"]
