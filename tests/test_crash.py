"""kill -9 during synthesize, align and evaluate, then the same command again: it carries on.

The kills are real SIGKILLs (no cleanup runs), delivered by the process to itself at named crash
points (`SEA_CRASH_AT=point:n`, sea_align/faults.py) so that each lands at a known place:
  synthesize: after a finished sample's pending row; inside a shard write (temp file, no rename);
              between a shard's rename and its index row (an orphan shard)
  align:      after a metrics row, before its checkpoint; inside a checkpoint write
  evaluate:   after the first batch's rows (then a torn half-line is appended, as a kill mid-write leaves)
Invariants: no finished embedding lost or recomputed, no corrupt shard or index, every evaluation
response kept, the resumed results equal an uninterrupted run.
The three stages' kill-and-rerun chains run concurrently (each CLI start costs ~8 s of imports here);
each test then checks its chain's outcome against an uninterrupted in-process run."""

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import eval_argv, synth_argv
from sea_align.config import AlignConfig, SynthesizeConfig
from sea_align.models import load_adapter
from sea_align.runtime.io import read_jsonl
from sea_align.stages.align import run_align
from sea_align.stages.prepare import run_prepare
from sea_align.stages.synthesize import load_embeddings, run_synthesize

DATA = Path(__file__).parents[1] / "src" / "sea_align" / "data" / "tiny_safety.jsonl"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "SEA_ALIGN_CKPT_SECONDS": "0", "OMP_NUM_THREADS": "1"}
SYNTH = SynthesizeConfig(max_steps=6, batch_size=2)


def sea(*args, crash=None):
    env = {**ENV, **({"SEA_CRASH_AT": crash} if crash else {})}
    return subprocess.run(
        [sys.executable, "-m", "sea_align.cli", *args, "--quiet"], capture_output=True, text=True, env=env, timeout=600
    )


def killed(r):
    assert r.returncode == -signal.SIGKILL, f"expected SIGKILL, got {r.returncode}: {r.stderr[-2000:]}"


