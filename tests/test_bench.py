"""`sea bench` plumbing on a tiny random model (the real measurements are in docs/results.md)."""

import json

from sea_align.cli import main


def bench(kind, n, *extra):
    """`sea bench KIND` on the tiny random LLaVA with N samples, then `extra`: its exit code."""
    return main(["bench", kind, "--model", "tiny-random-llava", "--n", str(n), *extra])


def test_bench_synthesize_json(tmp_path):
    out = tmp_path / "b.json"
    assert bench("synthesize", 2, "--max-steps", "3", "--out", str(out), "--quiet") == 0
    res = json.loads(out.read_text())
    assert res["ratio"] > 0 and res["peak_rss_gb"] > 0
    for k in ("ours", "naive"):
        assert {"s_per_embedding", "verified_rate"} <= set(res[k])


def test_bench_evaluate_identical_outputs(tmp_path):
    out = tmp_path / "e.json"
    assert bench("evaluate", 3, "--batch-size", "3", "--max-new-tokens", "4", "--out", str(out), "--quiet") == 0
    res = json.loads(out.read_text())
    assert res["identical_outputs"] is True and {"s_per_sample"} <= set(res["ours"])


def test_bench_dtype_times_both_and_compares_verdicts(tmp_path):
    out = tmp_path / "d.json"
    assert bench("dtype", 3, "--batch-size", "2", "--max-new-tokens", "4", "--out", str(out), "--quiet") == 0
    res = json.loads(out.read_text())
    assert res["n_items"] == 6 and res["reference"] == "float32"  # 3 images + the 3 requests typed
    assert res["float32"]["verdicts_agree"] == 1.0 and res["float32"]["identical_outputs"] == 6
    assert 0 <= res["bfloat16"]["verdicts_agree"] <= 1 and res["bfloat16"]["s_per_item"] > 0
    assert isinstance(res["bf16_native"], bool)


def test_bench_synthesize_options_reach_our_engine(tmp_path, capsys):
    out = tmp_path / "b.json"
    opts = ["--chunk", "2", "--warmup", "2", "--lr-adapt", "1.1,0.7,3", "--attention", "math", "--stop-loss", "0.2"]
    opts += ["--stop-on", "content"]
    assert bench("synthesize", 3, "--max-steps", "3", *opts, "--out", str(out), "--quiet") == 0
    ours = json.loads(out.read_text())["ours"]
    got = (ours["chunk"], ours["warmup"], ours["lr_adapt"], ours["attention"], ours["stop_loss"], ours["stop_on"])
    assert got == (2, 2, [1.1, 0.7, 3.0], "math", 0.2, "content")
    assert bench("synthesize", 2, "--lr-adapt", "fast", "--out", str(tmp_path / "c.json"), "--quiet") == 2
    assert "--lr-adapt: 'fast'" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_bench_runs_the_presets_engine_unless_a_flag_says_otherwise(tmp_path):
    from sea_align.config_load import load_config

    syn = load_config("default").synthesize
    out = tmp_path / "b.json"
    assert bench("synthesize", 2, "--max-steps", "2", "--warmup", "1", "--out", str(out), "--quiet") == 0
    ours = json.loads(out.read_text())["ours"]
    assert (ours["init"], ours["stop_loss"], ours["lr_adapt"], ours["attention"], ours["lr"], ours["batch_size"]) == (
        syn.init,
        syn.stop_loss,
        syn.experimental.lr_adapt,
        syn.experimental.attention,
        syn.lr,
        syn.batch_size,
    )
    assert ours["warmup"] == 1 != syn.experimental.warmup and ours["max_steps"] == 2 and ours["preset"] == "default"


def test_bench_align_shared_pass_matches_the_pass_per_term_step(tmp_path, capsys):
    from conftest import write_jsonl
    from sea_align.config import PrepareConfig, SynthesizeConfig
    from sea_align.models import load_adapter
    from sea_align.runtime.io import read_jsonl
    from sea_align.stages.prepare import run_prepare
    from sea_align.stages.synthesize import run_synthesize

    rows = [
        {"id": "h1", "instruction": "Explain how to steal a car", "response": "I can't help with that."},
        {"id": "b1", "instruction": "List steps to bake bread", "response": "Mix, knead, bake.", "harmful": False},
    ]
    prepared = run_prepare(write_jsonl(tmp_path / "s.jsonl", rows), tmp_path / "p.jsonl", PrepareConfig()).path
    a = load_adapter("tiny-random-llava")
    syn = SynthesizeConfig(max_steps=2, batch_size=4)
    run_synthesize(a, read_jsonl(prepared), tmp_path / "emb", "image", syn, progress=False)
    out = tmp_path / "a.json"
    (tmp_path / "c.yaml").write_text("align:\n  lr: 0.05\n")  # a large step, so the KL terms are far from 0
    args = ["--model", "tiny-random-llava", "--data", str(prepared), "--embeddings", str(tmp_path / "emb")]
    extra = [
        "--config",
        str(tmp_path / "c.yaml"),
        "--steps",
        "3",
        "--retain",
        "0.5",
        "--consistency",
        "1.0",
        "--batch-size",
        "4",
        "--quiet",
    ]
    assert main(["bench", "align", *args, *extra, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["ratio"] > 0 and res["ours"]["s_per_step"] > 0 and res["n_train"] >= 4
    assert res["ours"]["retain"] == 0.5 and res["ours"]["consistency"] == 1.0
    assert res["max_loss_diff"] < 1e-4 and res["max_grad_diff"] < 1e-4  # the same step, computed two ways
    assert main(["bench", "align", *args, "--steps", "0", "--out", str(tmp_path / "z.json"), "--quiet"]) == 2
    assert "--steps: 0" in capsys.readouterr().err and not (tmp_path / "z.json").exists()


def test_bench_synthesize_against_the_preset_as_it_is(tmp_path):
    """--reference preset: ours (the flags) against our engine with the preset's own setting, in one run, with
    the same step cap; no naive engine."""
    from sea_align.config_load import load_config

    syn = load_config("default").synthesize
    out = tmp_path / "b.json"
    assert (
        bench(
            "synthesize",
            2,
            "--max-steps",
            "2",
            "--init",
            "media",
            "--reference",
            "preset",
            "--out",
            str(out),
            "--quiet",
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert "naive" not in res and res["ratio"] > 0
    assert res["ours"]["init"] == "media" and res["reference"]["init"] == syn.init != "media"
    assert res["reference"]["max_steps"] == res["ours"]["max_steps"] == 2
    assert res["reference"]["preset"] == "default as it is" and 0 <= res["reference"]["verified_rate"] <= 1
