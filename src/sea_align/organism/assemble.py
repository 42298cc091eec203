"""Assemble `sea-tiny-vl` = OCR tower (recogniser text -> the LLM's token embeddings) -> LLaVA
projector -> SmolLM2, and store its trained parts.

Trained parts (all small, under `weights/<name>/`):
- `projector.safetensors`: LLaVA `multi_modal_projector` (linear_1, linear_2);
- `lora_text.safetensors`, `lora_mm.safetensors`: LoRA deltas (A, B per module) merged into the LLM
  in that order (text safety tuning, then modality/instruction tuning);
- `image_token.safetensors`: the embedding row of the added `<image>` token.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from sea_align.organism.ocr import SeaOcrVisionConfig, SeaOcrVisionModel, register

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
NUM_SLOTS = 32
VIDEO_SLOTS = 16  # per frame; LLaVA-NeXT-Video pools a square grid of slots (4 x 4, stride 1 = identity)
VIDEO_FRAMES = 4
LORA_TARGETS_MM = ("q_proj", "k_proj", "v_proj", "o_proj")
LORA_TARGETS_TEXT = LORA_TARGETS_MM + ("gate_proj", "up_proj", "down_proj")


def load_tokenizer(llm_dir: str | Path, video: bool = False):
    """SmolLM2's tokenizer + `<image>` (+ `<video>` after it, for the video model: so the ids of
    every other token, `<image>` included, are the same in both)."""
    tok = AutoTokenizer.from_pretrained(llm_dir)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN] + ([VIDEO_TOKEN] if video else [])})
    return tok


def add_image_token(llm, tok, row: torch.Tensor | None = None) -> None:
    """Grow the (tied) embedding to the tokenizer; the new `<image>` (and `<video>`) rows = `row` or
    the mean row."""
    old = llm.get_input_embeddings().weight.shape[0]
    if len(tok) > old:
        llm.resize_token_embeddings(len(tok), mean_resizing=False)
    emb = llm.get_input_embeddings().weight
    with torch.no_grad():
        for t in (IMAGE_TOKEN, VIDEO_TOKEN):
            if t in tok.get_vocab():
                emb[tok.convert_tokens_to_ids(t)] = row.to(emb.dtype) if row is not None else emb[:old].mean(0)


def load_llm(llm_dir: str | Path, dtype=torch.float32):
    return AutoModelForCausalLM.from_pretrained(llm_dir, dtype=dtype)


def tower_config(num_slots: int = NUM_SLOTS, hidden_size: int = 576) -> SeaOcrVisionConfig:
    return SeaOcrVisionConfig(strip_width=1024, num_slots=num_slots, hidden_size=hidden_size)


def make_projector(text_config, vision_config=None) -> LlavaMultiModalProjector:
    # deepcopy: LlavaConfig would otherwise reset the LLM config's attention implementation
    vision_config = vision_config or tower_config(hidden_size=text_config.hidden_size)
    cfg = LlavaConfig(vision_config=vision_config, text_config=copy.deepcopy(text_config),
                      projector_hidden_act="gelu")
    return LlavaMultiModalProjector(cfg)


# ---- LoRA as plain deltas: W <- W + (B @ A) * scale, stored per target module -------------------

class LoraLinear(nn.Module):
    """y = base(x) + (x A^T B^T) * scale. `base` is frozen; A, B train."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features ** 0.5)
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + (x @ self.A.t().to(x.dtype)) @ self.B.t().to(x.dtype) * self.scale


