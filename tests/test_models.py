"""Adapters on tiny random models of every family: shapes, equivalence with the family's own forward
on real media, batched == one-by-one generation, and clear errors."""

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sea_align.models import Item, ModelAdapter, ModelError, load_adapter
from sea_align.models.tiny import FAMILIES

MOD = {
    "llava": "image",
    "llava_next_video": "video",
    "qwen2_vl": "image",
    "qwen2_5_vl": "image",
    "qwen2_audio": "audio",
}


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request):
    return load_adapter(f"tiny-random-{request.param}")


def _media(modality, seed=0):
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8))
    if modality == "image":
        return img
    if modality == "video":
        return [img] * 8
    return rng.standard_normal(16000).astype(np.float32) * 0.1


def test_blank_shapes_and_projection(adapter):
    m = adapter.modalities[0]
    f = adapter.blank(m)
    mm = adapter.to_llm(m, f)
    assert f.x.ndim == 2 and mm.ndim == 2
    assert mm.shape[1] == adapter.embed_tokens.weight.shape[1]


def _native_logits(a, batch, m, media):
    """The family's own forward, given the same expanded ids and raw media inputs."""
    model = a.model
    if a.family == "llava":
        return model(input_ids=batch.ids, attention_mask=batch.attention_mask, pixel_values=a.pixels([media])).logits
    if a.family == "llava_next_video":
        pv = a.pixels(media)[None]
        return model(input_ids=batch.ids, attention_mask=batch.attention_mask, pixel_values_videos=pv).logits
    if a.family in ("qwen2_vl", "qwen2_5_vl"):
        pv, grid = a.pixels("image", [media])
        ttype = (batch.ids == a.placeholder_ids["image"]).int()
        return model(
            input_ids=batch.ids,
            attention_mask=batch.attention_mask,
            pixel_values=torch.from_numpy(pv),
            image_grid_thw=torch.tensor([grid]),
            mm_token_type_ids=ttype,
        ).logits
    feats = {k: torch.from_numpy(v) for k, v in a.features(media).items()}
    return model(input_ids=batch.ids, attention_mask=batch.attention_mask, **feats).logits


def test_same_logits_as_native_forward(adapter):
    """Our path (encode -> project -> inputs_embeds -> language model) equals the model's own forward."""
    m = adapter.modalities[0]
    media = _media(m)
    item = adapter.media_items(m, [media], ["What is shown?"])[0]
    batch = adapter.build([item])
    with torch.no_grad():
        h = adapter._lm(batch.inputs_embeds, batch.attention_mask, batch.position_ids).last_hidden_state
        ours = adapter.lm_head(h)
        native = _native_logits(adapter, batch, m, media)
    torch.testing.assert_close(ours, native, atol=1e-4, rtol=1e-4)


def test_batched_generation_equals_one_by_one(adapter):
    m = adapter.modalities[0]
    items = adapter.media_items(m, [_media(m, 1), _media(m, 2)], ["Describe it.", "What does it say here?"])
    items.append(Item("A text-only question that is longer than the others."))
    batched = adapter.generate(items, max_new_tokens=6)
    single = [adapter.generate([it], max_new_tokens=6)[0] for it in items]
    assert batched == single


def test_missing_modality_is_clear(adapter):
    missing = [m for m in ("image", "video", "audio") if m not in adapter.modalities][0]
    with pytest.raises(ModelError, match=f"has no {missing} input"):
        adapter.blank(missing)


def test_unsupported_family():
    with pytest.raises(ModelError, match="supported: llava"):
        load_adapter("tiny-random-blip")


def test_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="not a built-in name"):
        load_adapter(str(tmp_path / "nothing-here"))


def test_prefix_cache_is_exact(adapter):
    """Reusing the KV of the shared prompt prefix gives the same losses and gradients as recomputing it."""
    m = adapter.modalities[0]
    x = adapter.blank(m).x[None].clone()
    results = []
    for caching in (False, True):
        adapter.prefix_caching = caching
        E = x.clone().requires_grad_(True)
        mm = adapter.project(m, E, adapter.blank(m).meta)
        items = [
            Item("What does it say?", m, mm[0], adapter.blank(m).meta, target="It says hello."),
            Item("Describe the style, please.", m, mm[0], adapter.blank(m).meta, target="Bold."),
        ]
        assert caching is False or len(adapter.shared_prefix(items)) > 0
        loss, match = adapter.target_stats(items)
        loss.sum().backward()
        results.append((loss.detach(), E.grad.clone()))
    adapter.prefix_caching = True
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-5, rtol=1e-3)


