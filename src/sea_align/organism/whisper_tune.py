"""Stage `hear` of sea-tiny-audio: adapt Whisper tiny.en's decoder to espeak-ng speech (LoRA).

Whisper tiny.en transcribes espeak-ng speech of random word phrases badly (68% of held-out phrases
fuzzy-match; "bake" -> "make", "see someone" -> "See time one."): the synthetic voices are unlike its
training audio and its language-model prior fights word salads. Real audio LLMs train their speech
encoder during modality alignment; here the encoder stays frozen and a rank-`rank` LoRA on every
decoder Linear (self- and cross-attention q/k/v/out, fc1, fc2) learns, by teacher forcing, to write
the spoken text. The encoder runs once per clip (the tower's own windowed `encode`), so a training
step only runs the 4-layer decoder.

Pure core: `hear_texts` (what is spoken), `encode_clips` (clips -> encoder states per window),
`encoded_pairs` (the same, cached per shard), `decoder_batch` (teacher-forcing ids),
`add_decoder_lora`, `decoder_loss`. The stage itself (`stage_hear`) lives in
`audio_recipe.py`.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import torch

from sea_align.organism import data, whisper_ct2
from sea_align.organism.lora import add_lora
from sea_align.runtime.io import atomic_path

TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
PREFIX = "model.decoder."  # LoRA names are relative to the whole WhisperForConditionalGeneration


def hear_texts(reading: list[str], seed: int, act_variants: int, fmt) -> list[tuple[str, str]]:
    """(what is spoken, what Whisper should write): the training reading phrases and training
    activities formatted like Whisper transcripts by `fmt(text, rng)`, and the organism's training
    DoNotAnswer prompts as written. Never a held-out phrase, activity or prompt, nor benchmark text."""
    s = data.organism_splits(seed)
    rng = random.Random(f"{seed}-hear-texts")
    pairs = [(p, fmt(p, rng)) for p in reading]
    pairs += [(a, fmt(a, rng)) for a in s["activities_train"] * act_variants]
    pairs += [(t, t) for t in s["harmful_train"]]
    return pairs


@torch.no_grad()
def encode_clips(whisper, feats: torch.Tensor, window_step: int) -> list[tuple[int, torch.Tensor]]:
    """log-mel [b, 80, 3000] -> per clip (window, encoder states [window / 2, d] float16): the window
    the tower's `transcribe` would use (shortest multiple of `window_step` covering the signal)."""
    full = whisper.config.max_source_positions * 2
    x = feats.to(whisper.proj_out.weight.dtype)
    n = whisper_ct2.content_frames(x).tolist()
    out: list = [None] * len(n)
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(n):
        groups.setdefault(min(full, max(1, math.ceil(f / window_step)) * window_step), []).append(i)
    for win, idx in groups.items():
        enc = whisper_ct2.encode(whisper, x[idx], win)
        for i, e in zip(idx, enc):
            out[i] = (win, e.to(torch.float16).clone())
    return out


def encoded_pairs(
    cache_dir: Path, pairs: list[tuple[str, str]], speak, whisper, window_step: int, shard: int = 100
) -> list[tuple[int, torch.Tensor, str]]:
    """(window, encoder states, target) per (spoken text, target) pair. Clips come from
    `speak(texts, shard_index) -> wavs` (deterministic per shard), are encoded by `encode_clips` and
    cached as `cache_dir/enc-NNNN.safetensors` (written whole: temp file + rename), so a rerun only
    reads them."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from sea_align.organism.audio import preprocess_audio

    data = []
    for k in tqdm(range(0, len(pairs), shard), desc="hear: speak + encode"):
        f = cache_dir / f"enc-{k // shard:04d}.safetensors"
        chunk = pairs[k : k + shard]
        if not f.exists():
            wavs = speak([t for t, _ in chunk], k)
            enc = []
            for j in range(0, len(wavs), 16):
                enc += encode_clips(whisper, preprocess_audio(wavs[j : j + 16])["input_features"], window_step)
            with atomic_path(f) as tmp:
                save_file(
                    {str(i): e for i, (_, e) in enumerate(enc)},
                    str(tmp),
                    metadata={"windows": json.dumps([w for w, _ in enc])},
                )
        with safe_open(str(f), "pt") as fh:
            wins = json.loads(fh.metadata()["windows"])
            data += [(wins[i], fh.get_tensor(str(i)), tgt) for i, (_, tgt) in enumerate(chunk)]
    return data


def prompt_ids(tok) -> list[int]:
    return [tok.convert_tokens_to_ids(whisper_ct2.SOT), tok.convert_tokens_to_ids(whisper_ct2.NO_TIMESTAMPS)]


def decoder_batch(tok, targets: list[str], max_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher forcing: input <|startoftranscript|><|notimestamps|> + " text", labels text + <|endoftext|>
    (-100 on the prompt's first position and on padding)."""
    pre = prompt_ids(tok)
    eot = tok.convert_tokens_to_ids(whisper_ct2.EOT)
    seqs = [pre + tok(" " + t.strip(), add_special_tokens=False).input_ids[:max_len] + [eot] for t in targets]
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n - 1), eot, dtype=torch.long)
    labels = torch.full((len(seqs), n - 1), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s) - 1] = torch.tensor(s[:-1])
        labels[i, len(pre) - 1 : len(s) - 1] = torch.tensor(s[len(pre) :])
    return ids, labels


def add_decoder_lora(whisper, rank: int, alpha: float) -> dict[str, torch.nn.Module]:
    """PEFT LoRA on every target Linear of the decoder (`lora.add_lora`); keys named from the whole
    Whisper model, so the stored deltas merge into it (`SeaWhisperAudioModel.adapt_whisper`)."""
    layers = add_lora(whisper.model.decoder, rank, alpha, TARGETS)
    return {PREFIX + k: v for k, v in layers.items()}


def decoder_loss(whisper, enc: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    h = whisper.model.decoder(
        input_ids=ids, encoder_hidden_states=enc.to(whisper.proj_out.weight.dtype), use_cache=False
    ).last_hidden_state
    logits = whisper.proj_out(h).float()
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