def add_lora(llm, rank: int = 8, alpha: float = 16.0, targets=LORA_TARGETS_MM) -> dict[str, LoraLinear]:
    """Wrap the target Linear layers of the LLM in place; returns {module name: LoraLinear}."""
    wrapped = {}
    for name, mod in list(llm.named_modules()):
        for child_name, child in list(mod.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                lora = LoraLinear(child, rank, alpha).to(child.weight.device)
                setattr(mod, child_name, lora)
                wrapped[f"{name}.{child_name}".removeprefix(".")] = lora
    return wrapped


def lora_params(wrapped: dict[str, LoraLinear], prefix: str = "") -> dict[str, nn.Parameter]:
    """The trainable A, B of every wrapped module, named "<prefix><module>.A|B" (checkpoint keys)."""
    return {f"{prefix}{n}.{p}": getattr(m, p) for n, m in wrapped.items() for p in ("A", "B")}


def mm_trainables(llm: nn.Module, proj: nn.Module, rank: int, lora_lr: float, proj_lr: float,
                  lora: dict[str, torch.Tensor] | None = None):
    """A multimodal LoRA on `llm` (fresh, or continued from the `lora` state, whose B is stored scaled) and
    the projector, trained together: (wrapped modules, checkpoint-named params, AdamW). `llm` -> train mode."""
    wrapped = add_lora(llm, rank, targets=LORA_TARGETS_MM)
    if lora is not None:
        with torch.no_grad():
            for n, m in wrapped.items():
                m.A.copy_(lora[f"{n}.A"])
                m.B.copy_(lora[f"{n}.B"] / m.scale)
    params = lora_params(wrapped, "lora.")
    params.update({f"proj.{k}": v for k, v in proj.named_parameters()})
    opt = torch.optim.AdamW([{"params": [v for k, v in params.items() if k.startswith("lora.")], "lr": lora_lr},
                             {"params": list(proj.parameters()), "lr": proj_lr}], weight_decay=0.0)
    llm.train()
    return wrapped, params, opt


def lora_state(wrapped: dict[str, LoraLinear]) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in wrapped.items():
        out[f"{name}.A"] = m.A.detach().float().contiguous()
        out[f"{name}.B"] = (m.B.detach().float() * m.scale).contiguous()  # scale folded into B
    return out


def unwrap_lora(llm, wrapped: dict[str, LoraLinear], merge: bool = True) -> None:
    """Put the plain Linear layers back, with the deltas merged when `merge`."""
    deltas = lora_state(wrapped)
    for name, m in wrapped.items():
        parent_name, _, child = name.rpartition(".")
        setattr(llm.get_submodule(parent_name), child, m.base)
    if merge:
        merge_lora(llm, deltas)


def merge_lora(llm, deltas: dict[str, torch.Tensor]) -> None:
    names = {k.rsplit(".", 1)[0] for k in deltas}
    with torch.no_grad():
        for name in names:
            w = llm.get_submodule(name).weight
            w += (deltas[f"{name}.B"] @ deltas[f"{name}.A"]).to(w.dtype)


# ---- assembly --------------------------------------------------------------------------------

def build_llava(llm, tok, projector_state: dict | None = None, num_slots: int = NUM_SLOTS,
                load_ocr: bool = True) -> LlavaForConditionalGeneration:
    """LLaVA around an (already merged) causal LM and the OCR tower. Shares the LLM's tensors."""
    register()
    vcfg = tower_config(num_slots, llm.config.hidden_size)
    cfg = LlavaConfig(vision_config=vcfg, text_config=copy.deepcopy(llm.config), image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                      vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu",
                      image_seq_length=num_slots, tie_word_embeddings=True)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(cfg)
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    model.model.vision_tower = SeaOcrVisionModel(vcfg)
    model.model.multi_modal_projector = make_projector(llm.config, vcfg)
    if load_ocr:
        model.model.vision_tower.load_english_g2()
    model.model.vision_tower.attach_reader(tok, llm.get_input_embeddings())
    if projector_state is not None:
        model.model.multi_modal_projector.load_state_dict(projector_state, strict=True)
    model.model.vision_tower.requires_grad_(False)
    model.generation_config = llm.generation_config
    return model.to(llm.dtype).eval()


def build_llava_next_video(llm, tok, projector_state: dict | None = None, slots: int = VIDEO_SLOTS,
                           load_ocr: bool = True):
    """LLaVA-NeXT-Video around the same parts: every frame goes through the OCR tower (`slots`
    per frame, a square number), the pooler has stride 1 (identity), then the same projector."""
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    register()
    side = int(round(slots ** 0.5))
    if side * side != slots:
        raise ValueError(f"video slots per frame must be a square number, got {slots}")
    vcfg = tower_config(slots, llm.config.hidden_size)
    vcfg.image_size, vcfg.patch_size = side, 1  # what the pooler reads to find its grid
    cfg = LlavaNextVideoConfig(vision_config=vcfg, text_config=copy.deepcopy(llm.config),
                               image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                               video_token_index=tok.convert_tokens_to_ids(VIDEO_TOKEN),
                               vision_feature_layer=-1, vision_feature_select_strategy="full",
                               projector_hidden_act="gelu", spatial_pool_mode="average", spatial_pool_stride=1,
                               image_seq_length=slots, video_seq_length=slots * VIDEO_FRAMES,
                               image_grid_pinpoints=[[side, side]], tie_word_embeddings=True)
    with torch.device("meta"):
        model = LlavaNextVideoForConditionalGeneration(cfg)
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    model.model.vision_tower = SeaOcrVisionModel(vcfg)
    proj = make_projector(llm.config, vcfg)
    if projector_state is not None:
        proj.load_state_dict(projector_state, strict=True)
    model.model.multi_modal_projector.load_state_dict(proj.state_dict(), strict=True, assign=True)
    model.model.vision_resampler = type(model.model.vision_resampler)(cfg)
    model.model.image_newline = nn.Parameter(torch.zeros(llm.config.hidden_size))  # images are not used
    if load_ocr:
        model.model.vision_tower.load_english_g2()
    model.model.vision_tower.attach_reader(tok, llm.get_input_embeddings())
    model.model.vision_tower.requires_grad_(False)
    model.generation_config = llm.generation_config
    return model.to(llm.dtype).eval()


def load_parts(weights_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    parts = {}
    for name in ("projector", "lora_text", "lora_mm", "image_token"):
        f = weights_dir / f"{name}.safetensors"
        if f.exists():
            parts[name] = load_file(f)
    return parts


def save_part(weights_dir: Path, name: str, tensors: dict[str, torch.Tensor]) -> Path:
    weights_dir.mkdir(parents=True, exist_ok=True)
    f = weights_dir / f"{name}.safetensors"
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(f))
    return f
