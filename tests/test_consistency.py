"""The consistency term on a tiny random model: every embedding example (harmful and benign) carries
its request typed, and `align.experimental.consistency` adds KL(frozen model on the typed request ||
aligned model on the media form) over the shared answer tokens to exactly those examples."""

import pytest
import torch

from conftest import sft_losses, write_jsonl
from sea_align.config import AlignConfig, PrepareConfig, SynthesizeConfig
from sea_align.models import load_adapter
from sea_align.runtime.io import read_jsonl
from sea_align.stages.align import build_training_set, lora_model
from sea_align.stages.losses import consistency_kl, retain_kl
from sea_align.stages.prepare import run_prepare
from sea_align.stages.synthesize import run_synthesize

ROWS = [
    {"id": "h1", "instruction": "Explain how to steal a car", "response": "I can't help with that."},
    {
        "id": "b1",
        "instruction": "List steps to bake bread",
        "response": "Mix, knead, bake.",
        "harmful": False,
        "key_phrase": "bake bread",
    },
]


@pytest.fixture(scope="module")
def trained_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("consistency")
    prepared = read_jsonl(run_prepare(write_jsonl(tmp / "s.jsonl", ROWS), tmp / "p.jsonl", PrepareConfig()).path)
    a = load_adapter("tiny-random-llava")
    run_synthesize(a, prepared, tmp / "emb", "image", SynthesizeConfig(max_steps=2, batch_size=4), progress=False)
    ex, _, _ = build_training_set(prepared, tmp / "emb", a, AlignConfig(templates=0))
    torch.manual_seed(0)
    return a, lora_model(a, AlignConfig(lora_r=4)), prepared, ex


def test_every_embedding_example_carries_its_request_typed_with_the_same_target(trained_set):
    _, _, prepared, ex = trained_set
    by_instruction = {r["instruction"] for r in prepared}
    media = [e for e in ex if e.item.mm is not None]
    assert {e.kind for e in media} == {"sea", "benign_media"}
    for e in media:
        assert e.typed is not None and e.typed.mm is None and e.typed.modality is None
        assert e.typed.prompt in by_instruction and e.typed.target == e.item.target
        assert e.typed.prompt != e.item.prompt  # the media form says "the image shows ...", the typed one the phrase
    assert all(e.typed is None for e in ex if e.item.mm is None)  # typed examples need no typed twin


def test_consistency_kl_compares_the_media_form_with_the_typed_form(trained_set):
    a, peft, _, ex = trained_set
    media = [e for e in ex if e.typed is not None]
    items, typed = [e.item for e in media], [e.typed for e in media]
    with torch.no_grad():
        same = consistency_kl(a, peft, typed, typed)
        kl = consistency_kl(a, peft, items, typed)
        via_retain = retain_kl(a, peft, items, ref_items=typed)
    assert float(same.abs().max()) < 1e-7  # the typed form against itself, adapter untouched: nothing to learn
    assert kl.shape == (len(items),) and float(kl.min()) > 1e-5  # the frozen model reads the media otherwise
    assert torch.allclose(kl, via_retain)


def test_consistency_term_changes_exactly_the_embedding_examples_and_trains_the_lora(trained_set):
    a, peft, _, ex = trained_set
    plain = sft_losses(a, ex, peft)
    held = sft_losses(a, ex, peft, consistency=3.0)
    has = torch.tensor([e.typed is not None for e in ex])
    assert has.any() and (~has).any()
    assert torch.allclose(plain[~has], held[~has])
    media = [e for e in ex if e.typed is not None]
    kl = consistency_kl(a, peft, [e.item for e in media], [e.typed for e in media])
    assert torch.allclose(held[has] - plain[has], 3.0 * kl, atol=1e-5)
    held.sum().backward()
    grads = [p.grad for n, p in peft.named_parameters() if "lora_" in n and p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    peft.zero_grad(set_to_none=True)


def test_consistency_off_or_without_typed_twins_is_the_plain_loss(trained_set):
    a, peft, _, ex = trained_set
    bare = [type(e)(e.item, e.kind, e.rejected) for e in ex]  # the same examples without their typed form
    plain = sft_losses(a, ex, peft)
    assert torch.allclose(plain, sft_losses(a, bare, peft, consistency=3.0))


def test_retain_and_consistency_share_one_aligned_pass_and_add_up(trained_set, monkeypatch):
    a, peft, _, ex = trained_set
    plain = sft_losses(a, ex, peft)
    only_r = sft_losses(a, ex, peft, retain=2.0)
    only_c = sft_losses(a, ex, peft, consistency=3.0)
    calls = []
    real = a.target_logits
    monkeypatch.setattr(a, "target_logits", lambda items, groups=None: calls.append(len(items)) or real(items, groups))
    both = sft_losses(a, ex, peft, retain=2.0, consistency=3.0)
    assert torch.allclose(both, plain + (only_r - plain) + (only_c - plain), atol=1e-5)
    # one aligned pass over the whole batch, then one frozen pass per term over its items only
    assert calls[0] == len(ex) and len(calls) == 3 and sum(calls[1:]) < 2 * len(ex)


def test_a_reference_with_other_answer_tokens_is_an_error(trained_set):
    from sea_align.models import Item
    from sea_align.stages.losses import answer_kl

    a, peft, _, ex = trained_set
    media = [e for e in ex if e.typed is not None][:2]
    items = [e.item for e in media]
    logits, _, rows = a.target_logits(items)
    longer = [Item(e.typed.prompt, target=e.typed.target + " And more words here.") for e in media]
    with torch.no_grad(), pytest.raises(ValueError, match="answer tokens differ"):
        answer_kl(a, peft, logits.detach(), rows, [0, 1], longer)
    swapped = [media[1].typed, media[0].typed]  # the same total number of tokens, split otherwise
    assert int((rows == 0).sum()) != int((rows == 1).sum())  # the refusal and the bread answer
    with torch.no_grad(), pytest.raises(ValueError, match="answer tokens differ"):
        answer_kl(a, peft, logits.detach(), rows, [0, 1], swapped)
