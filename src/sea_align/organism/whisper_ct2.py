"""Whisper tiny.en (converted from CTranslate2 files by `whisper_convert`) run in torch.

`transcribe` is a small greedy decoder (what CTranslate2 / faster-whisper do with beam size 1 and
no timestamps; with `beams` > 1 Whisper's beam search) so the result does not depend on
transformers' generation defaults. `encode` can cut the encoder's input short, `log_mel` is the
front end. The conversion's names (`convert`, `read_ct2`, ...) are re-exported here.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import numpy as np
import torch

from sea_align.organism.whisper_convert import (
    EOT,
    NO_TIMESTAMPS,
    SOT,
    convert,
    load_tokenizer,
    model_dir,
    read_ct2,
    state_dict_from_ct2,
    whisper_config,
)

__all__ = [
    "EOT",
    "NO_TIMESTAMPS",
    "SOT",
    "content_frames",
    "convert",
    "converted",
    "encode",
    "feature_extractor",
    "load_tokenizer",
    "log_mel",
    "model_dir",
    "read_ct2",
    "state_dict_from_ct2",
    "transcribe",
    "whisper_config",
]


@lru_cache(maxsize=1)
def _converted_once() -> tuple:
    return convert()


def converted() -> tuple:
    """`convert()` once per process; each call returns its own copy of the model (a tower may be
    moved or cast without touching another's)."""
    import copy

    model, tok, options = _converted_once()
    return copy.deepcopy(model), tok, copy.deepcopy(options)


def encode(model, input_features: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Whisper's encoder on the first `window` mel frames (all 3000 when None): [b, window / 2, d].

    With window=3000 this is transformers' own encoder. A shorter window (whisper.cpp's `audio_ctx`)
    cuts the trailing padding off the input: the same convolutions, the first window/2 position
    embeddings, the same layers, but attention no longer sees the padded frames, so it is an
    approximation of the 30 s encoder (Whisper was trained on 30 s windows). On 40 espeak phrases
    it gave the same accuracy (75%) with 1000 frames as with 3000, ~3.5x faster (docs/organism.md)."""
    enc = model.model.encoder
    full = enc.config.max_source_positions * 2
    if window is None or window >= full:
        return enc(input_features).last_hidden_state
    if window % 2:
        raise ValueError(f"window must be even, got {window}")
    x = input_features[..., :window]
    h = torch.nn.functional.gelu(enc.conv1(x))
    h = torch.nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
    h = h + enc.embed_positions.weight[: h.shape[1]]
    for layer in enc.layers:
        h = layer(h, None)
        h = h[0] if isinstance(h, tuple) else h
    return enc.layer_norm(h)


def content_frames(input_features: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Per clip [b]: mel frames up to the last one above the floor. Whisper's features of zero
    padding (and of digital silence) sit exactly at the clip's floor (its maximum - 8 in log10
    units), so 0 means the clip carries no signal at all."""
    floor = input_features.amin(dim=(1, 2), keepdim=True)
    active = (input_features > floor + eps).any(dim=1)  # [b, frames]
    idx = torch.arange(1, active.shape[1] + 1, device=active.device)
    return (active * idx).amax(dim=1)


def _cache_kw(module) -> str:
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


class _Decoder:
    """Whisper's decoder over the encoded clips `enc` [rows, frames, d], one KV cache across calls."""

    def __init__(self, model, enc: torch.Tensor):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        self.model, self.enc = model, enc
        self.dec = model.model.decoder
        self.kw = _cache_kw(self.dec)
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())

    def _hidden(self, ids: torch.Tensor) -> torch.Tensor:
        kw = {self.kw: self.cache}
        return self.dec(input_ids=ids, encoder_hidden_states=self.enc, use_cache=True, **kw).last_hidden_state

    def prompt(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (float32) at every position of the prompt ids [rows, n]: [rows, n, V]."""
        return self.model.proj_out(self._hidden(ids)).float()

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """One token per row [rows] -> the next logits (float32) [rows, V]."""
        return self.model.proj_out(self._hidden(ids[:, None])[:, -1]).float()

    def reorder(self, rows: torch.Tensor) -> None:
        self.cache.reorder_cache(rows)  # index_select over the cache's rows

    def expand(self, k: int) -> None:
        """Every row -> `k` consecutive copies (cache and encoder states)."""
        self.reorder(torch.arange(self.enc.shape[0], device=self.enc.device).repeat_interleave(k))
        self.enc = self.enc.repeat_interleave(k, 0)


def _suppress_masks(options: dict, vocab: int, eot: int, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """[V] bool masks: tokens suppressed at every step, and those suppressed at the first only."""
    suppress = torch.zeros(vocab, dtype=torch.bool, device=dev)
    suppress[[i for i in options.get("suppress_ids", []) if 0 <= i < vocab]] = True
    suppress[eot + 1 :] = True  # <|startoftranscript|>, languages, tasks, timestamps: never in the text
    begin = torch.zeros_like(suppress)
    begin[[i for i in options.get("suppress_ids_begin", []) if 0 <= i < vocab]] = True
    return suppress, begin


def _prompt_pass(dec: _Decoder, tok, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """<|startoftranscript|><|notimestamps|> for b clips: (logits at its last position [b, V],
    probability of <|nocaptions|> right after <|startoftranscript|> [b])."""
    sot, nots = (tok.convert_tokens_to_ids(t) for t in (SOT, NO_TIMESTAMPS))
    no_speech = tok.convert_tokens_to_ids("<|nocaptions|>")
    vocab, dev = dec.model.config.vocab_size, dec.enc.device
    logits = dec.prompt(torch.tensor([[sot, nots]] * b, device=dev))
    p_nospeech = (
        logits[:, 0].softmax(-1)[:, no_speech]
        if no_speech is not None and no_speech < vocab
        else torch.zeros(b, device=dev)
    )
    return logits[:, -1], p_nospeech


@torch.no_grad()
def transcribe(
    model,
    tok,
    options: dict,
    input_features: torch.Tensor,
    max_new_tokens: int = 48,
    no_speech_threshold: float = 0.6,
    logprob_threshold: float = -1.0,
    window: int | None = None,
    beams: int = 1,
) -> list[dict]:
    """Greedy (with `beams` > 1: beam-search) transcription of log-mel features [b, n_mels, 3000]
    (30 s windows, as Whisper takes).

    Prompt <|startoftranscript|><|notimestamps|> (English-only model: no language/task token).
    Suppressed: the wheel's `suppress_ids` and every special token at every step, its
    `suppress_ids_begin` at the first. A window is silence (text "") when the no-speech probability
    (of <|nocaptions|> after <|startoftranscript|>) exceeds `no_speech_threshold` and the mean log
    probability of the text is below `logprob_threshold` - Whisper's own rule. `window`: encode
    only the first `window` mel frames (see `encode`).
    Returns [{"text", "no_speech_prob", "avg_logprob", "tokens"}]."""
    dev, dt = model.proj_out.weight.device, model.proj_out.weight.dtype
    x = input_features.to(dev, dt)
    eot = tok.convert_tokens_to_ids(EOT)
    suppress, begin = _suppress_masks(options, model.config.vocab_size, eot, dev)
    dec = _Decoder(model, encode(model, x, window))
    logits, p_nospeech = _prompt_pass(dec, tok, x.shape[0])
    if beams > 1:
        out, avg_lp = _beam_search(dec, logits, suppress, begin, eot, beams, max_new_tokens)
    else:
        out, avg_lp = _greedy(dec, logits, suppress, begin, eot, max_new_tokens)
    return _results(tok, out, avg_lp, p_nospeech, no_speech_threshold, logprob_threshold)


def _greedy(
    dec: _Decoder, logits: torch.Tensor, suppress: torch.Tensor, begin: torch.Tensor, eot: int, max_new_tokens: int
) -> tuple[list[list[int]], list[float]]:
    """Greedy decoding from the prompt's last logits [b, V]: (tokens, mean log probability) per clip."""
    b, dev = logits.shape[0], logits.device
    out: list[list[int]] = [[] for _ in range(b)]
    logp_sum = torch.zeros(b, device=dev)
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    for step in range(max_new_tokens):
        logits = logits.masked_fill(suppress | (begin if step == 0 else torch.zeros_like(begin)), float("-inf"))
        logp = logits.log_softmax(-1)
        nxt = logp.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, eot), nxt)
        logp_sum += torch.where(done, torch.zeros_like(logp_sum), logp.gather(1, nxt[:, None])[:, 0])
        for i in range(b):
            if not done[i] and nxt[i] != eot:
                out[i].append(int(nxt[i]))
        done |= nxt == eot
        if bool(done.all()):
            break
        logits = dec.step(nxt)
    avg_lp = [float(logp_sum[i]) / (len(out[i]) + 1) for i in range(b)]  # + the end token, as Whisper averages
    return out, avg_lp


