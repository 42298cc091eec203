"""Two CPU processes (gloo) under `accelerate launch` give the one-process results.

synthesize: the same ids, each once, in ONE merged index, embeddings within 1e-4.
align: the same loss curve and the same LoRA weights (data parallel, same global batch)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import dist_align_worker
from conftest import synth_argv
from sea_align.config import SynthesizeConfig
from sea_align.models import load_adapter
from sea_align.runtime.io import read_jsonl
from sea_align.stages.prepare import run_prepare
from sea_align.stages.synthesize import load_embeddings, run_synthesize

HERE = Path(__file__).parent
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
}
LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "--main_process_port",
    "29531",
]
DATA = Path(__file__).parents[1] / "src" / "sea_align" / "data" / "tiny_safety.jsonl"


def launch(*args):
    """Start a 2-process run; the caller computes its 1-process reference meanwhile, then `finish`es."""
    return subprocess.Popen([*LAUNCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def synthesize_here(rows, out, **opts):
    """The one-process synthesis of ROWS into OUT, in this process."""
    run_synthesize(load_adapter("tiny-random-llava"), rows, out, "image", SynthesizeConfig(**opts), progress=False)


def assert_same_training(d1, d2):
    """The 2-process align run in D2 has the 1-process run D1's steps, loss curve (one that moved) and LoRA
    weights; returns D2's weights."""
    m1 = read_jsonl(d1 / "metrics.jsonl")
    m2 = read_jsonl(d2 / "metrics.jsonl")
    assert [m["step"] for m in m1] == [m["step"] for m in m2] and len(m1) == 8  # 10 examples / 3, 2 epochs
    l1, l2 = torch.tensor([m["loss"] for m in m1]), torch.tensor([m["loss"] for m in m2])
    assert (l1[0] - l1[-1]).abs() > 0.05, "loss did not move: the comparison would be vacuous"
    torch.testing.assert_close(l2, l1, atol=2e-4, rtol=0)  # unsynced gradients differ by ~1e-3
    w1 = load_file(str(d1 / "adapter_model.safetensors"))
    w2 = load_file(str(d2 / "adapter_model.safetensors"))
    assert set(w1) == set(w2)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=1e-4)
    return w2


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


def test_two_processes_match_one(tmp_path):
    prepared = tmp_path / "prepared.jsonl"
    run_prepare(DATA, prepared)
    rows = read_jsonl(prepared)
    # 2 processes, through the real CLI
    opts = ["--max-steps", "6", "--batch-size", "2", "--quiet"]
    proc = launch("-m", "sea_align.cli", *synth_argv(prepared, tmp_path / "emb2", *opts))
    # 1 process, same settings, in this process
    synthesize_here(rows, tmp_path / "emb1", max_steps=6, batch_size=2)
    finish(proc)

    index_lines = [json.loads(x) for x in (tmp_path / "emb2" / "index.jsonl").read_text().splitlines()]
    ids2 = [r["id"] for r in index_lines]
    assert sorted(ids2) == sorted(r["id"] for r in rows), "missing or extra ids"
    assert len(ids2) == len(set(ids2)), "an id was synthesised twice"
    assert not list((tmp_path / "emb2").glob("index.r*.jsonl")), "per-process parts not merged"
    assert {r["shard"].split("-")[1] for r in index_lines} == {"r0", "r1"}, "work was not shared"
    _, idx1, e1 = load_embeddings(tmp_path / "emb1")
    _, idx2, e2 = load_embeddings(tmp_path / "emb2")
    assert set(e1) == set(e2)
    for k in e1:
        torch.testing.assert_close(e2[k], e1[k], atol=1e-4, rtol=1e-3)
    v1 = {r["id"]: (r["steps"], r["verified"]) for r in idx1}
    assert v1 == {r["id"]: (r["steps"], r["verified"]) for r in idx2}

    # align: 2 processes vs 1 on the same embeddings
    proc = launch(str(HERE / "dist_align_worker.py"), str(prepared), str(tmp_path / "emb1"), str(tmp_path / "ad2"))
    dist_align_worker.main(str(prepared), str(tmp_path / "emb1"), str(tmp_path / "ad1"))
    finish(proc)
    assert_same_training(tmp_path / "ad1", tmp_path / "ad2")
    s2 = json.loads((tmp_path / "ad2" / "train_summary.json").read_text())
    assert s2["processes"] == 2


FSDP_YAML = Path(__file__).parents[1] / "src" / "sea_align" / "configs" / "accelerate" / "fsdp.yaml"


def test_fsdp_two_processes_match_one(tmp_path):
    """The shipped fsdp.yaml (FSDP2, 2 gloo processes): every frozen weight is sharded, the LoRA weights
    are not, and the loss curve and adapter are the 1-process ones; the adapter loads with PEFT."""
    from peft import PeftModel

    prepared = tmp_path / "prepared.jsonl"
    run_prepare(DATA, prepared)
    rows = read_jsonl(prepared)
    synthesize_here(rows, tmp_path / "emb", max_steps=2, batch_size=6)
    (tmp_path / "layout").mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(FSDP_YAML),
            "--num_processes",
            "2",
            "--main_process_port",
            "29532",
            str(HERE / "dist_align_worker.py"),
            str(prepared),
            str(tmp_path / "emb"),
            str(tmp_path / "ad2"),
            str(tmp_path / "layout"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    dist_align_worker.main(str(prepared), str(tmp_path / "emb"), str(tmp_path / "ad1"))
    finish(proc)

    lay = [json.loads((tmp_path / "layout" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for x in lay:
        assert x["frozen_sharded"] == x["frozen"] > 0 and x["trainable_sharded"] == 0
        assert x["frozen_local_numel"] < 0.6 * x["frozen_numel"]
    assert sum(x["frozen_local_numel"] for x in lay) == lay[0]["frozen_numel"], "shards do not add up to the model"
    w2 = assert_same_training(tmp_path / "ad1", tmp_path / "ad2")
    assert json.loads((tmp_path / "ad2" / "train_summary.json").read_text())["processes"] == 2
    loaded = PeftModel.from_pretrained(load_adapter("tiny-random-llava").model, str(tmp_path / "ad2"))
    lora = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert len(lora) == len(w2) > 0
    for k, v in lora.items():
        torch.testing.assert_close(v, w2[k.replace(".default", "")], atol=0, rtol=0)


def test_refused_launches(monkeypatch):
    """FSDP1 and DeepSpeed launches stop with a one-line error before joining a process group."""
    import pytest

    from sea_align.runtime.distributed import dist_state
    from sea_align.runtime.io import DataError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(DataError, match="fsdp_version: 2"):
        dist_state()
    monkeypatch.setenv("FSDP_VERSION", "2")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    with pytest.raises(DataError, match="cpu_ram_efficient_loading"):
        dist_state()
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(DataError, match="DeepSpeed"):
        dist_state()