def test_grouped_media_pass_is_exact(adapter):
    """Running each sample's media once and sharing its KV across the sample's pairs gives the same
    losses, matches and gradients as running every pair in full."""
    m = adapter.modalities[0]
    meta = adapter.blank(m).meta
    x = adapter.blank(m).x[None].repeat(2, 1, 1)
    x = x + 0.1 * torch.randn_like(x)  # two different samples
    prompts = [
        ("What does it say?", "It says hello."),
        ("Describe the style, please.", "Bold and red."),
        ("Read it out.", "Hello there, friend."),
    ]
    results = []
    for groups in (None, [0, 0, 0, 1, 1, 1]):
        E = x.clone().requires_grad_(True)
        mm = adapter.project(m, E, meta)
        items = [Item(q, m, mm[i], meta, target=t) for i in range(2) for q, t in prompts]
        if groups is not None:
            assert adapter.media_end(items) > len(adapter.shared_prefix(items))
        loss, match = adapter.target_stats(items, groups=groups)
        (loss * torch.arange(1, 7)).sum().backward()  # distinct weights: a mixed-up row would show
        results.append((loss.detach(), match, E.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-4)
    assert torch.equal(results[0][1], results[1][1])
    torch.testing.assert_close(results[0][2], results[1][2], atol=1e-5, rtol=1e-3)


def test_lowp_weights_match_autocast():
    """bf16 copies of the frozen Linear weights give the same loss and gradient as autocast's own
    per-call casts, and the model is back to float32 after the block."""
    adapter = load_adapter("tiny-random-llava")
    meta = adapter.blank("image").meta
    before = {n: p for n, p in adapter.model.named_parameters()}
    results = []
    for lowp in (False, True):
        E = adapter.blank("image").x[None].clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if lowp:
                with adapter.low_precision_weights(torch.bfloat16):
                    assert adapter.lm_head.weight.dtype == torch.bfloat16
                    mm = adapter.project("image", E, meta)
                    loss, _ = adapter.target_stats([Item("What does it say?", "image", mm[0], meta, target="Hi.")])
            else:
                mm = adapter.project("image", E, meta)
                loss, _ = adapter.target_stats([Item("What does it say?", "image", mm[0], meta, target="Hi.")])
        loss.sum().backward()  # after the block: autograd kept the bf16 tensors it saved
        results.append((loss.detach(), E.grad.clone()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    after = {n: p for n, p in adapter.model.named_parameters()}
    assert all(after[n] is p and p.dtype == torch.float32 for n, p in before.items())


def test_grouping_is_ignored_when_media_differ():
    """A wrong `groups` (items with different embeddings in one group) must not share anything."""
    adapter = load_adapter("tiny-random-llava")
    meta = adapter.blank("image").meta
    x = adapter.blank("image").x[None].repeat(2, 1, 1)
    x = x + 0.1 * torch.randn_like(x)
    mm = adapter.project("image", x, meta)
    items = [Item("What does it say?", "image", mm[i], meta, target="Hello.") for i in range(2)]
    with torch.no_grad():
        plain, _ = adapter.target_stats(items)
        wrong, _ = adapter.target_stats(items, groups=[0, 0])
    torch.testing.assert_close(plain, wrong)
    assert not torch.allclose(plain[0], plain[1])


# ----- the adapter contract ----------------------------------------------------------------------------
SRC = Path(__file__).resolve().parents[1] / "src" / "sea_align"
ADAPTER_NAMES = {"adapter", "ad", "a", "teacher"}  # what the stages call an adapter (`self.a`, `synth.a` too)


def _protocol_members() -> set[str]:
    names = set(ModelAdapter.__annotations__)
    names |= {
        k for k, v in vars(ModelAdapter).items() if not k.startswith("_") and (callable(v) or isinstance(v, property))
    }
    return names


def _adapter_uses(path: Path) -> set[str]:
    """Attribute names read off an adapter in one source file: `adapter.x`, `self.a.x`, `synth.a.x`..."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if (isinstance(v, ast.Name) and v.id in ADAPTER_NAMES) or (
            isinstance(v, ast.Attribute) and v.attr in ("a", "adapter") and isinstance(v.value, ast.Name)
        ):
            used.add(node.attr)
    return used


def test_every_family_adapter_satisfies_the_protocol(adapter):
    assert isinstance(adapter, ModelAdapter)
    missing = [n for n in sorted(_protocol_members()) if not hasattr(adapter, n)]
    assert missing == []
    assert adapter.peft_model is None and adapter.builtin_info == {}  # declared state, not attached later
    assert not isinstance(object(), ModelAdapter)


def test_protocol_lists_exactly_what_the_stages_use():
    files = sorted((SRC / "stages").glob("*.py")) + sorted((SRC / "tools").glob("*.py")) + [SRC / "pipeline.py"]
    used = set().union(*(_adapter_uses(p) for p in files))
    used -= {"a", "adapter"}  # `self.a` itself
    members = _protocol_members()
    assert used - members == set(), "the stages use adapter members the Protocol does not list"
    assert members - used == set(), "the Protocol lists members no stage uses"


def test_core_never_imports_the_builtin_models():
    """The core (everything but organism/) finds the built-ins through entry points only."""
    bad = []
    core = [p for p in sorted(SRC.rglob("*.py")) if "organism" not in p.relative_to(SRC).parts]
    assert len(core) > 60 and SRC / "pipeline.py" in core
    for p in core:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                mods = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            if any(m == "sea_align.organism" or m.startswith("sea_align.organism.") for m in mods):
                bad.append(f"{p.relative_to(SRC)}:{node.lineno}")
        if 'import_module("sea_align.organism' in p.read_text():
            bad.append(str(p.relative_to(SRC)))
    assert bad == []


def test_builtin_names_come_from_the_entry_points():
    from sea_align.models import builtin_names

    assert {"sea-tiny-vl", "sea-tiny-audio", "smollm2-llava"} <= set(builtin_names())


@pytest.fixture
def toy_builtin(monkeypatch):
    """One built-in, "toy-vl" (a tiny random LLaVA), declared through a stand-in for the entry points."""
    from sea_align.models import registry
    from sea_align.models.tiny import build_tiny

    calls = []

    def load(name, dtype=torch.float32, modality=None, **kw):
        calls.append((name, dtype, modality))
        if name.endswith(":broken"):
            raise ValueError("no such variant")
        model, tok, procs = build_tiny("llava", dtype=dtype)
        return registry.BuiltModel(model, tok, "llava", procs, info={"encoder_rms": 0.25})

    eps = [SimpleNamespace(name="toy-vl", load=lambda: load)]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.BUILTIN_GROUP else [])
    return calls


def test_builtin_loads_through_its_entry_point(toy_builtin):
    from sea_align.models.llava import LlavaAdapter

    a = load_adapter("toy-vl", modality="image")
    assert type(a) is LlavaAdapter and a.builtin_info == {"encoder_rms": 0.25}
    assert a.reference_scale("image") == 0.25
    assert toy_builtin == [("toy-vl", torch.float32, "image")]
    with pytest.raises(ModelError, match="--model toy-vl:broken: no such variant"):
        load_adapter("toy-vl:broken")  # the loader reads the variant
    with pytest.raises(ModelError, match=r"only for a pretrained model"):
        load_adapter("toy-vl", device_map="auto")


def test_unknown_model_error_lists_the_entry_point_names(toy_builtin, tmp_path):
    from sea_align.models import registry

    with pytest.raises(ModelError, match=r"built-ins: toy-vl\)"):
        registry.load_builtin("nope", torch.float32)
    with pytest.raises(ModelError, match=r"not a built-in name.*built-ins: toy-vl;"):
        load_adapter(str(tmp_path / "nothing-here"))


def test_attach_peft_drops_the_prefix_kv():
    adapter = load_adapter("tiny-random-llava")
    m = "image"
    meta = adapter.blank(m).meta
    mm = adapter.to_llm(m, adapter.blank(m))
    items = [Item("What does it say?", m, mm, meta, target="Hi."), Item("What does it show?", m, mm, meta, target="A.")]
    with torch.no_grad():
        adapter.target_stats(items)
    assert adapter.prefix_cache._store
    adapter.attach_peft(SimpleNamespace())
    assert not adapter.prefix_cache._store and adapter.peft_model is not None


def test_to_llm_is_one_path_for_features_and_batches():
    adapter = load_adapter("tiny-random-llava")
    f = adapter.blank("image")
    one = adapter.to_llm("image", f)
    batch = adapter.to_llm("image", f.x[None].double(), f.meta)  # cast to the model's dtype
    assert torch.equal(one, batch[0]) and batch.dtype == adapter.dtype
    llm = adapter.to_llm("image", batch, f.meta, space="llm")  # already in LLM space: unchanged
    assert torch.equal(llm, batch)
