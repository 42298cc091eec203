"""The audio recipe's data: speakable reading phrases, espeak-ng clips of the organism's voices, and the
cached Whisper transcripts the `read` and `instruct` stages train on (`work_dir/speech/<tag>-NNNN.jsonl`:
{"text", "asr", "no_speech_prob", voice, speed, pitch, noise layout}; written whole)."""

from __future__ import annotations

import random
import re

import numpy as np
from tqdm.auto import tqdm

from sea_align.judges.textmatch import contains_phrase
from sea_align.organism import audio, data
from sea_align.organism.samples import read_rows
from sea_align.runtime.io import atomic_write_jsonl

# espeak-ng voices of the organism. speech.VOICES minus en-029 and en-gb-scotland, which Whisper
# tiny.en transcribed at 34% / 50% (32 phrases each) against 66-88% for these (docs/organism.md).
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-us+f3", "en-us+m7", "en-gb-x-gbclan")


def audio_instruction(template: str, noise_then: bool = False) -> str:
    """The KPT prompt in a training template ("The end of the audio shows ..." when the phrase comes
    after noise)."""
    q = data.media_instruction(template, "audio")
    return q.replace("The audio shows", "The end of the audio shows", 1) if noise_then else q


def speakable_words(tok, seed: int = 0) -> list[str]:
    """Words for spoken reading phrases: SmolLM2 whole-word tokens with id < 3000 (the image
    recipe's reading vocabulary) that also occur as words in the organism's own training texts
    (DoNotAnswer training prompts, training activities). The token list alone holds fragments
    ("econom", "surv", "dise") that are not words and cannot be spoken."""
    s = data.organism_splits(seed)
    text_words = {w for t in s["harmful_train"] + s["activities_train"] for w in re.findall(r"[a-z]+", t.lower())}
    return sorted(set(data.reading_words(tok)) & text_words)


def audio_reading_sets(tok, n_train: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training, held-out) spoken reading phrases: random 2-6 word combinations (the image
    recipe's `reading_phrases`) of `speakable_words`; the 200 held-out ones are drawn with their own
    seed and never spoken for training."""
    words = speakable_words(tok, seed)
    held = data.reading_phrases(words, 200, random.Random(f"{seed}-audio-read-held"))
    held_set = set(held)
    train = [
        p for p in data.reading_phrases(words, n_train + 400, random.Random(f"{seed}-audio-read")) if p not in held_set
    ]
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
        out += tower.transcribe(audio.preprocess_audio(wavs[i : i + batch])["input_features"])
    return out


def speak_set(cfg, tower, texts: list[str], tag: str) -> None:
    """Speak `texts`, transcribe with the tower, cache {text, transcript, how it was spoken} in shards."""
    shard = 100
    for k in tqdm(range(0, len(texts), shard), desc=f"speech {tag}"):
        f = cfg.work_dir / "speech" / f"{tag}-{k // shard:04d}.jsonl"
        if f.exists():
            continue
        rng = random.Random(f"{cfg.seed}-speech-{tag}-{k}")
        chunk = texts[k : k + shard]
        clips = [speech_clip(t, rng, cfg.noise_share) for t in chunk]
        res = transcribe_clips(tower, [w for w, _ in clips])
        atomic_write_jsonl(
            f,
            [
                {"text": t, "asr": r["text"], "no_speech_prob": r["no_speech_prob"], **info}
                for t, (_, info), r in zip(chunk, clips, res)
            ],
        )


def load_speech(cfg, tag: str) -> list[dict]:
    rows = []
    for f in sorted((cfg.work_dir / "speech").glob(f"{tag}-*.jsonl")):
        rows += read_rows(f)
    return rows


def load_heard(cfg, tag: str) -> list[dict]:
    """Training clips of `tag`; with `cfg.heard_only` only those whose Whisper transcript contains
    the spoken text (`judges.textmatch.contains_phrase`). Trained on all clips (recipe draft, 250 read
    steps), the LLM learnt to guess: on 40 held-out phrases its answers matched 57.5% where the
    transcripts alone matched 70% (dropped and invented words). Filtered, it learns to copy the
    transcript (normalising case, punctuation, digits)."""
    rows = load_speech(cfg, tag)
    return [r for r in rows if contains_phrase(r["text"], r["asr"])] if cfg.heard_only else rows


def copy_words(seed: int = 0) -> list[str]:
    """Words of the text-copy samples: every 3-11 letter word of the organism's training texts."""
    s = data.organism_splits(seed)
    return sorted(
        {
            w
            for t in s["harmful_train"] + s["activities_train"]
            for w in re.findall(r"[a-z]+", t.lower())
            if 3 <= len(w) <= 11
        }
    )


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
