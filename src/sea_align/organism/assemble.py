"""Assemble `sea-tiny-vl` = OCR tower (recogniser text -> the LLM's token embeddings) -> LLaVA
projector -> SmolLM2 (and `sea-qwen-vl`, the same on Qwen2.5-Coder-1.5B, `bases.py`), and store the
trained parts.

Trained parts (all small, under `weights/<name>/`):
- `projector.safetensors`: LLaVA `multi_modal_projector` (linear_1, linear_2);
- `lora_text.safetensors`, `lora_mm.safetensors`: LoRA deltas (`lora.py`'s stored form) merged into
  the LLM in that order (text safety tuning, then modality/instruction tuning);
- `image_token.safetensors`: the embedding row of the added `<image>` token.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from sea_align.models.registry import BuiltModel
from sea_align.organism.bases import SMOLLM2, Base, base_llm_dir
from sea_align.organism.lora import merge_lora
from sea_align.organism.ocr import SeaOcrVisionConfig, SeaOcrVisionModel, register
from sea_align.organism.runner import read_pins
from sea_align.runtime.io import atomic_path

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
NUM_SLOTS = 32
VIDEO_SLOTS = 16  # per frame; LLaVA-NeXT-Video pools a square grid of slots (4 x 4, stride 1 = identity)
VIDEO_FRAMES = 4


def load_tokenizer(llm_dir: str | Path, video: bool = False):
    """SmolLM2's tokenizer + `<image>` (+ `<video>` after it, for the video model: so the ids of
    every other token, `<image>` included, are the same in both)."""
    tok = AutoTokenizer.from_pretrained(llm_dir)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN] + ([VIDEO_TOKEN] if video else [])})
    return tok


def add_tokens(llm, tok, tokens: tuple[str, ...], row: torch.Tensor | None = None) -> None:
    """Grow the (tied) embedding to the tokenizer; the rows of those `tokens` the tokenizer has = `row`, or
    the mean of the LLM's own rows."""
    old = llm.get_input_embeddings().weight.shape[0]
    if len(tok) > old:
        llm.resize_token_embeddings(len(tok), mean_resizing=False)
    emb = llm.get_input_embeddings().weight
    with torch.no_grad():
        for t in tokens:
            if t in tok.get_vocab():
                emb[tok.convert_tokens_to_ids(t)] = row.to(emb.dtype) if row is not None else emb[:old].mean(0)


def add_image_token(llm, tok, row: torch.Tensor | None = None) -> None:
    """The `<image>` (and `<video>`) rows: `row` (trained, `image_token.safetensors`) or the mean row."""
    add_tokens(llm, tok, (IMAGE_TOKEN, VIDEO_TOKEN), row)


def load_llm(llm_dir: str | Path, dtype=torch.float32):
    return AutoModelForCausalLM.from_pretrained(llm_dir, dtype=dtype)


def tower_config(num_slots: int = NUM_SLOTS, hidden_size: int = 576) -> SeaOcrVisionConfig:
    return SeaOcrVisionConfig(strip_width=1024, num_slots=num_slots, hidden_size=hidden_size)


def make_projector(text_config, vision_config=None, act: str = "gelu") -> LlavaMultiModalProjector:
    # deepcopy: LlavaConfig would otherwise reset the LLM config's attention implementation
    vision_config = vision_config or tower_config(hidden_size=text_config.hidden_size)
    cfg = LlavaConfig(vision_config=vision_config, text_config=copy.deepcopy(text_config), projector_hidden_act=act)
    return LlavaMultiModalProjector(cfg)


def identity_projector_state(hidden: int) -> dict[str, torch.Tensor]:
    """A linear projector (`act="linear"`) that is exactly the identity: the tower's slots, which are the
    LLM's own token embeddings, reach the LLM unchanged (in float32 and, rounded, in bf16)."""
    eye, zero = torch.eye(hidden), torch.zeros(hidden)
    return {
        "linear_1.weight": eye,
        "linear_1.bias": zero,
        "linear_2.weight": eye.clone(),
        "linear_2.bias": zero.clone(),
    }


# ---- assembly --------------------------------------------------------------------------------


