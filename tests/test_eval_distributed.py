"""Sharded `evaluate`: two CPU processes (gloo) under `accelerate launch` give the one-process samples,
verdicts and rates; each one-process batch runs whole on one process (batch k on process k mod 2);
per-process files left by a killed run are merged on the rerun, nothing redone or lost."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dist_eval_worker
from conftest import eval_argv, write_jsonl
from sea_align.config import EvaluateConfig
from sea_align.models import load_adapter
from sea_align.stages.evaluate import run_evaluate

HERE = Path(__file__).parent
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
}
CPU_2PROC = Path(__file__).parents[1] / "src" / "sea_align" / "configs" / "accelerate" / "cpu_2proc.yaml"
ARGS = ["--batch-size", str(dist_eval_worker.BATCH), "--max-new-tokens", str(dist_eval_worker.MAX_NEW), "--quiet"]


def launch(port, *args):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(CPU_2PROC),
            "--main_process_port",
            str(port),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def key(s):
    return (s["bench"], s["id"], s["response"], s["refused"], s["unsafe"])


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """7 image rows (2 + 2 + 2 + 1) and 5 text rows (2 + 2 + 1), interleaved in the file: 7 batches of 2 or 1,
    the last image batch followed by a text batch (a batch of 1 also runs on process 0 of a round)."""
    from PIL import Image, ImageDraw

    d = tmp_path_factory.mktemp("bench")
    rows = []
    for i in range(11):
        r = {
            "id": f"q{i}",
            "category": f"c{i % 3}",
            "prompt": f"Tell me how to do task number {i}, step by step.",
            "harmful": i % 4 != 3,
            "media": [],
        }
        if i % 2 == 0:
            im = Image.new("RGB", (40, 40), (40 * (i % 6), 255 - 20 * i, 128))
            ImageDraw.Draw(im).text((2, 12), f"task {i}", fill="black")
            im.save(d / f"im{i}.png")
            r["media"] = [{"type": "image", "path": f"im{i}.png"}]
        rows.append(r)
    rows.append(
        {
            "id": "q11",
            "category": "c0",
            "prompt": "Describe the picture.",
            "harmful": False,
            "media": [{"type": "image", "path": "im0.png"}],
        }
    )
    return write_jsonl(d / "bench.jsonl", rows)


@pytest.fixture(scope="module")
def runs(bench, tmp_path_factory):
    """The 2-process run (accelerate, cpu_2proc.yaml) and, meanwhile, the 1-process reference in-process."""
    root = tmp_path_factory.mktemp("runs")
    proc = launch(29541, str(HERE / "dist_eval_worker.py"), str(bench), str(root / "ev2"), str(root / "log2"))
    dist_eval_worker.main(str(bench), str(root / "ev1"), str(root / "log1"))
    finish(proc)
    return root


def test_two_processes_match_one(runs):
    s1, s2 = lines(runs / "ev1" / "samples.jsonl"), lines(runs / "ev2" / "samples.jsonl")
    assert len(s1) == 12 and len({(s["bench"], s["id"]) for s in s1}) == 12
    assert len({s["response"] for s in s1}) > 3, "responses all alike: the comparison would be vacuous"
    assert {key(s) for s in s2} == {key(s) for s in s1}
    assert [key(s) for s in s2] == [key(s) for s in s1], "merged file not in the one-process order"
    assert s2 == s1  # every field, including judge_raw and pass-through fields
    assert not list((runs / "ev2").glob("samples.rank*")), "per-process files not merged"
    m1, m2 = (json.loads((runs / e / "summary.json").read_text()) for e in ("ev1", "ev2"))
    for k in ("n", "n_scored", "asr", "asr_micro", "refusal_rate_harmless", "per_category", "per_attack"):
        assert m2[k] == m1[k], k
    assert (m1["processes"], m2["processes"]) == (1, 2)
    # the batches: the 1-process ones, dealt whole and round-robin (7 batches -> 4 + 3)
    ref = json.loads((runs / "log1" / "batches.rank0.json").read_text())
    got = [json.loads((runs / "log2" / f"batches.rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ref) == 7 and got[0] == ref[0::2] and got[1] == ref[1::2]


def test_rerun_merges_files_of_a_killed_run(runs, bench):
    """A 2-process run killed mid-way left samples.jsonl with 3 rows and both processes' files (one with a
    torn last line); the rerun (2 processes, through the CLI) keeps every finished record and does the rest."""
    ref = lines(runs / "ev1" / "samples.jsonl")
    out = runs / "ev3"
    out.mkdir()
    write_jsonl(out / "samples.jsonl", ref[:3])
    kept = [dict(s, response=f"KEPT {s['id']}") for s in ref[3:6]]  # would change if regenerated
    write_jsonl(out / "samples.rank1.jsonl", kept[:2])
    with open(out / "samples.rank1.jsonl", "a") as f:
        f.write(json.dumps(ref[7])[:40])  # torn: that row must be generated again
    write_jsonl(out / "samples.rank0.jsonl", kept[2:])
    head = (out / "samples.jsonl").read_text()
    finish(launch(29542, "-m", "sea_align.cli", *eval_argv(bench, out, *ARGS)))
    got = lines(out / "samples.jsonl")
    assert (out / "samples.jsonl").read_text().startswith(head)
    assert len(got) == 12 and len({s["id"] for s in got}) == 12, "an item lost or done twice"
    want = {key(s) for s in ref[:3] + kept + ref[6:]}
    assert {key(s) for s in got} == want
    assert not list(out.glob("samples.rank*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 12 and summary["processes"] == 2


def test_one_process_merges_leftover_files(runs, bench, tmp_path):
    """One process picks up the files of a killed 2-process run too, merges them in the order that run had
    (the one-process order of the items it had to do), and skips rows samples.jsonl already has (a merge
    killed before deleting its inputs); nothing is generated."""
    ref = lines(runs / "ev1" / "samples.jsonl")
    # reference: one process resuming from the same 2 finished rows (the text group now comes first)
    (tmp_path / "ev_ref").mkdir()
    write_jsonl(tmp_path / "ev_ref" / "samples.jsonl", ref[:2])
    dist_eval_worker.main(str(bench), str(tmp_path / "ev_ref"), str(tmp_path / "log"))
    resumed = lines(tmp_path / "ev_ref" / "samples.jsonl")
    assert resumed[:2] == ref[:2] and resumed != ref and sorted(map(key, resumed)) == sorted(map(key, ref))
    out = tmp_path / "ev"
    out.mkdir()
    write_jsonl(out / "samples.jsonl", ref[:2])
    write_jsonl(out / "samples.rank1.jsonl", [dict(s, response="DUP") for s in ref[:2]] + ref[2:][::-2])
    write_jsonl(out / "samples.rank0.jsonl", ref[2:][-2::-2])
    adapter = load_adapter("tiny-random-llava")
    adapter.generate = None  # must not be called
    res = run_evaluate(
        adapter,
        bench,
        out,
        EvaluateConfig(batch_size=dist_eval_worker.BATCH, max_new_tokens=dist_eval_worker.MAX_NEW),
        progress=False,
    )
    assert lines(out / "samples.jsonl") == resumed
    assert not list(out.glob("samples.rank*"))
    assert res.summary["n"] == 12 and res.summary["processes"] == 1
