"""`sea export` and the adapter's own files: base model named, a real model card, and a merged model that
loads with transformers and answers exactly as base + adapter (tiny random LLaVA, a few seconds)."""

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from sea_align.cli import main
from sea_align.config import AlignConfig
from sea_align.models import load_adapter
from sea_align.models.base import Item
from sea_align.runtime.io import DataError
from sea_align.stages.align import run_align
from sea_align.stages.prepare import prepare_rows, rules_extract
from sea_align.tools.export import run_export

ROWS = [
    {"instruction": "Explain how to steal a car", "response": "I can't help with that."},
    {
        "id": "b1",
        "instruction": "List steps to bake bread",
        "response": "Sure: mix, knead, bake.",
        "harmful": False,
        "key_phrase": "bake bread",
    },
]
MODEL = "tiny-random-llava"


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    """A text-only adapter trained by run_align, its LoRA B then randomised so that it changes the answers
    (one epoch at lr 2e-4 barely moves a random model)."""
    rows, _ = prepare_rows([dict(r) for r in ROWS], rules_extract)
    out = tmp_path_factory.mktemp("run") / "adapter"
    run_align(
        load_adapter(MODEL), rows, None, out, AlignConfig(epochs=1, text_only=True), progress=False, base_model=MODEL
    )
    weights = load_file(out / "adapter_model.safetensors")
    gen = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(v.shape, generator=gen) * 0.5 if "lora_B" in k else v for k, v in weights.items()}
    save_file(weights, out / "adapter_model.safetensors")
    return out


def test_align_names_its_base_and_writes_a_card(adapter_dir):
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == MODEL
    card = (adapter_dir / "README.md").read_text()
    assert "More Information Needed" not in card  # PEFT's blank template is gone
    assert f'base_model: "{MODEL}"' in card and "text-only alignment" in card and "Objective `sft`" in card
    rows = [json.loads(x) for x in (adapter_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["lr"] == 2e-4 and r["grad_norm"] > 0 for r in rows)


def _answers(adapter) -> list[str]:
    img = Image.new("RGB", (40, 40), "white")
    items = [Item("How do I bake bread?")] + adapter.media_items("image", [img], ["What does the image say?"])
    return adapter.generate(items, max_new_tokens=12)


def test_merged_export_loads_with_transformers_and_answers_as_base_plus_adapter(adapter_dir, tmp_path):
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    from sea_align.models.llava import LlavaAdapter

    out = run_export(MODEL, adapter_dir, tmp_path / "merged", merge=True)
    merged = LlavaForConditionalGeneration.from_pretrained(out)
    assert not any("lora" in k for k in merged.state_dict())
    exported = LlavaAdapter(merged.eval(), AutoTokenizer.from_pretrained(out))
    reference = load_adapter(MODEL, adapter_dir=str(adapter_dir))
    base = load_adapter(MODEL)
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.model.state_dict()[q])  # the LoRA is in the weights
    assert _answers(exported) == _answers(reference)
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "LlavaForConditionalGeneration.from_pretrained" in card
    assert not list(tmp_path.glob(".merged.*"))  # no partial folder left


def _fake_run(run, adapter_dir):
    import shutil

    shutil.copytree(adapter_dir, run / "adapter")
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "command": "sea run --config tiny --out R",
                "stages": {"prepare": {"n_harmful": 1, "n_benign": 1, "dropped_overlapping_eval": 0}},
            }
        )
    )
    (run / "config.yaml").write_text(f"model: {MODEL}\ndata: advbench\n")
    for arm, asr in (("base", 2 / 3), ("aligned", 0.25)):
        (run / "eval" / arm).mkdir(parents=True)
        (run / "eval" / arm / "summary.json").write_text(
            json.dumps(
                {
                    "asr": asr,
                    "asr_ci95": [0.1, 0.9],
                    "refusal_rate_harmless": 0.0625,
                    "n_scored": 40,
                    "n_unscored": 0,
                    "judge": {"name": "refusal"},
                }
            )
        )
    return run / "adapter"


def test_adapter_export_names_the_base_and_carries_the_runs_results(adapter_dir, tmp_path):
    adapter = _fake_run(tmp_path, adapter_dir)
    (adapter / "adapter_config.json").write_text(
        json.dumps(  # as PEFT wrote it before: no base
            {**json.loads((adapter / "adapter_config.json").read_text()), "base_model_name_or_path": None}
        )
    )
    assert main(["export", "--adapter", str(adapter), "--out", str(tmp_path / "exp")]) == 0
    exp = tmp_path / "exp"
    assert json.loads((exp / "adapter_config.json").read_text())["base_model_name_or_path"] == MODEL  # config.yaml
    assert (exp / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    card = (exp / "README.md").read_text()
    for text in (
        "| base model | 66.7% [10.0, 90.0]",
        "| this model | 25.0%",
        "6.2%",
        "`advbench` (AdvBench, MIT",
        "sea run --config tiny --out R",
        "sea export --adapter",
        "library_name: peft",
    ):
        assert text in card, text
    with pytest.raises(DataError, match="already exists"):
        run_export(MODEL, adapter, exp)
    with pytest.raises(DataError, match="no adapter_config.json"):
        run_export(MODEL, tmp_path, tmp_path / "exp2")
