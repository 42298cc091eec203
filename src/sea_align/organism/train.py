"""Training pieces shared by the recipes' stages: chat batches, the LM loss with media slots,
self-distillation by generation, and a resumable loop with a progress bar and a JSONL loss log."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from sea_align.judges import get_judge
from sea_align.organism.assemble import IMAGE_TOKEN
from sea_align.runtime.checkpoint import load_checkpoint, save_checkpoint
from sea_align.runtime.io import append_jsonl, atomic_path

log = logging.getLogger(__name__)


def chat_prompt(tok, user: str, image_slots: int = 0) -> str:
    """SmolLM2 chat prompt; with an image, `image_slots` `<image>` tokens open the user turn."""
    content = (IMAGE_TOKEN * image_slots + "\n" + user) if image_slots else user
    return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)


def encode_batch(tok, samples: list[dict], max_len: int = 256) -> dict[str, torch.Tensor]:
    """samples: {"prompt": str (full chat prompt), "answer": str, "eos": bool} -> right-padded
    input_ids / attention_mask / labels [b, s]; labels are -100 on the prompt and the padding."""
    ids, labels = [], []
    for s in samples:
        p = tok(s["prompt"], add_special_tokens=False).input_ids
        a = tok(s["answer"] + ("<|im_end|>" if s.get("eos", True) else ""), add_special_tokens=False).input_ids
        x = (p + a)[:max_len]
        ids.append(x)
        labels.append(([-100] * len(p) + a)[:max_len])
    n = max(map(len, ids))
    pad = tok.pad_token_id
    return {
        "input_ids": torch.tensor([x + [pad] * (n - len(x)) for x in ids]),
        "attention_mask": torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids]),
        "labels": torch.tensor([y + [-100] * (n - len(y)) for y in labels]),
    }


def lm_loss(
    llm, batch: dict, image_token_id: int, image_embeds: torch.Tensor | None = None, autocast: bool = True
) -> torch.Tensor:
    """Causal-LM loss; rows of `image_embeds` [n_images * slots, hidden] replace the `<image>`
    positions in order (what LLaVA's masked_scatter does)."""
    ids = batch["input_ids"]
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
    with ctx:
        emb = llm.get_input_embeddings()(ids)
        mask = (ids == image_token_id).unsqueeze(-1)
        if image_embeds is not None:
            emb = emb.masked_scatter(mask, image_embeds.to(emb.dtype))
        out = llm(inputs_embeds=emb, attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss.float()


def greedy(model, tok, enc, max_new_tokens: int, **media: torch.Tensor) -> torch.Tensor:
    """The organism's decoding of the left-padded batch `enc` (+ `media` inputs): greedy, repetition penalty
    1.15, stop at `<|im_end|>` -> the new tokens."""
    gen = model.generate(
        **enc,
        **media,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        repetition_penalty=1.15,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    )
    return gen[:, enc.input_ids.shape[1] :]


@torch.no_grad()
def generate_text(
    llm, tok, prompts: list[str], max_new_tokens: int = 96, batch_size: int = 16, desc: str = "generate"
) -> list[dict]:
    """Greedy answers to full chat prompts: [{"answer", "eos"}] (eos False = cut at the cap)."""
    tok.padding_side = "left"
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc=desc):
        enc = tok(prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        for row in greedy(llm, tok, enc, max_new_tokens):
            text = tok.decode(row, skip_special_tokens=True).strip()
            out.append({"answer": text, "eos": bool((row == tok.convert_tokens_to_ids("<|im_end|>")).any())})
    tok.padding_side = "right"
    return out


class Checkpointer:
    """Resumable state of one stage, without pickle (`runtime.checkpoint`): params + AdamW state in
    `work_dir/<stage>.ckpt.safetensors`, and a params-only fp16 copy under `weights_ckpt_dir` (small enough
    to commit; resumes with a fresh optimizer). Both written whole (temp file + rename)."""

    def __init__(self, stage: str, work_dir: Path, weights_ckpt_dir: Path | None):
        self.full = work_dir / f"{stage}.ckpt.safetensors"
        self.light = (weights_ckpt_dir / f"{stage}.safetensors") if weights_ckpt_dir else None

    def load(self, params: dict[str, torch.nn.Parameter], opt) -> int:
        if self.full.exists():
            return int(load_checkpoint(self.full, params, opt)["step"])
        if self.light and self.light.exists():
            with safe_open(str(self.light), framework="pt") as f:
                info = (f.metadata() or {}).get("info")
                state = {k: f.get_tensor(k) for k in f.keys()}
            if info is None:  # the older layout (its step in a .json beside it): not resumed
                log.warning("%s: a light checkpoint without its step; the stage starts over", self.light)
                return 0
            step = int(json.loads(info)["step"])
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(state[k].to(p.dtype))
            return step
        return 0

    def save(self, params: dict[str, torch.nn.Parameter], opt, step: int) -> None:
        save_checkpoint(self.full, params, opt, {"step": step})
        if self.light:
            with atomic_path(self.light) as tmp:
                save_file(
                    {k: v.detach().half().contiguous() for k, v in params.items()},
                    str(tmp),
                    metadata={"info": json.dumps({"step": step})},
                )


def train_loop(
    stage: str,
    params: dict[str, torch.nn.Parameter],
    opt,
    step_fn: Callable[[int], dict],
    steps: int,
    work_dir: Path,
    weights_ckpt_dir: Path | None,
    ckpt_every: int = 25,
    resume: bool = True,
) -> dict:
    """Run `step_fn(step) -> {"loss": tensor, ...}` from the resumed step to `steps`, AdamW-style
    update by `opt`, checkpoint every `ckpt_every` steps, one JSONL line per step."""
    ck = Checkpointer(stage, work_dir, weights_ckpt_dir)
    start = ck.load(params, opt) if resume else 0
    bar = tqdm(range(start, steps), desc=stage, initial=start, total=steps)
    last = {}
    for step in bar:
        t0 = time.time()
        out = step_fn(step)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        last = {k: round(float(v.detach() if torch.is_tensor(v) else v), 4) for k, v in out.items()}
        bar.set_postfix(last)
        append_jsonl(work_dir / f"{stage}.losses.jsonl", {"step": step + 1, **last, "sec": round(time.time() - t0, 3)})
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            ck.save(params, opt, step + 1)
    return {"steps": steps, "resumed_from": start, "last": last}


def stage_loop(
    cfg,
    stage: str,
    params: dict[str, torch.nn.Parameter],
    opt,
    step_fn: Callable[[int], dict],
    steps: int,
    resume: bool,
    ckpt_every: int | None = None,
) -> dict:
    """`train_loop` in a recipe config's folders: full checkpoints and the loss log in `cfg.work_dir`,
    light checkpoints in `cfg.weights_dir/ckpt`, every `ckpt_every` (default `cfg.ckpt_every`) steps."""
    return train_loop(
        stage, params, opt, step_fn, steps, cfg.work_dir, cfg.weights_dir / "ckpt", ckpt_every or cfg.ckpt_every, resume
    )


def refused(answers: list[str]) -> list[bool]:
    """The core refusal judge's verdicts (`judges` "refusal", what `sea evaluate` uses by default)."""
    return [v.refused for v in get_judge("refusal").judge([{"response": a} for a in answers])]
