"""LoRA of the recipes: trained with PEFT, stored and loaded as plain deltas.

Stored form (`lora_text`, `lora_mm`, `whisper_lora` .safetensors): per target module `<name>.A`
[rank, in] and `<name>.B` [out, rank] with the scale alpha / rank folded into B, so that loading is
W <- W + B @ A (`merge_lora`), with no PEFT and no adapter config at load time."""

from __future__ import annotations

import re

import torch
from torch import nn

LORA_TARGETS_MM = ("q_proj", "k_proj", "v_proj", "o_proj")
LORA_TARGETS_TEXT = LORA_TARGETS_MM + ("gate_proj", "up_proj", "down_proj")
ADAPTER = "default"  # PEFT's adapter name


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    targets=LORA_TARGETS_MM,
    init: dict[str, torch.Tensor] | None = None,
) -> dict[str, nn.Module]:
    """Inject PEFT LoRA layers (in place) into every `nn.Linear` of `model` whose own name is one of
    `targets`; other modules with such a name are left alone. A = randn / sqrt(in) drawn from torch's
    global generator in module order, B = 0; or continue from `init` (stored form). Returns
    {module name: PEFT LoRA layer}; only their A and B train."""
    from peft import LoraConfig, inject_adapter_in_model

    names = [
        f"{pn}.{cn}".removeprefix(".")
        for pn, parent in model.named_modules()  # each parent's children:
        for cn, m in parent.named_children()
        if cn in targets and isinstance(m, nn.Linear)
    ]  # the init order
    if not names:
        raise ValueError(f"no nn.Linear named {', '.join(targets)} to put LoRA on")
    cfg = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules="|".join(re.escape(n) for n in names)
    )  # full names: exactly these
    with torch.random.fork_rng(devices=[]):  # PEFT's own init must not move the generator our A comes from
        inject_adapter_in_model(cfg, model, adapter_name=ADAPTER)
    layers = {n: model.get_submodule(n) for n in names}
    with torch.no_grad():
        for n, m in layers.items():
            a, b = m.lora_A[ADAPTER].weight, m.lora_B[ADAPTER].weight
            a.copy_(torch.randn(a.shape) / a.shape[1] ** 0.5)
            b.zero_()
            if init is not None:
                a.copy_(init[f"{n}.A"])
                b.copy_(init[f"{n}.B"] / m.scaling[ADAPTER])
    return layers


def lora_params(layers: dict[str, nn.Module], prefix: str = "") -> dict[str, nn.Parameter]:
    """The trainable A, B of every LoRA layer, named "<prefix><module>.A|B" (checkpoint keys)."""
    return {f"{prefix}{n}.{k}": getattr(m, f"lora_{k}")[ADAPTER].weight for n, m in layers.items() for k in "AB"}


def lora_deltas(layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The stored form of the trained LoRA: float32 A and B * scale per module."""
    out = {}
    for n, m in layers.items():
        out[f"{n}.A"] = m.lora_A[ADAPTER].weight.detach().float().contiguous()
        out[f"{n}.B"] = (m.lora_B[ADAPTER].weight.detach().float() * m.scaling[ADAPTER]).contiguous()
    return out


def merge_lora(model: nn.Module, deltas: dict[str, torch.Tensor]) -> None:
    """W <- W + B @ A for every module of the stored deltas (plain Linear layers, no PEFT)."""
    names = {k.rsplit(".", 1)[0] for k in deltas}
    with torch.no_grad():
        for name in names:
            w = model.get_submodule(name).weight
            w += (deltas[f"{name}.B"] @ deltas[f"{name}.A"]).to(w.dtype)


def mm_trainables(
    llm: nn.Module,
    proj: nn.Module,
    rank: int,
    lora_lr: float,
    proj_lr: float,
    lora: dict[str, torch.Tensor] | None = None,
):
    """A multimodal LoRA on `llm` (fresh, or continued from the stored `lora`) and the projector, trained
    together: (LoRA layers, checkpoint-named params, AdamW). `llm` -> train mode."""
    layers = add_lora(llm, rank, targets=LORA_TARGETS_MM, init=lora)
    params = lora_params(layers, "lora.")
    params.update({f"proj.{k}": v for k, v in proj.named_parameters()})
    opt = torch.optim.AdamW(
        [
            {"params": [v for k, v in params.items() if k.startswith("lora.")], "lr": lora_lr},
            {"params": list(proj.parameters()), "lr": proj_lr},
        ],
        weight_decay=0.0,
    )
    llm.train()
    return layers, params, opt