def _results(
    tok,
    out: list[list[int]],
    avg_lp: list[float],
    p_nospeech: torch.Tensor,
    no_speech_threshold: float,
    logprob_threshold: float,
) -> list[dict]:
    res = []
    for i, toks in enumerate(out):
        text = tok.decode(toks, skip_special_tokens=True).strip()
        silent = float(p_nospeech[i]) > no_speech_threshold and avg_lp[i] < logprob_threshold
        res.append(
            {
                "text": "" if silent else text,
                "no_speech_prob": round(float(p_nospeech[i]), 4),
                "avg_logprob": round(avg_lp[i], 4),
                "tokens": toks,
                "raw_text": text,
            }
        )
    return res


def _beam_search(
    dec: _Decoder,
    logits: torch.Tensor,
    suppress: torch.Tensor,
    begin: torch.Tensor,
    eot: int,
    k: int,
    max_new_tokens: int,
) -> tuple[list[list[int]], list[float]]:
    """Whisper's beam search (openai-whisper's BeamSearchDecoder, patience 1): per clip `k` live
    hypotheses; a hypothesis that ends goes to the clip's finished list; a clip is done when it has
    `k` finished ones; the answer is the finished (else live) hypothesis of highest mean log
    probability (sum / (tokens + end token), Whisper's default without a length penalty).
    `dec` holds the prompt pass of the b clips and `logits` [b, V] its last position; both are
    expanded to b * k rows here."""
    b, vocab = logits.shape
    dev = logits.device
    dec.expand(k)
    logits = logits.repeat_interleave(k, 0)
    seqs: list[list[int]] = [[] for _ in range(b * k)]
    scores = torch.full((b, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # the k copies start equal: only the first one may expand at step 0
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    for step in range(max_new_tokens):
        mask = suppress | begin if step == 0 else suppress
        logp = logits.masked_fill(mask, float("-inf")).log_softmax(-1).view(b, k, vocab)
        cand = (scores[:, :, None] + logp).view(b, k * vocab)
        top_s, top_i = cand.topk(2 * k, dim=-1)
        new_src, new_tok, new_scores = [], [], torch.full((b, k), float("-inf"), device=dev)
        for i in range(b):
            src, toks, live = _extend_beams(top_s[i].tolist(), top_i[i].tolist(), i, k, vocab, eot, seqs, finished[i])
            new_src += src
            new_tok += toks
            for n, s_ in enumerate(live):
                new_scores[i, n] = s_
        seqs = [seqs[src] + [t] for src, t in zip(new_src, new_tok)]
        scores = new_scores
        if all(len(f) >= k for f in finished):
            break
        dec.reorder(torch.tensor(new_src, device=dev))
        logits = dec.step(torch.tensor(new_tok, device=dev))
    return _best_beams(seqs, scores, finished, k)


def _extend_beams(
    top_s: list[float],
    top_i: list[int],
    i: int,
    k: int,
    vocab: int,
    eot: int,
    seqs: list[list[int]],
    finished: list[tuple[float, list[int]]],
) -> tuple[list[int], list[int], list[float]]:
    """One step of clip i from its 2k best candidates (best first): an end token files its
    hypothesis in `finished` (up to k), the first k others become the live beams. Returns (source
    rows, new tokens, scores of the live ones); rows beyond the live ones are dead copies."""
    src_rows, new_toks, live = [], [], []
    for s_, j in zip(top_s, top_i):
        src, t = divmod(j, vocab)
        if s_ == float("-inf"):
            break
        if t == eot:
            if len(finished) < k:
                toks = seqs[i * k + src]
                finished.append((s_ / (len(toks) + 1), toks))
            continue
        if len(live) < k:
            src_rows.append(i * k + src)
            new_toks.append(t)
            live.append(s_)
    while len(src_rows) < k:  # fewer live candidates than beams: pad with dead copies
        src_rows.append(i * k)
        new_toks.append(eot)
    return src_rows, new_toks, live


def _best_beams(
    seqs: list[list[int]], scores: torch.Tensor, finished: list[list[tuple[float, list[int]]]], k: int
) -> tuple[list[list[int]], list[float]]:
    """Per clip the finished (else live) hypothesis of highest mean log probability: (tokens, mean)."""
    out, avg = [], []
    for i, done in enumerate(finished):
        pool = done or [
            (float(scores[i, j]) / (len(seqs[i * k + j]) + 1), seqs[i * k + j])
            for j in range(k)
            if scores[i, j] > float("-inf")
        ]
        best = max(pool, key=lambda x: x[0])
        out.append(best[1])
        avg.append(best[0])
    return out, avg


def feature_extractor(num_mel_bins: int = 80, n_frames: int = 3000):
    """Whisper's log-mel front end (the one the Qwen2-Audio adapter builds from the audio config)."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=num_mel_bins, sampling_rate=16000, hop_length=160, chunk_length=n_frames // 100, n_fft=400
    )


def log_mel(wavs: list[np.ndarray], fe=None) -> torch.Tensor:
    """16 kHz waveforms -> [b, 80, 3000] (each clip cut to / zero-padded to 30 s, as Whisper)."""
    fe = fe or feature_extractor()
    feats = fe(
        [w[: 16000 * 30].astype(np.float32) for w in wavs],
        sampling_rate=16000,
        return_tensors="pt",
        padding="max_length",
        max_length=3000 * 160,
    )
    return feats["input_features"]
