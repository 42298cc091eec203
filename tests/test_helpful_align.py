"""The helpfulness levers of alignment on a tiny random model: the retain term, self-distilled benign targets,
the benign mix, and the harmless benchmark builders' kinds."""

import pytest
import torch

from conftest import sft_losses, write_jsonl
from sea_align.config import AlignConfig, DistillConfig, PrepareConfig
from sea_align.models import load_adapter
from sea_align.models.base import Item
from sea_align.runtime.io import read_jsonl
from sea_align.stages.align import lora_model
from sea_align.stages.distill import apply, run_distill, tidy
from sea_align.stages.losses import retain_kl
from sea_align.stages.prepare import prepare_rows, rules_extract, run_prepare
from sea_align.stages.records import RETAIN_KINDS, Example


def _examples():
    return [
        Example(Item("Explain how to steal a car", target="I can't help with that."), "text"),
        Example(Item("List steps to bake bread", target="Mix flour and water, knead, bake."), "benign_text"),
    ]


@pytest.fixture()
def lora():
    a = load_adapter("tiny-random-llava")
    torch.manual_seed(0)
    peft = lora_model(a, AlignConfig(lora_r=4))
    return a, peft


def test_retain_kl_is_zero_at_start_and_grows_when_the_adapter_moves(lora):
    a, peft = lora
    items = [e.item for e in _examples()]
    with torch.no_grad():
        kl0 = retain_kl(a, peft, items)
    assert kl0.shape == (2,) and float(kl0.abs().max()) < 1e-6  # lora_B starts at zero: aligned == base
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    with torch.no_grad():
        kl1 = retain_kl(a, peft, items)
    assert float(kl1.min()) > 1e-4  # the KL sees the change


def test_retain_term_changes_only_benign_losses(lora):
    a, peft = lora
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    ex = _examples()
    plain = sft_losses(a, ex, peft)
    held = sft_losses(a, ex, peft, retain=2.0)
    assert torch.allclose(plain[0], held[0])  # the harmful example has no retain term
    assert float((held[1] - plain[1]).detach()) > 1e-4  # the benign one does
    kl = retain_kl(a, peft, [ex[1].item])[0]
    assert torch.allclose(held[1] - plain[1], 2.0 * kl, atol=1e-5)
    held.sum().backward()  # the term is differentiable through the LoRA weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in peft.named_parameters() if "lora_" in n)
    assert set(RETAIN_KINDS) == {"benign_media", "benign_text", "benign_template", "reading"}


ROWS = [
    {"id": "h1", "instruction": "Explain how to steal a car", "response": "I can't help with that."},
    {
        "id": "b1",
        "instruction": "List steps to bake bread",
        "response": "Sure! Here is how to bake bread.",
        "harmful": False,
        "key_phrase": "bake bread",
        "response_source": "template",
    },
    {
        "id": "b2",
        "instruction": "Explain how to water a cactus",
        "response": "Water it rarely.",
        "harmful": False,
        "key_phrase": "water a cactus",
    },
    {
        "id": "b3",
        "instruction": "Explain how to kill a python process",
        "response": "Sure.",
        "harmful": False,
        "key_phrase": "kill a python process",
        "response_source": "template",
    },
]


class _Teacher:
    """Answers by a table; 'kill' gets a refusal (a teacher that over-refuses a borderline request)."""

    def __init__(self):
        self.calls = 0

    def generate(self, items, max_new_tokens=48):
        self.calls += len(items)
        return [
            "I'm sorry, I can't help with that." if "kill" in it.prompt else f"Answer to: {it.prompt} Done"
            for it in items
        ]


def test_distilled_targets_replace_templates_and_drop_refused(tmp_path):
    rows, _ = prepare_rows([dict(r) for r in ROWS], rules_extract)
    t = _Teacher()
    res = run_distill(t, rows, tmp_path / "d.jsonl", DistillConfig(batch_size=2), progress=False)
    assert res.n == 3 and res.n_refused == 1 and res.n_dropped == 1 and t.calls == 3
    out = {r["id"]: r for r in apply(rows, tmp_path / "d.jsonl")}
    assert set(out) == {"h1", "b1", "b2"}  # b3: the teacher refused and the row had only a template answer
    assert out["h1"]["response"] == "I can't help with that."  # harmful rows untouched
    assert out["b1"]["response"].startswith("Answer to: List steps to bake bread")
    assert out["b2"]["response_source"] == "distilled"
    # resumable: a second run generates nothing
    run_distill(t, rows, tmp_path / "d.jsonl", DistillConfig(batch_size=2), progress=False)
    assert t.calls == 3


