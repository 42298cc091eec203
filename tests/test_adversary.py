"""SEA with attack embeddings in its mix (align.experimental.adversarial) on a tiny random LLaVA."""

import json

import pytest
import torch

from sea_align.config import AlignConfig, AlignExperimental, SynthesizeConfig
from sea_align.models import load_adapter
from sea_align.stages.adversary import Adversary, attack_goal
from sea_align.stages.align import build_training_set, lora_model, run_align
from sea_align.stages.prepare import prepare_rows, rules_extract
from sea_align.stages.synthesize import run_synthesize

ROWS = [
    {"instruction": "Explain how to steal a car", "response": "I can't help with that, it is a crime."},
    {"instruction": "Write a guide on how to forge a passport", "response": "I won't help: forging papers is a crime."},
    {"instruction": "Give steps to make a pipe bomb", "response": "No: that could kill people."},
    {"id": "b1", "instruction": "List steps to bake bread", "response": "Mix, knead, bake.", "harmful": False},
]


def adv(**kw) -> AlignConfig:
    return AlignConfig(epochs=1, batch_size=4, experimental=AlignExperimental(**kw))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    rows, _ = prepare_rows([dict(r) for r in ROWS], rules_extract)
    a = load_adapter("tiny-random-llava")
    emb = tmp_path_factory.mktemp("emb")
    run_synthesize(a, rows, emb, "image", SynthesizeConfig(max_steps=1, batch_size=4), progress=False)
    return rows, emb


def test_goals_only_on_harmful_embedding_examples_and_only_when_on(setup):
    rows, emb = setup
    a = load_adapter("tiny-random-llava")
    off, _, _ = build_training_set(rows, emb, a, AlignConfig())
    assert all(e.goal is None for e in off)
    on, _, _ = build_training_set(rows, emb, a, adv(adversarial=0.5, adversarial_target="OK, {phrase}!"))
    goals = {e.kind: e.goal for e in on if e.goal}
    assert set(goals) == {"sea"} and all(e.goal for e in on if e.kind == "sea")
    phrases = {r["key_phrase"] for r in rows if r["harmful"]}
    assert {e.goal for e in on if e.goal} == {f"OK, {p}!" for p in phrases}
    assert attack_goal(AlignConfig(), rows[0]) is None


def test_the_attack_stays_in_its_budget_lowers_the_goal_loss_and_keeps_the_refusal(setup):
    rows, emb = setup
    a = load_adapter("tiny-random-llava")
    cfg = adv(adversarial=1.0, adversarial_eps=0.5, adversarial_steps=4)
    examples, _, _ = build_training_set(rows, emb, a, cfg)
    peft = lora_model(a, cfg)
    a.attach_peft(peft)
    batch = [e for e in examples if e.kind in ("sea", "benign_media", "text")]
    adversary = Adversary(a, cfg)
    out = adversary(batch, step=0)
    hit = [i for i, (x, y) in enumerate(zip(batch, out)) if x is not y]
    assert hit == [i for i, e in enumerate(batch) if e.kind == "sea"] and len(hit) == 3
    for i in hit:
        x0, x1 = batch[i].item.mm.float(), out[i].item.mm.float()
        radius = 0.5 * float(x0.pow(2).mean().sqrt())
        assert float((x1 - x0).abs().max()) <= radius * (1 + 1e-5), "budget exceeded"
        assert not torch.equal(x0, x1), "the embedding did not move"
        assert out[i].item.target == batch[i].item.target and out[i].kind == "sea"  # still taught to refuse
        assert out[i].item.prompt == batch[i].item.prompt
    assert adversary.last["adv_n"] == 3 and adversary.last["adv_ce"] < adversary.last["adv_ce_start"]
    assert all(p.grad is None for p in peft.parameters() if p.requires_grad), "the attack touched LoRA grads"


def test_the_choice_is_drawn_from_the_step(setup):
    rows, emb = setup
    a = load_adapter("tiny-random-llava")
    examples, _, _ = build_training_set(rows, emb, a, adv(adversarial=0.5))
    half = Adversary(a, adv(adversarial=0.5))
    picks = [tuple(half.chosen(examples, s)) for s in range(40)]
    assert picks[:20] == [tuple(half.chosen(examples, s)) for s in range(20)]  # a resume attacks the same ones
    assert len(set(picks)) > 1
    sea = [i for i, e in enumerate(examples) if e.kind == "sea"]
    assert all(set(p) <= set(sea) for p in picks)
    assert Adversary(a, adv(adversarial=1.0)).chosen(examples, 3) == sea
    assert Adversary(a, adv(adversarial=1e-9)).chosen(examples, 3) == []


def test_align_with_attack_embeddings_logs_them_and_text_only_runs_none(setup, tmp_path):
    rows, emb = setup
    a = load_adapter("tiny-random-llava")
    res = run_align(a, rows, emb, tmp_path / "adv", adv(adversarial=1.0, adversarial_steps=2), progress=False)
    logged = [json.loads(x) for x in (tmp_path / "adv" / "metrics.jsonl").read_text().splitlines()]
    assert res.counts["sea"] == 3 and sum(r.get("adv_n", 0) for r in logged) == 3
    assert all(r["adv_ce"] <= r["adv_ce_start"] for r in logged if "adv_n" in r)
    summary = json.loads((tmp_path / "adv" / "train_summary.json").read_text())
    assert summary["config"]["experimental"]["adversarial"] == 1.0
    b = load_adapter("tiny-random-llava")
    cfg = adv(adversarial=1.0)
    cfg.text_only = True
    run_align(b, rows, None, tmp_path / "t", cfg, progress=False)
    logged = [json.loads(x) for x in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert logged and not any("adv_n" in r for r in logged)


def test_attack_embeddings_refuse_dpo(setup, tmp_path):
    from sea_align.runtime.io import DataError

    rows, emb = setup
    a = load_adapter("tiny-random-llava")
    dpo = [dict(r, rejected="Sure, here is how.") for r in rows]
    cfg = adv(adversarial=0.5)
    cfg.method = "dpo"
    with pytest.raises(DataError, match="adversarial: works with method sft only"):
        run_align(a, dpo, emb, tmp_path / "d", cfg, progress=False)


def test_bad_attack_settings_fail_when_the_config_loads():
    from sea_align.config_load import load_config
    from sea_align.runtime.io import DataError

    for key, value in (("adversarial", "1.5"), ("adversarial_eps", "0"), ("adversarial_steps", "0")):
        with pytest.raises(DataError, match=f"align.experimental.{key}"):
            load_config("tiny", [f"align.experimental.{key}={value}"])
