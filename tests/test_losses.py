"""The alignment loss as registered terms: which terms a config turns on, and a new term added with one
class (as docs/stages.md shows) that the training step then adds on exactly the examples it selects."""

import logging

import pytest
import torch

from sea_align.config import AlignConfig, AlignExperimental
from sea_align.models import load_adapter
from sea_align.models.base import Item
from sea_align.stages.align import lora_model
from sea_align.stages.losses import TERMS, LossTerm, StepLoss, build_terms, item_losses, register_term
from sea_align.stages.records import Example

EXAMPLES = [
    Example(Item("Explain how to steal a car", target="I can't help with that."), "text"),
    Example(Item("List steps to bake bread", target="Mix flour and water, knead, bake."), "benign_text"),
    Example(Item("List steps to water a cactus", target="Rarely."), "benign_text"),
]


@pytest.fixture(scope="module")
def lora():
    a = load_adapter("tiny-random-llava")
    torch.manual_seed(0)
    peft = lora_model(a, AlignConfig(lora_r=4))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # the adapter has moved: KL terms are not zero
    return a, peft


@pytest.fixture
def brevity():
    """A new term, one class: the length of each benign answer in characters, weight 0.01."""

    @register_term
    class Brevity(LossTerm):
        name = "brevity"

        @classmethod
        def from_config(cls, cfg, method):
            return cls(0.01) if method in cls.methods else None

        def select(self, batch):
            return [i for i, b in enumerate(batch) if b.kind == "benign_text"]

        def per_item(self, step, idx):
            return step.token_ce().new_tensor([float(len(step.items[i].target)) for i in idx])

    yield Brevity
    del TERMS["brevity"]


def test_the_config_turns_on_the_terms_it_names():
    assert [t.name for t in build_terms(AlignConfig(), "sft")] == ["ce"]
    assert [t.name for t in build_terms(AlignConfig(), "dpo")] == ["dpo"]
    cfg = AlignConfig(retain=0.2, dpo_beta=0.3, experimental=AlignExperimental(consistency=1.5))
    assert [(t.name, t.weight) for t in build_terms(cfg, "sft")] == [("ce", 1.0), ("retain", 0.2), ("consistency", 1.5)]
    assert [(t.name, t.weight) for t in build_terms(cfg, "dpo")] == [("dpo", 0.3)]


def test_an_sft_term_with_dpo_is_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        build_terms(AlignConfig(retain=0.2), "dpo")
    assert "the retain term works with sft only; ignored with method dpo" in caplog.text


def test_a_name_registered_twice_is_an_error():
    class Other(LossTerm):
        name = "retain"

    with pytest.raises(ValueError, match="'retain' is registered twice"):
        register_term(Other)


def test_a_new_term_is_one_class_and_adds_on_the_examples_it_selects(lora, brevity):
    a, peft = lora
    terms = build_terms(AlignConfig(retain=2.0), "sft")
    assert [t.name for t in terms] == ["ce", "retain", "brevity"]
    with torch.no_grad():
        without = item_losses(a, EXAMPLES, terms[:2], peft)
        step = StepLoss(a, peft, terms)(EXAMPLES)  # what the training step computes
    lengths = torch.tensor([0.0] + [float(len(e.item.target)) for e in EXAMPLES[1:]])
    assert torch.allclose(step, without + 0.01 * lengths, atol=1e-5)
    assert float(step[1] - without[1]) == pytest.approx(0.01 * len(EXAMPLES[1].item.target), abs=1e-4)


def test_the_objective_alone_is_the_adapters_loss(lora):
    a, peft = lora
    with torch.no_grad():
        alone = item_losses(a, EXAMPLES, build_terms(AlignConfig(), "sft"), peft)
        assert torch.equal(alone, a.target_loss([e.item for e in EXAMPLES]))