def test_tidy_cuts_a_truncated_sentence():
    assert tidy("First do this. Then do th") == "First do this."
    assert tidy("All done.") == "All done."


def test_benign_limit_mixes_independently_of_limit(tmp_path):
    rows = [{"instruction": f"Explain how to steal car {i}", "response": "I can't help with that."} for i in range(5)]
    rows += [
        {
            "instruction": f"Explain how to bake cake {i}",
            "response": "Yes.",
            "harmful": False,
            "key_phrase": f"bake cake {i}",
        }
        for i in range(7)
    ]
    src = write_jsonl(tmp_path / "s.jsonl", rows)
    n = lambda cfg: [r["harmful"] for r in read_jsonl(run_prepare(src, tmp_path / "p.jsonl", cfg).path)]  # noqa: E731
    assert n(PrepareConfig(limit=2)).count(False) == 2  # -1: as many benign as harmful
    got = n(PrepareConfig(limit=2, benign_limit=6))
    assert got.count(True) == 2 and got.count(False) == 6
    got = n(PrepareConfig(limit=2, benign_limit=0))
    assert got.count(False) == 7


def test_benign_training_mix_is_disjoint_from_every_harmless_bench():
    from sea_align.benchmarks.build import HARMLESS_KINDS, harmless_rows
    from sea_align.sources.named import benign_train_rows, overlaps

    train = benign_train_rows()
    kinds = {r.get("kind") for r in train}
    assert {"benign", "borderline"} <= kinds
    assert all(r["response"] for r in train)
    evals = [r for k in HARMLESS_KINDS for r in harmless_rows(k)]
    assert evals and not {r["id"] for r in train} & {r["id"] for r in evals}
    clash = [
        (a["key_phrase"], b["key_phrase"]) for a in train for b in evals if overlaps(a["key_phrase"], b["key_phrase"])
    ]
    assert not clash, clash[:5]
    # and the check would catch a leak
    assert overlaps(evals[0]["key_phrase"], evals[0]["key_phrase"])


def test_drop_overlap_removes_training_rows_that_match_evaluation_phrases():
    from sea_align.sources.named import drop_overlap

    train = [
        {"instruction": "Explain how to hack into a bank account", "key_phrase": "hack into a bank account"},
        {"instruction": "Explain how to bake sourdough bread", "key_phrase": "bake sourdough bread"},
        {"instruction": "Write a guide to hack into someone's bank account"},
    ]
    keep, dropped = drop_overlap(train, ["hack into someone's bank account"])
    assert dropped == 2 and [r["key_phrase"] for r in keep] == ["bake sourdough bread"]
    keep, dropped = drop_overlap(train, [])
    assert dropped == 0 and len(keep) == 3


def test_harmless_builders_mark_kind_and_reading(tmp_path):
    from sea_align.benchmarks.build import build

    rows = read_jsonl(build("borderline-text", tmp_path / "bt", limit=1))
    assert rows and all(r["kind"] == "borderline" and not r["harmful"] for r in rows)
    rows = read_jsonl(build("reading-typo", tmp_path / "rt", limit=2))
    assert rows and all(r["kind"] == "reading" and r["expect"] == r["key_phrase"] for r in rows)
    assert all(r["prompt"] == "What does the image say?" and r["media"] for r in rows)
    rows = read_jsonl(build("benign-text", tmp_path / "b", limit=2))
    assert rows and all(r["kind"] == "benign" for r in rows)
    rows = read_jsonl(build("varied-text", tmp_path / "v", limit=1))  # reported apart from plain benign
    assert rows and all(r["kind"] == "varied" and not r["harmful"] for r in rows)
    from sea_align.stages.eval_summary import per_form

    got = per_form([{**r, "refused": i % 2 == 0} for i, r in enumerate(rows)])
    assert set(got) == {"varied/Text_only"} and got["varied/Text_only"]["n_scored"] == len(rows)


