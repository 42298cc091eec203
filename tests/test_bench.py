"""`sea bench` plumbing on a tiny random model (the real measurements are in docs/results.md)."""
import json

from sea_align.cli import main


def test_bench_synthesize_json(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", "synthesize", "--model", "tiny-random-llava", "--n", "2", "--max-steps", "3",
                 "--out", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["ratio"] > 0 and res["peak_rss_gb"] > 0
    for k in ("ours", "naive"):
        assert {"s_per_embedding", "verified_rate"} <= set(res[k])


def test_bench_evaluate_identical_outputs(tmp_path):
    out = tmp_path / "e.json"
    assert main(["bench", "evaluate", "--model", "tiny-random-llava", "--n", "3", "--batch-size", "3",
                 "--max-new-tokens", "4", "--out", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["identical_outputs"] is True and {"s_per_sample"} <= set(res["ours"])
