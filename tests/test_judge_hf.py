"""`hf-classifier` plumbing on tiny random models built here from config, with a tokenizer built here
(no hub access). Forced outputs (zeroed heads) check that labels map to verdicts the right way round."""

import json

import pytest
import torch

from sea_align.judges import get_judge
from sea_align.runtime.io import DataError

WORDS = [
    "unsafe",
    "[PAD]",
    "[UNK]",
    "[EOS]",
    "safe",
    "yes",
    "no",
    "step",
    "sorry",
    "i",
    "can't",
    "help",
    "request",
    "answer",
    "bread",
    "bake",
    "the",
    "a",
    "to",
    "of",
    "is",
    ":",
    ".",
]


def tokenizer(path, words=WORDS):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    fast.save_pretrained(path)


def tiny_llama(path, kind, id2label=None, silence=False):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=1,
        eos_token_id=3,
        bos_token_id=3,
    )
    if kind == "cls":
        cfg.num_labels = 2
        cfg.id2label = id2label or {0: "LABEL_0", 1: "LABEL_1"}
        cfg.label2id = {v: k for k, v in cfg.id2label.items()}
        model = LlamaForSequenceClassification(cfg)
    else:
        model = LlamaForCausalLM(cfg)
    if silence:  # final norm 0 -> hidden 0 -> all logits equal -> argmax is id 0 ("unsafe" / first label)
        with torch.no_grad():
            model.model.norm.weight.zero_()
    model.save_pretrained(path)
    tokenizer(path)
    return str(path)


SAMPLES = [
    {"id": "0", "harmful": True, "prompt": "bake a bread", "response": "step 1 : bake ."},
    {"id": "1", "harmful": True, "prompt": "the request", "response": "i can't help ."},
    {"id": "2", "harmful": False, "prompt": "bake bread", "response": "sorry , i can't help ."},
    {"id": "3", "harmful": False, "prompt": "bake bread", "response": "step 1 : bake ."},
]


def test_seq_classifier_label_mapping(tmp_path):
    safe0 = tiny_llama(tmp_path / "c1", "cls", {0: "safe", 1: "unsafe"}, silence=True)
    unsafe0 = tiny_llama(tmp_path / "c2", "cls", {0: "unsafe", 1: "safe"}, silence=True)
    v = get_judge("hf-classifier", model=safe0, batch_size=3).judge(SAMPLES)
    assert [x.unsafe for x in v[:2]] == [False, False] and v[0].raw.startswith("label=safe")
    v = get_judge("hf-classifier", model=unsafe0).judge(SAMPLES)
    assert [x.unsafe for x in v[:2]] == [True, True]
    # harmless items: over-refusal by refusal phrases, said so in raw
    assert [x.refused for x in v[2:]] == [True, False] and v[2].raw.startswith("refusal phrases")
    assert all(x.unsafe is None for x in v[2:])


def test_seq_classifier_random_weights_give_a_verdict_per_item(tmp_path):
    path = tiny_llama(tmp_path / "c", "cls")
    j = get_judge("hf-classifier", model=path)
    assert j.config["kind"] == "seq-cls"
    v = j.judge(SAMPLES)
    assert len(v) == 4 and all(x.unsafe in (True, False) for x in v[:2])
    assert all(x.raw.split()[0] in ("label=label_0", "label=label_1") for x in v[:2])


def test_causal_classifier_parses_generated_verdict(tmp_path, monkeypatch):
    forced = tiny_llama(tmp_path / "g1", "causal", silence=True)
    monkeypatch.setenv("SEA_JUDGE_MODEL_PATH", str(tmp_path / "elsewhere"))  # the environment is not read
    j = get_judge("hf-classifier", model=forced, max_new_tokens=2)
    assert j.config["kind"] == "causal"
    v = j.judge(SAMPLES)
    assert [x.unsafe for x in v[:2]] == [True, True] and v[0].raw.startswith("unsafe")
    # the same forced model whose id 0 reads "bread": no verdict word comes out -> unscored, never safe
    odd = tiny_llama(tmp_path / "g2", "causal", silence=True)
    tokenizer(odd, ["bread"] + WORDS[1:14] + ["unsafe"] + WORDS[15:])
    v = get_judge("hf-classifier", model=odd, max_new_tokens=2).judge(SAMPLES[:2])
    assert [x.unsafe for x in v] == [None, None]
    assert all(x.raw.startswith("unscored: unparsable classifier output 'bread") for x in v)


def test_missing_model_path_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SEA_JUDGE_MODEL_PATH", str(tmp_path))  # not a setting: judge_arg is
    with pytest.raises(DataError, match="--judge-arg model=PATH"):
        get_judge("hf-classifier")
    with pytest.raises(DataError, match="not a local model directory"):
        get_judge("hf-classifier", model=str(tmp_path / "nope"))


def test_sea_judge_cli_with_hf_classifier(tmp_path):
    from sea_align.cli import main

    path = tiny_llama(tmp_path / "c", "cls", {0: "unsafe", 1: "safe"}, silence=True)
    ev = tmp_path / "eval"
    ev.mkdir()
    rows = [
        {
            **s,
            "bench": "b",
            "category": "x",
            "attack": "TYPO",
            "media": [],
            "refused": True,
            "unsafe": False,
            "judge": "refusal",
            "judge_raw": "",
        }
        for s in SAMPLES
    ]
    (ev / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["judge", str(ev), "--judge", "hf-classifier", "--judge-model", path, "--quiet"]) == 0
    s = json.loads((ev / "summary.hf-classifier.json").read_text())
    assert s["asr"] == 1.0 and s["n_unscored"] == 0 and s["refusal_rate_harmless"] == 0.5
    assert s["judge"]["name"] == "hf-classifier" and s["judge"]["path"] == path
