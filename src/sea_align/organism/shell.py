"""`smollm2-llava`: the real SmolLM2-135M-Instruct inside a transformers LLaVA shell with a small
*untrained* CLIP tower (36 slots). Synthesis and alignment are real here; reading real images is not
(the tower is random). Used to measure synthesis on a real LLM and by the slow tests."""

from __future__ import annotations

from pathlib import Path

import torch

from sea_align.models.registry import BuiltModel


def build_smollm2_llava(dtype: torch.dtype = torch.float32, seed: int = 0, llm_dir: str | Path | None = None):
    """(LlavaForConditionalGeneration, tokenizer with `<image>`); the tower and projector from `seed`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration

    from sea_align.organism.cache import smollm2_dir

    d = Path(llm_dir) if llm_dir else smollm2_dir()
    tok = AutoTokenizer.from_pretrained(d)
    if tok.convert_tokens_to_ids("<image>") in (None, tok.unk_token_id):
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    lm = AutoModelForCausalLM.from_pretrained(d, dtype=dtype)
    torch.manual_seed(seed)  # the new `<image>` row is drawn at random: the same one at every load
    lm.resize_token_embeddings(len(tok), mean_resizing=False)
    clip = dict(
        model_type="clip_vision_model",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=48,
        patch_size=8,
        projection_dim=64,
    )
    cfg = AutoConfig.for_model(
        "llava",
        vision_config=clip,
        text_config=lm.config.to_dict(),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=36,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration._from_config(cfg, dtype=dtype)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.weight = model.model.language_model.embed_tokens.weight  # SmolLM2 ties them
    model.config.text_config.vocab_size = len(tok)
    with torch.no_grad():  # projector output at the LLM's embedding scale
        rms = lm.model.embed_tokens.weight.pow(2).mean().sqrt()
        model.model.multi_modal_projector.linear_2.weight.mul_(float(rms) / 0.05)
    model.eval()
    return model, tok


def load_shell(dtype: torch.dtype = torch.float32, llm_dir: str | Path | None = None) -> BuiltModel:
    """The shell as a built-in model: family "llava", the adapter's own preprocessing, no info (no recipe,
    no trained parts; the run manifests of this model stay as they were)."""
    model, tok = build_smollm2_llava(dtype, llm_dir=llm_dir)
    return BuiltModel(model=model, tokenizer=tok, family="llava")
