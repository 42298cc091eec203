"""`sea run --plan`: the counts it prints are the ones the run makes, it loads no model, and a model whose
weights cannot fit stops `sea run` before loading."""

import json
import subprocess
import sys

import pytest

from conftest import FIXTURES
from sea_align import plan
from sea_align.benchmarks.build import build, count_items
from sea_align.config_load import load_config
from sea_align.runtime import modelsize
from sea_align.runtime.io import DataError

ENV_OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.mark.parametrize(
    "name,kw",
    [
        ("benign-typo", {"limit": 2}),
        ("borderline-text", {}),
        ("benign-audio", {"limit": 1, "types": ["KPT", "Text_only"]}),
    ],
)
def test_counted_items_are_the_built_ones(tmp_path, name, kw):
    n = count_items(name, **kw)
    built = build(name, tmp_path / "b", **kw)
    assert n == len(built.read_text().splitlines()) > 0


def test_va_safetybench_counts_every_form():
    va = str(FIXTURES / "va-safetybench")
    one = count_items("va-safetybench-audio", va, types=["KPT"])
    assert count_items("va-safetybench-audio", va) == 4 * one > 0


def test_plan_of_the_tiny_run_matches_what_it_makes(tmp_path):
    from sea_align.pipeline import run_pipeline

    cfg = load_config("tiny", ["align_text_baseline=false"])
    p = plan.make_plan(cfg)
    man = run_pipeline(cfg, tmp_path / "run", progress=False)
    st = man["stages"]
    h, _, b, _ = p.work["rows"]
    assert (h, b) == (st["prepare"]["n_harmful"], st["prepare"]["n_benign"])
    assert p.work["embeddings"] == st["synthesize"]["n"]
    summary = json.loads((tmp_path / "run" / "eval" / "base" / "summary.json").read_text())
    assert p.work["items"] == 2 * summary["n"]
    train = json.loads((tmp_path / "run" / "adapter" / "train_summary.json").read_text())
    assert abs(p.work["align_steps"] - train["steps"]) <= max(1, train["steps"] // 5)  # an estimate


def test_plan_cli_prints_and_loads_nothing(tmp_path):
    import os

    out = tmp_path / "run"
    argv = ["run", "--plan", "--config", "default", "--out", str(out), "model=sea-qwen-vl"]
    env = {**os.environ, **ENV_OFFLINE}
    r = subprocess.run(
        [sys.executable, "-m", "sea_align.cli", *argv], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1.79B parameters" in r.stdout and "evaluate:" in r.stdout and "time:" in r.stdout
    assert "prepare:    24 of" in r.stdout
    assert not out.exists()
    assert "Loading weights" not in r.stderr


def test_weights_that_cannot_fit_stop_the_run_before_loading(tmp_path, monkeypatch):
    from sea_align.pipeline import run_pipeline

    monkeypatch.setattr(plan, "param_count", lambda model: (7_000_000_000, "test"))
    monkeypatch.setattr(plan, "device_memory", lambda device: (8 * plan.GiB, "RAM"))
    with pytest.raises(DataError, match=r"weights take 26\.1 GiB in float32, more than the RAM's 8\.0 GiB") as e:
        run_pipeline(load_config("tiny"), tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()
    p = plan.make_plan(load_config("tiny"))
    assert "(does not fit)" in plan.render(p)


def test_safetensors_params_reads_headers(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(tmp_path / "model-1.safetensors"))
    save_file({"c": torch.zeros(2, 2, 2)}, str(tmp_path / "model-2.safetensors"))
    assert modelsize.safetensors_params(tmp_path) == 12 + 5 + 8
    assert modelsize.param_count(str(tmp_path)) == (25, "its safetensors files")


def test_rates_scale_by_size_and_say_so(monkeypatch):
    monkeypatch.setattr(plan, "_device_class", lambda device: "cpu")
    same, how = plan.stage_rates("sea-qwen-vl", None, "image", "cpu")
    assert "measured for sea-qwen-vl" in how
    r, how = plan.stage_rates("/models/x", 3_571_188_162, "image", "cpu")  # twice sea-qwen-vl
    assert r["s_per_align_step"] == pytest.approx(2 * same["s_per_align_step"])
    assert "scaled by size from sea-qwen-vl" in how
    monkeypatch.setattr(plan, "_device_class", lambda device: "cuda")
    assert plan.stage_rates("sea-qwen-vl", None, "image", "cuda:0") == (None, "no rate measured on cuda yet")


def test_own_model_preset_plans_every_row_with_the_model_as_teacher(tmp_path, monkeypatch):
    from sea_align.pipeline import teacher_of

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "va-safetybench").symlink_to(FIXTURES / "va-safetybench")  # made-up rows, any machine
    monkeypatch.setenv("SEA_SHARED", str(tmp_path))
    cfg = load_config("own-image", ["model=tiny-random-llava", f"data={FIXTURES / 'own_safety.jsonl'}"])
    p = plan.make_plan(cfg)
    assert p.work["rows"] == (40, 40, 10, 10) and p.work["distill"] == 10 and p.work["embeddings"] == 50
    assert teacher_of(cfg) == "tiny-random-llava"
    assert "prepare:    40 of 40 harmful rows, 10 of 10 benign rows" in plan.render(p)


def test_stop_on_content_uses_its_own_rate_only_where_measured(monkeypatch):
    monkeypatch.setattr(plan, "_device_class", lambda device: "cpu")
    no_bench = "evaluate.build=[]"  # the time of synthesis needs no benchmark (and this machine may lack the data)
    full = plan.make_plan(load_config("qwen-image", [no_bench]))
    fast = plan.make_plan(load_config("qwen-image", [no_bench, "synthesize.experimental.stop_on=content"]))
    n = fast.work["embeddings"]
    assert n == full.work["embeddings"] > 0
    row = next(r for r in modelsize.rates()["rates"] if r["model"] == "sea-qwen-vl")
    assert fast.seconds["synthesize"] == pytest.approx(n * row["s_per_embedding_stop_content"])
    assert full.seconds["synthesize"] == pytest.approx(n * row["s_per_embedding"])
    assert "stop_on=content, its measured rate" in plan.render(fast)
    # a model without its own stop_on=content rate keeps the full-budget rate and says it is an upper bound
    monkeypatch.setattr(plan, "param_count", lambda model: (2 * row["params"], "test"))
    other = plan.make_plan(
        load_config("qwen-image", [no_bench, "model=/models/x", "synthesize.experimental.stop_on=content"])
    )
    assert other.seconds["synthesize"] == pytest.approx(n * 2 * row["s_per_embedding"])
    assert "an upper bound" in plan.render(other)