def _shared_config(llm, vcfg: SeaOcrVisionConfig, slots: int, act: str = "gelu") -> dict:
    """What the LLaVA and LLaVA-NeXT-Video configs share: the tower's whole output, `slots` per image."""
    return dict(
        vision_config=vcfg,
        text_config=copy.deepcopy(llm.config),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        projector_hidden_act=act,
        image_seq_length=slots,
        tie_word_embeddings=getattr(llm.config, "tie_word_embeddings", True),  # as the LLM's own head
    )


def _shell(model_cls, cfg, llm, vcfg: SeaOcrVisionConfig, projector_state: dict | None):
    """`model_cls(cfg)` made on the meta device around the LLM's modules and an OCR tower -> (the model, the
    projector: `projector_state`, else random)."""
    with torch.device("meta"):
        model = model_cls(cfg)
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    model.model.vision_tower = SeaOcrVisionModel(vcfg)
    proj = make_projector(llm.config, vcfg, cfg.projector_hidden_act)
    if projector_state is not None:
        proj.load_state_dict(projector_state, strict=True)
    return model, proj


def _finish(model, llm, tok, load_ocr: bool):
    """The tower's recogniser (unless `load_ocr` is False) and reader, frozen; the LLM's dtype and
    generation config; eval mode."""
    if load_ocr:
        model.model.vision_tower.load_english_g2()
    model.model.vision_tower.attach_reader(tok, llm.get_input_embeddings())
    model.model.vision_tower.requires_grad_(False)
    model.generation_config = llm.generation_config
    return model.to(llm.dtype).eval()


def build_llava(
    llm,
    tok,
    projector_state: dict | None = None,
    num_slots: int = NUM_SLOTS,
    load_ocr: bool = True,
    projector_act: str = "gelu",
) -> LlavaForConditionalGeneration:
    """LLaVA around an (already merged) causal LM and the OCR tower. Shares the LLM's tensors."""
    register()
    vcfg = tower_config(num_slots, llm.config.hidden_size)
    image_token_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    cfg = LlavaConfig(**_shared_config(llm, vcfg, num_slots, projector_act), image_token_id=image_token_id)
    model, proj = _shell(LlavaForConditionalGeneration, cfg, llm, vcfg, projector_state)
    model.model.multi_modal_projector = proj
    return _finish(model, llm, tok, load_ocr)


def build_llava_next_video(
    llm,
    tok,
    projector_state: dict | None = None,
    slots: int = VIDEO_SLOTS,
    load_ocr: bool = True,
    projector_act: str = "gelu",
):
    """LLaVA-NeXT-Video around the same parts: every frame goes through the OCR tower (`slots`
    per frame, a square number), the pooler has stride 1 (identity), then the same projector."""
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    register()
    side = int(round(slots**0.5))
    if side * side != slots:
        raise ValueError(f"video slots per frame must be a square number, got {slots}")
    vcfg = tower_config(slots, llm.config.hidden_size)
    vcfg.image_size, vcfg.patch_size = side, 1  # what the pooler reads to find its grid
    cfg = LlavaNextVideoConfig(
        **_shared_config(llm, vcfg, slots, projector_act),
        image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        video_token_index=tok.convert_tokens_to_ids(VIDEO_TOKEN),
        spatial_pool_mode="average",
        spatial_pool_stride=1,
        video_seq_length=slots * VIDEO_FRAMES,
        image_grid_pinpoints=[[side, side]],
    )
    model, proj = _shell(LlavaNextVideoForConditionalGeneration, cfg, llm, vcfg, projector_state)
    model.model.multi_modal_projector.load_state_dict(proj.state_dict(), strict=True, assign=True)
    model.model.vision_resampler = type(model.model.vision_resampler)(cfg)
    model.model.image_newline = nn.Parameter(torch.zeros(llm.config.hidden_size))  # images are not used
    return _finish(model, llm, tok, load_ocr)


def load_parts(
    weights_dir: Path, names: tuple[str, ...] = ("projector", "lora_text", "lora_mm", "image_token")
) -> dict[str, dict[str, torch.Tensor]]:
    """The trained parts `<weights_dir>/<name>.safetensors` that exist (default: sea-tiny-vl's)."""
    parts = {}
    for name in names:
        f = weights_dir / f"{name}.safetensors"
        if f.exists():
            parts[name] = load_file(f)
    return parts


