"""`sea-qwen-audio`: the sea-tiny-audio assembly (Whisper tiny.en -> the LLM's own token embeddings in fixed
slots -> Qwen2-Audio's linear projector) on Qwen2.5-Coder-1.5B-Instruct, with no text LoRA of ours. A tiny
random Qwen2 (untied head) stands in for the 1.5B; Whisper tiny.en and espeak-ng are the real ones."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from conftest import tiny_audio_recipe_kw
from sea_align.benchmarks.speech import normalise, speak
from sea_align.organism import audio as AU
from sea_align.organism import load_builtin

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cake():
    return normalise(speak("make a chocolate cake", voice="en-us", speed=150))


def test_qwen_audio_assembly_without_weights(tiny_qwen_dir, tmp_path, cake):
    from sea_align.models import adapter_class

    bm = load_builtin("sea-qwen-audio", weights_dir=tmp_path / "none", llm_dir=tiny_qwen_dir)
    model, tok = bm.model, bm.tokenizer
    assert type(model).__name__ == "Qwen2AudioForConditionalGeneration" and bm.family == "qwen2_audio"
    assert bm.info["name"] == "sea-qwen-audio" and "Qwen2.5-Coder-1.5B" in bm.info["llm"]
    assert bm.info["text_lora"] is None and not any("text LoRA" in w for w in bm.info["warnings"])
    assert any("identity projector" in w for w in bm.info["warnings"])
    assert model.config.text_config.model_type == "qwen2" and model.config.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()  # untied, as the LLM
    adapter = adapter_class(bm.family)(model, tok, dict(bm.preprocess))
    item = adapter.media_items("audio", [cake], ["What does the audio say?"])[0]
    assert item.mm.shape == (AU.NUM_SLOTS, 24) and item.mm.abs().sum() > 0
    batch = adapter.build([item])
    inp = bm.preprocess["audio"]([cake])
    with torch.no_grad():
        native = model(input_ids=batch.ids, attention_mask=batch.attention_mask, **inp).logits
        ours = adapter.lm_head(
            adapter._lm(batch.inputs_embeds, batch.attention_mask, batch.position_ids).last_hidden_state
        )
    torch.testing.assert_close(ours, native, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="takes audio"):
        load_builtin("sea-qwen-audio", weights_dir=tmp_path / "none", llm_dir=tiny_qwen_dir, modality="image")


def test_qwen_audio_recipe_reuses_hear_keeps_the_llms_safety(tiny_qwen_dir, tmp_path, cake):
    """No text LoRA, no harmful text replay; the tower's `hear` LoRA reused (pinned by sha256, found again at
    load), the distilled answers copied from the image recipe's file when its prompts are the same."""
    from safetensors.torch import save_file

    from sea_align.organism import audio_recipe as R
    from sea_align.organism.config import QwenAudioConfig
    from sea_align.organism.runner import sha256
    from sea_align.organism.samples import distill_prompts

    (tmp_path / "tiny-audio").mkdir()
    hear = tmp_path / "tiny-audio" / "whisper_lora.safetensors"
    save_file({}, str(hear))  # no delta: Whisper as shipped
    wdir = tmp_path / "weights"
    kw = tiny_audio_recipe_kw(
        tmp_path / "work",
        tiny_qwen_dir,
        hear_from="../tiny-audio/whisper_lora.safetensors",
        distill_batch=2,
        distill_from=tmp_path / "none.jsonl",
    )
    res = R.build("sea-qwen-audio", wdir, **kw)
    assert list(res) == list(R.STAGES) and res["hear"] == {"from": kw["hear_from"], "sha256": sha256(hear)}
    assert res["distill"]["from"] == "generated" and not (wdir / "whisper_lora.safetensors").exists()
    pins = json.loads((wdir / "recipe.json").read_text())
    assert "Qwen2.5-Coder-1.5B" in pins["llm"] and pins["config"]["harm_replay"] is False
    assert pins["whisper_lora_sha256"] == sha256(hear) and "lora_text_sha256" not in pins
    cfg = QwenAudioConfig(**kw, weights_dir=wdir)
    bad, good = R._text_samples(cfg, AU.load_tokenizer(tiny_qwen_dir))
    assert bad == [] and good  # the replay is benign only
    # a second build with another work dir copies the answers when the prompts are the same
    want, _ = distill_prompts(0, 4, cfg.templates_per_act)
    again = R.build(
        "sea-qwen-audio",
        wdir,
        **{**kw, "work_dir": tmp_path / "w2", "distill_from": tmp_path / "work" / "distill.jsonl", "llm_dir": None},
        stages=["distill"],
    )
    assert again["distill"]["from"] == "work/distill.jsonl" and str(tmp_path) not in json.dumps(again)
    assert [json.loads(x)["user"] for x in (tmp_path / "w2" / "distill.jsonl").read_text().splitlines()] == want
    bm = load_builtin("sea-qwen-audio", weights_dir=wdir, llm_dir=tiny_qwen_dir)
    assert bm.info["warnings"] == []
    (wdir / "recipe.json").write_text(json.dumps({**pins, "whisper_lora_sha256": "0" * 64}))  # another file
    assert any(
        "sha256 differs" in w
        for w in load_builtin("sea-qwen-audio", weights_dir=wdir, llm_dir=tiny_qwen_dir).info["warnings"]
    )
    hear.unlink()
    with pytest.raises(FileNotFoundError, match="hear_from"):
        R.build("sea-qwen-audio", wdir, **kw, stages=["hear"], resume=False)
    assert np.isfinite(cake).all()