def ok(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _shard_ids(emb):
    """{shard file: sample id} from every shard's own metadata."""
    out = {}
    for f in emb.glob("emb-*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            out[f.name] = json.loads(st.metadata()["row"])["id"]
    return out


def synth_chain(emb, prepared):
    cmd = synth_argv(prepared, emb, "--max-steps", "6", "--batch-size", "2")
    killed(sea(*cmd, crash="synth.finished:2"))  # kill point 1
    first = _lines(emb / "index.jsonl")
    assert len(first) == 2 and all(r["verified"] is None for r in first), "finished samples not durable at once"
    killed(sea(*cmd, crash="synth.shard_tmp:1"))  # kill point 2: temp shard written, never renamed
    assert list(emb.glob(".emb-*.tmp")), "the kill did not land inside the shard write"
    assert len(list(emb.glob("emb-*.safetensors"))) == 2
    killed(sea(*cmd, crash="synth.shard_written:1"))  # kill point 3: shard renamed, its index row not written
    orphans = set(_shard_ids(emb)) - {r["shard"] for r in _lines(emb / "index.jsonl")}
    assert len(orphans) == 1
    r = ok(sea(*cmd))
    assert "(3 already done)" in r.stdout, r.stdout  # 2 pending + 1 orphan, none redone
    return {r["id"]: r["shard"] for r in first}


def align_chain(out, prepared, emb):
    cmd = [
        "align",
        "--model",
        "tiny-random-llava",
        "--data",
        str(prepared),
        "--embeddings",
        str(emb),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--lr",
        "0.01",
        "--method",
        "sft",
    ]
    part = out.with_name(out.name + ".partial")
    killed(sea(*cmd, crash="align.step:3"))  # kill point 4: metrics row 3 written, checkpoint still at step 2
    assert len(_lines(part / "metrics.jsonl")) == 3 and not out.exists()
    killed(sea(*cmd, crash="align.ckpt_tmp:2"))  # kill point 5: inside the step-4 checkpoint write
    assert list(part.glob(".checkpoint.safetensors.*.tmp"))
    ok(sea(*cmd))


def eval_chain(out):
    out.mkdir(parents=True)
    bench = out.parent / "bench.jsonl"
    bench.write_text(
        "".join(
            json.dumps({"id": i, "prompt": f"Tell me about topic {i}.", "harmful": i % 2 == 0, "category": "c"}) + "\n"
            for i in range(6)
        )
    )
    cmd = eval_argv(bench, out, "--batch-size", "2", "--max-new-tokens", "4")
    killed(sea(*cmd, crash="eval.batch:1"))  # kill point 6: after the first batch's rows
    samples = out / "samples.jsonl"
    kept = samples.read_text()
    assert len(kept.splitlines()) == 2
    with open(samples, "a") as f:  # what a kill in the middle of an append leaves behind
        f.write('{"bench": "' + str(bench) + '", "id": "2", "respo')
    ok(sea(*cmd))
    return kept


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "prepared.jsonl"
    run_prepare(DATA, p)
    return p


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prepared):
    """Start the three kill chains, and meanwhile the uninterrupted in-process synthesize reference
    (align's chain trains on it once it exists)."""
    root = tmp_path_factory.mktemp("chains")
    pool = ThreadPoolExecutor(3)
    futs = {"synth": pool.submit(synth_chain, root / "emb", prepared), "eval": pool.submit(eval_chain, root / "ev")}
    run_synthesize(
        load_adapter("tiny-random-llava"), read_jsonl(prepared), root / "ref_emb", "image", SYNTH, progress=False
    )
    futs["align"] = pool.submit(align_chain, root / "adapter", prepared, root / "ref_emb")
    yield root, futs
    pool.shutdown(wait=True)


def test_synthesize_survives_kill9(runs, prepared):
    root, futs = runs
    done_before = futs["synth"].result()
    emb = root / "emb"
    index = _lines(emb / "index.jsonl")
    ids = [x["id"] for x in index]
    rows = read_jsonl(prepared)
    assert sorted(ids) == sorted(x["id"] for x in rows) and len(ids) == len(set(ids)), "ids lost or doubled"
    assert all(isinstance(x["verified"], bool) for x in index), "a pending row was never verified"
    final_shards = {x["id"]: x["shard"] for x in index}
    assert all(final_shards[i] == s for i, s in done_before.items()), "a finished embedding was recomputed"
    on_disk = _shard_ids(emb)
    assert sorted(on_disk.values()) == sorted(ids), "a sample was optimised twice"
    assert not list(emb.glob(".emb-*.tmp")) and not list(emb.glob("index.r*"))
    for f in on_disk:
        load_file(str(emb / f))  # every shard whole
    e_ref, e = load_embeddings(root / "ref_emb")[2], load_embeddings(emb)[2]
    assert set(e) == set(e_ref)
    for k in e_ref:
        torch.testing.assert_close(e[k], e_ref[k], atol=1e-4, rtol=1e-3)


def test_align_survives_kill9(runs, prepared, tmp_path):
    root, futs = runs
    ref = tmp_path / "ref"  # uninterrupted, in-process, while the chains run
    run_align(
        load_adapter("tiny-random-llava"),
        read_jsonl(prepared),
        root / "ref_emb",
        ref,
        AlignConfig(epochs=2, lr=0.01, method="sft"),
        progress=False,
    )
    futs["align"].result()
    out = root / "adapter"
    assert not out.with_name("adapter.partial").exists()
    metrics = _lines(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6], "a step was lost or logged twice"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_at_step"] == 3 and summary["steps"] == 6
    assert not (out / "checkpoint.safetensors").exists()
    l_ref = torch.tensor([m["loss"] for m in _lines(ref / "metrics.jsonl")])
    assert (l_ref[0] - l_ref[-1]).abs() > 0.05, "loss did not move: the comparison would be vacuous"
    torch.testing.assert_close(torch.tensor([m["loss"] for m in metrics]), l_ref, atol=1e-4, rtol=1e-4)
    w, w_ref = load_file(str(out / "adapter_model.safetensors")), load_file(str(ref / "adapter_model.safetensors"))
    assert set(w) == set(w_ref)
    for k in w_ref:
        torch.testing.assert_close(w[k], w_ref[k], atol=1e-5, rtol=1e-4)


def test_evaluate_survives_kill9(runs):
    root, futs = runs
    kept = futs["eval"].result()
    out = root / "ev"
    samples = out / "samples.jsonl"
    assert samples.read_text().startswith(kept), "responses from before the kill were lost or changed"
    rows = _lines(samples)  # every line parses: the torn fragment was cut, not glued to a good row
    assert sorted(r["id"] for r in rows) == [str(i) for i in range(6)]
    assert json.loads((out / "summary.json").read_text())["n"] == 6


def test_nan_loss_retries_that_sample_only(prepared, tmp_path):
    """A non-finite loss restarts that sample from a perturbed init (seeded per sample); a sample that
    stays non-finite fails after 2 retries and is counted; the others are bit-for-bit unaffected."""
    rows = read_jsonl(prepared)
    flaky, broken = rows[0]["key_phrase"], rows[1]["key_phrase"]
    cfg = SynthesizeConfig(max_steps=4, batch_size=3)
    clean = run_synthesize(load_adapter("tiny-random-llava"), rows, tmp_path / "clean", "image", cfg, progress=False)
    assert clean.n_failed == 0

    a = load_adapter("tiny-random-llava")
    real, calls = a.target_stats, {"flaky": 0}

    def faulty(items, reduction="mean", **kw):
        ce, match = real(items, reduction, **kw)
        bad = torch.tensor([broken in (it.target or "") for it in items])
        if any(flaky in (it.target or "") for it in items) and calls["flaky"] == 0:  # once: the first step
            calls["flaky"] += 1
            bad |= torch.tensor([flaky in (it.target or "") for it in items])
        return torch.where(bad, torch.full_like(ce, float("nan")), ce), match

    a.target_stats = faulty
    res = run_synthesize(a, rows, tmp_path / "nan", "image", cfg, progress=False)
    assert res.n_failed == 1 and res.n == len(rows)
    _, index, embs = load_embeddings(tmp_path / "nan")
    by_id = {r["id"]: r for r in index}
    assert by_id[rows[1]["id"]]["failed"] and by_id[rows[1]["id"]]["retries"] == 3
    assert by_id[rows[1]["id"]]["loss"] is None and by_id[rows[1]["id"]]["verified"] is False
    f = by_id[rows[0]["id"]]
    assert f["retries"] == 1 and not f["failed"] and f["loss"] is not None and f["loss_curve"][0] is None
    assert torch.isfinite(embs[rows[0]["id"]]).all()
    clean_embs = load_embeddings(tmp_path / "clean")[2]
    for r in rows[2:]:
        torch.testing.assert_close(embs[r["id"]], clean_embs[r["id"]], atol=1e-5, rtol=1e-4)


def test_align_killed_between_summary_and_rename_publishes_without_the_checkpoint(tmp_path):
    """A kill after train_summary.json was written but before _publish removed the checkpoint: the rerun
    publishes the finished adapter, and the checkpoint is not shipped inside it."""
    from sea_align.runtime.distributed import dist_state
    from sea_align.stages.align import _finished_before
    from sea_align.stages.align_loop import CKPT

    tmp, out = tmp_path / "adapter.partial", tmp_path / "adapter"
    tmp.mkdir()
    (tmp / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "m"}))
    summary = {"fingerprint": "fp1", "method": "sft", "n_train": 4, "counts": {}, "final_loss": 1.0, "seconds": 2.0}
    (tmp / "train_summary.json").write_text(json.dumps(summary))
    (tmp / CKPT).write_bytes(b"checkpoint")
    assert _finished_before(tmp, out, "other-fp", dist_state()) is None  # another run's files: not published
    res = _finished_before(tmp, out, "fp1", dist_state())
    assert res is not None and res.n_train == 4 and out.is_dir() and not tmp.exists()
    assert (out / "train_summary.json").is_file() and not (out / CKPT).exists()