def save_part(weights_dir: Path, name: str, tensors: dict[str, torch.Tensor]) -> Path:
    """`<weights_dir>/<name>.safetensors` (float32), written whole (temp file + rename)."""
    f = Path(weights_dir) / f"{name}.safetensors"
    with atomic_path(f) as tmp:
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(tmp))
    return f


# ---- the built-in model --------------------------------------------------------------------


def load_vl(
    dtype: torch.dtype,
    weights_dir: Path | None,
    llm_dir: str | Path | None = None,
    modality: str | None = None,
    name: str = "sea-tiny-vl",
    base: Base = SMOLLM2,
) -> BuiltModel:
    """`name` (`sea-tiny-vl`, or `sea-qwen-vl` on the Qwen base) from the parts under `weights_dir`:
    `LlavaForConditionalGeneration` for images (modality None or "image"),
    `LlavaNextVideoForConditionalGeneration` for video (the same parts; frames go through the same tower).
    Without a trained projector a GELU projector is random and cannot read (a warning); a linear one
    starts as the identity (the LLM reads its own token embeddings). `weights_dir` None: the bare shell
    (no trained part, no warning): the LLM as shipped behind the tower and an identity projector."""
    from sea_align.organism.render import preprocess_images

    if modality not in (None, "image", "video"):
        raise ValueError(f"{name} takes image or video, not {modality}")
    ldir = Path(llm_dir) if llm_dir else base_llm_dir(base)
    video = modality == "video"
    tok = load_tokenizer(ldir, video=video)
    llm = load_llm(ldir)
    parts = load_parts(weights_dir) if weights_dir is not None else {}
    add_image_token(llm, tok, parts.get("image_token", {}).get("row"))
    missing = []  # what a weights folder lacks (the bare shell lacks everything by design)
    for lora in ("lora_text", "lora_mm") if base.text_stage else ("lora_mm",):
        if lora in parts:
            merge_lora(llm, parts[lora])
        else:
            missing.append(f"{lora} missing under {weights_dir}: LLM not tuned by that stage")
    projector = parts.get("projector")
    if projector is None and base.projector_act == "linear":
        projector = identity_projector_state(llm.config.hidden_size)
        missing.append(f"no trained projector under {weights_dir}: the identity (slots = token embeddings)")
    elif projector is None:
        torch.manual_seed(0)
        missing.append(f"no trained projector under {weights_dir}: RANDOM projector, the model cannot read images")
    build = build_llava_next_video if video else build_llava
    model = build(llm, tok, projector, projector_act=base.projector_act).to(dtype)
    model.requires_grad_(False)
    warnings = missing if weights_dir is not None else []
    for w in warnings:
        log.warning(w)
    info = _vl_info(name, base, weights_dir, ldir, parts, warnings, llm)
    if video:
        info.update(video_slots_per_frame=VIDEO_SLOTS, video_frames=VIDEO_FRAMES, video_token=VIDEO_TOKEN)
        return BuiltModel(
            model=model,
            tokenizer=tok,
            family="llava_next_video",
            preprocess={"image": preprocess_images},
            info=info,
            adapter_kwargs={"n_frames": VIDEO_FRAMES},
        )
    return BuiltModel(model=model, tokenizer=tok, family="llava", preprocess={"image": preprocess_images}, info=info)


def _vl_info(
    name: str, base: Base, weights_dir: Path | None, llm_dir: Path, parts: dict, warnings: list[str], llm
) -> dict:
    pins = read_pins(weights_dir) if weights_dir else {}
    return {
        "name": name,
        "llm": base.about,
        "llm_dir": str(llm_dir),
        "weights_dir": str(weights_dir) if weights_dir else None,
        "weight_files": sorted(f"{k}.safetensors" for k in parts),
        "recipe": pins,
        "recipe_version": pins.get("recipe_version"),
        "seed": pins.get("seed"),
        "image_seq_length": NUM_SLOTS,
        "image_token": IMAGE_TOKEN,
        "warnings": warnings,
        # the tower's slots are token embeddings (zero when blank): their RMS sets synthesis' step size
        "encoder_rms": float(llm.get_input_embeddings().weight.float().pow(2).mean().sqrt()),
    }
