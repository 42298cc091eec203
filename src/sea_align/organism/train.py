"""Training pieces shared by the recipe's stages: chat batches, the LM loss with image slots,
self-distillation by generation, and a resumable loop with a progress bar and a JSONL loss log."""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from sea_align.organism.assemble import IMAGE_TOKEN

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


def lm_loss(llm, batch: dict, image_token_id: int, image_embeds: torch.Tensor | None = None,
            autocast: bool = True) -> torch.Tensor:
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


@torch.no_grad()
def generate_text(llm, tok, prompts: list[str], max_new_tokens: int = 96, batch_size: int = 16,
                  desc: str = "generate") -> list[dict]:
    """Greedy answers to full chat prompts: [{"answer", "eos"}] (eos False = cut at the cap)."""
    tok.padding_side = "left"
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc=desc):
        enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        gen = llm.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.15,
                           pad_token_id=tok.pad_token_id, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
        for row in gen[:, enc.input_ids.shape[1]:]:
            text = tok.decode(row, skip_special_tokens=True).strip()
            out.append({"answer": text, "eos": bool((row == tok.convert_tokens_to_ids("<|im_end|>")).any())})
    tok.padding_side = "right"
    return out


class Checkpointer:
    """Resumable state of one stage: full state (params + optimizer) under `work_dir`, and a
    params-only copy under `weights_ckpt_dir` (small enough to commit; resumes with a fresh optimizer)."""

    def __init__(self, stage: str, work_dir: Path, weights_ckpt_dir: Path | None):
        self.full = work_dir / f"{stage}.ckpt.pt"
        self.light = (weights_ckpt_dir / f"{stage}.safetensors") if weights_ckpt_dir else None
        self.light_meta = (weights_ckpt_dir / f"{stage}.json") if weights_ckpt_dir else None

    def load(self, params: dict[str, torch.nn.Parameter], opt) -> int:
        if self.full.exists():
            st = torch.load(self.full, map_location="cpu", weights_only=True)
            _copy(params, st["params"])
            opt.load_state_dict(st["optimizer"])
            return int(st["step"])
        if self.light and self.light.exists():
            from safetensors.torch import load_file
            _copy(params, load_file(self.light))
            return int(json.loads(self.light_meta.read_text())["step"])
        return 0

    def save(self, params: dict[str, torch.nn.Parameter], opt, step: int) -> None:
        state = {k: v.detach().clone() for k, v in params.items()}
        self.full.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"params": state, "optimizer": opt.state_dict(), "step": step}, str(self.full) + ".tmp")
        Path(str(self.full) + ".tmp").replace(self.full)
        if self.light:
            self.light.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.half().contiguous() for k, v in state.items()}, str(self.light))
            self.light_meta.write_text(json.dumps({"step": step}))


def _copy(params, state) -> None:
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(state[k].to(p.dtype))


def train_loop(stage: str, params: dict[str, torch.nn.Parameter], opt, step_fn: Callable[[int], dict],
               steps: int, work_dir: Path, weights_ckpt_dir: Path | None, ckpt_every: int = 25,
               resume: bool = True) -> dict:
    """Run `step_fn(step) -> {"loss": tensor, ...}` from the resumed step to `steps`, AdamW-style
    update by `opt`, checkpoint every `ckpt_every` steps, one JSONL line per step."""
    ck = Checkpointer(stage, work_dir, weights_ckpt_dir)
    start = ck.load(params, opt) if resume else 0
    logf = (work_dir / f"{stage}.losses.jsonl").open("a")
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
        logf.write(json.dumps({"step": step + 1, **last, "sec": round(time.time() - t0, 3)}) + "\n")
        logf.flush()
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            ck.save(params, opt, step + 1)
    logf.close()
    return {"steps": steps, "resumed_from": start, "last": last}