def _lora_like() -> tuple[dict[str, torch.nn.Parameter], torch.optim.Optimizer]:
    params = {"a": torch.nn.Parameter(torch.zeros(3, 2)), "b": torch.nn.Parameter(torch.zeros(2))}
    return params, torch.optim.AdamW(list(params.values()), lr=0.1)


def test_a_checkpoint_of_another_config_leaks_nothing_into_the_fresh_start(tmp_path):
    """A checkpoint whose fingerprint differs (another config or data) is not resumed AND not loaded: the
    fresh run starts from its own initial weights and an empty optimizer, not from the old run's."""
    from sea_align.runtime.checkpoint import save_checkpoint
    from sea_align.stages.align_loop import CKPT, _resume_main

    old, old_opt = _lora_like()
    sum(p.sum() for p in old.values()).backward()
    old_opt.step()  # trained: non-zero weights and AdamW moments
    tmp = tmp_path / "adapter.partial"
    tmp.mkdir()
    save_checkpoint(tmp / CKPT, old, old_opt, {"step": 72, "fingerprint": "old-config"})

    fresh, fresh_opt = _lora_like()
    assert _resume_main(tmp, "new-config", fresh, fresh_opt) == 0
    assert all(torch.count_nonzero(p) == 0 for p in fresh.values())
    assert fresh_opt.state_dict()["state"] == {}
    assert not (tmp / CKPT).exists()

    save_checkpoint(tmp / CKPT, old, old_opt, {"step": 72, "fingerprint": "same"})
    assert _resume_main(tmp, "same", fresh, fresh_opt) == 72  # the matching one resumes, weights and all
    assert torch.equal(fresh["a"], old["a"]) and len(fresh_opt.state_dict()["state"]) == 2


def test_a_damaged_checkpoint_loads_nothing(tmp_path):
    """A checkpoint with a parameter of the wrong shape raises before any weight is copied."""
    from sea_align.runtime.checkpoint import load_checkpoint, save_checkpoint

    other = {"a": torch.nn.Parameter(torch.ones(3, 2)), "b": torch.nn.Parameter(torch.ones(5))}
    save_checkpoint(tmp_path / "c.safetensors", other, torch.optim.AdamW(list(other.values())), {"step": 1})
    params, opt = _lora_like()
    with pytest.raises(ValueError, match="parameter b"):
        load_checkpoint(tmp_path / "c.safetensors", params, opt)
    assert torch.count_nonzero(params["a"]) == 0
