"""Tiny random-weight models of every supported family, built from config with a byte-level
tokenizer made on the spot: no download, a few MB, used by the tests and the `tiny` preset.

`tiny-random-llava` etc. are deterministic for a seed (weights from `torch.manual_seed`)."""

from __future__ import annotations

import copy

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from sea_align.models.layout import CHATML

SPECIALS = [
    "<|im_start|>",
    "<|im_end|>",
    "<image>",
    "<video>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|AUDIO|>",
]
D = 32  # hidden size of every tiny part
# the size of every tiny transformer: the language models and the CLIP tower
_LAYERS = dict(hidden_size=D, intermediate_size=2 * D, num_hidden_layers=2, num_attention_heads=2)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """256 byte tokens (no merges) + ChatML and placeholder specials: encodes any text."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"pad_token": "<pad>", "eos_token": "<|endoftext|>", "additional_special_tokens": SPECIALS})
    fast.chat_template = CHATML
    return fast


def _text(vocab: int, **extra) -> dict:
    return dict(
        vocab_size=vocab,
        **_LAYERS,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        **extra,
    )


_CLIP = dict(model_type="clip_vision_model", **_LAYERS, image_size=32, patch_size=8, projection_dim=D)
_LLAVA = dict(vision_feature_layer=-2, vision_feature_select_strategy="default")
_PATCHES = dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
_MROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
_QWEN_VL_TOKENS = {
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}

# Per family: the encoder tower (config key -> fields), the language model's type and extra fields
# (added to `_text`), the config keys that hold a placeholder token's id, and other top-level fields.
_SPECS: dict[str, dict] = {
    "llava": dict(
        tower={"vision_config": _CLIP},
        text=dict(model_type="llama"),
        tokens={"image_token_id": "<image>"},
        fields=dict(_LLAVA, image_seq_length=16),
    ),
    "llava_next_video": dict(
        tower={"vision_config": _CLIP},
        text=dict(model_type="llama"),
        tokens={"image_token_id": "<image>", "video_token_id": "<video>"},
        fields=dict(_LLAVA, spatial_pool_stride=2, spatial_pool_mode="average", image_grid_pinpoints=[[32, 32]]),
    ),
    "qwen2_vl": dict(
        tower={"vision_config": dict(depth=2, embed_dim=D, hidden_size=D, num_heads=2, mlp_ratio=2, **_PATCHES)},
        text=dict(model_type="qwen2_vl_text", rope_parameters=_MROPE),
        tokens=_QWEN_VL_TOKENS,
    ),
    "qwen2_5_vl": dict(
        tower={
            "vision_config": dict(
                depth=2,
                hidden_size=D,
                out_hidden_size=D,
                intermediate_size=2 * D,
                num_heads=2,
                **_PATCHES,
                window_size=56,
                fullatt_block_indexes=[1],
            )
        },
        text=dict(model_type="qwen2_5_vl_text", rope_parameters=_MROPE),
        tokens=_QWEN_VL_TOKENS,
    ),
    "qwen2_audio": dict(
        tower={
            "audio_config": dict(
                model_type="qwen2_audio_encoder",
                d_model=D,
                encoder_layers=2,
                encoder_attention_heads=2,
                encoder_ffn_dim=2 * D,
                num_mel_bins=80,
                max_source_positions=100,
            )
        },
        text=dict(model_type="qwen2"),
        tokens={"audio_token_id": "<|AUDIO|>"},
    ),
}
FAMILIES = tuple(_SPECS)


def build_config(family: str, tok: PreTrainedTokenizerFast):
    """The transformers config of the tiny `family` model, its placeholder ids taken from `tok`."""
    from transformers import AutoConfig

    if family not in _SPECS:
        raise ValueError(f"unknown tiny family {family!r} (known: {', '.join(FAMILIES)})")
    spec = copy.deepcopy(_SPECS[family])  # the config classes may edit the nested dicts
    text = dict(_text(len(tok)), **spec["text"])
    ids = {key: tok.convert_tokens_to_ids(t) for key, t in spec["tokens"].items()}
    return AutoConfig.for_model(family, **spec["tower"], text_config=text, **ids, **spec.get("fields", {}))


def build_tiny(family: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """(model, tokenizer, processors) for a tiny random model of `family`."""
    from sea_align.models.registry import model_class

    tok = byte_tokenizer()
    cfg = build_config(family, tok)
    torch.manual_seed(seed)
    model = model_class(cfg.model_type)._from_config(cfg, dtype=dtype)
    model.eval()
    return model, tok, tiny_processors(family)


def tiny_processors(family: str) -> dict:
    """The tiny checkpoints' processor configs: Qwen2-VL's dynamic resolution within 28x28..56x56 pixels
    (a 224 blank is 2x2 tokens); the others use their processor's defaults at the tiny tower's size."""
    if family in ("qwen2_vl", "qwen2_5_vl"):
        return {"preprocessor": {"min_pixels": 28 * 28, "max_pixels": 56 * 56}}
    return {}