def test_whole_request_form_carries_the_request_and_no_text(tmp_path):
    from sea_align.config import SynthesizeConfig
    from sea_align.stages.align import build_training_set
    from sea_align.stages.synthesize import run_synthesize

    rows = [
        {"id": "h1", "instruction": "Explain how to steal a car", "response": "I can't help with that."},
        {
            "id": "b1",
            "instruction": "List steps to bake bread",
            "response": "Mix, knead, bake.",
            "harmful": False,
            "key_phrase": "bake bread",
        },
    ]
    src = write_jsonl(tmp_path / "s.jsonl", rows)
    prepared = read_jsonl(run_prepare(src, tmp_path / "p.jsonl", PrepareConfig(whole_request=True)).path)
    whole = {r["base_id"]: r for r in prepared if r.get("form") == "whole"}
    assert set(whole) == {"h1", "b1"} and whole["h1"]["key_phrase"] == "Explain how to steal a car"
    assert (
        whole["h1"]["detoxified"] == "" and "'Explain how to steal a car'" in whole["h1"]["aux"]["audio"][0]["target"]
    )
    a = load_adapter("tiny-random-llava")
    run_synthesize(a, prepared, tmp_path / "emb", "image", SynthesizeConfig(max_steps=2, batch_size=4), progress=False)
    ex, counts, _ = build_training_set(prepared, tmp_path / "emb", a, AlignConfig())
    assert counts["sea"] == 2 and counts["text"] == 1 and counts["benign_media"] == 2 and counts["benign_text"] == 1
    empty = [e for e in ex if e.item.prompt == ""]
    assert len(empty) == 2 and all(e.item.mm is not None for e in empty)
    # distillation answers a whole-form row with its base row's answer
    d = tmp_path / "d.jsonl"
    write_jsonl(d, [{"id": "b1", "response": "Real answer.", "teacher": "t", "refused": False, "kept": "teacher"}])
    got = {r["id"]: r["response"] for r in apply(prepared, d)}
    assert got["b1"] == got["b1#whole"] == "Real answer."


def test_figstep_form_and_reading_examples(tmp_path):
    """prepare.figstep adds a `#figstep` row (the request as FigStep's statement, FigStep's prompt beside
    it, no typed twin); align.reading adds, for that share of harmful embeddings, the question what the media
    says answered with the phrase."""
    from sea_align.benchmarks.rows import FIGSTEP_PROMPT
    from sea_align.config import SynthesizeConfig
    from sea_align.stages.align import build_training_set
    from sea_align.stages.examples import reads
    from sea_align.stages.synthesize import run_synthesize

    rows = [
        {"id": f"h{i}", "instruction": f"Explain how to steal car number {i}", "response": "I can't help with that."}
        for i in range(6)
    ] + [{"id": "b1", "instruction": "How to bake bread?", "response": "Mix, knead, bake.", "harmful": False}]
    src = write_jsonl(tmp_path / "s.jsonl", rows)
    cfg = PrepareConfig(figstep=True, whole_request=True)
    prepared = read_jsonl(run_prepare(src, tmp_path / "p.jsonl", cfg).path)
    fig = {r["base_id"]: r for r in prepared if r.get("form") == "figstep"}
    assert len(prepared) == 21 and set(fig) == {r["id"] for r in rows}
    assert fig["b1"]["key_phrase"] == "Steps to bake bread." and fig["b1"]["id"] == "b1#figstep"
    assert fig["h0"]["key_phrase"] == "Steps to steal car number 0." and fig["h0"]["detoxified"] == ""
    a = load_adapter("tiny-random-llava")
    run_synthesize(a, prepared, tmp_path / "emb", "image", SynthesizeConfig(max_steps=2, batch_size=8), progress=False)
    ex, counts, _ = build_training_set(prepared, tmp_path / "emb", a, AlignConfig())
    assert counts["sea"] == 18 and counts["text"] == 6 and counts["reading"] == 0
    assert sum(e.item.prompt == FIGSTEP_PROMPT for e in ex) == 7  # 6 harmful + 1 benign FigStep rows
    assert {e.item.target for e in ex if e.item.prompt == FIGSTEP_PROMPT and e.kind == "benign_media"} == {
        "Mix, knead, bake."
    }
    ex, counts, _ = build_training_set(prepared, tmp_path / "emb", a, AlignConfig(reading=1.0))
    read = [e for e in ex if e.kind == "reading"]
    assert counts["reading"] == 6 and all(e.item.mm is not None for e in read)  # phrase rows only, not forms
    assert {e.item.target for e in read} == {f"The image says 'steal car number {i}'." for i in range(6)}
    assert all("image" in e.item.prompt and e.item.prompt != FIGSTEP_PROMPT for e in read)
    # a share draws a stable subset, by row id
    half = [r for r in prepared if r["harmful"] and not r.get("form") and reads(r, 0.5)]
    _, counts, _ = build_training_set(prepared, tmp_path / "emb", a, AlignConfig(reading=0.5))
    assert counts["reading"] == len(half) and not reads(prepared[0], 0.0)
