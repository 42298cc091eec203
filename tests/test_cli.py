"""The real CLI, in subprocesses: the tiny end-to-end run and one-line errors."""
import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def sea(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sea_align.cli", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=900)


def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    r = sea("run", "--config", "tiny", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    for rel in ("prepared.jsonl", "embeddings/index.jsonl", "adapter/adapter_config.json",
                "eval/base/summary.json", "eval/aligned/summary.json", "report.md", "manifest.json"):
        assert (out / rel).is_file(), rel
    assert list((out / "embeddings").glob("*.safetensors"))
    man = json.loads((out / "manifest.json").read_text())
    assert {"seed", "versions", "git_sha", "decoding", "hardware", "stages"} <= set(man)
    assert {"prepare", "synthesize", "align", "evaluate_base", "evaluate_aligned"} <= set(man["stages"])
    s = json.loads((out / "eval/aligned/summary.json").read_text())
    assert {"n", "n_scored", "n_unscored", "asr", "per_category", "refusal_rate_harmless"} <= set(s)
    report = (out / "report.md").read_text()
    assert "| ASR (macro over categories) |" in report and "checks the plumbing" in report
    # resume: a finished run does no stage again
    before = (out / "embeddings" / "index.jsonl").read_text()
    r2 = sea("run", "--config", "tiny", "--out", str(out), "--quiet")
    assert r2.returncode == 0
    man2 = json.loads((out / "manifest.json").read_text())
    assert man2["stages"]["synthesize"] == man["stages"]["synthesize"]
    assert (out / "embeddings" / "index.jsonl").read_text() == before


@pytest.mark.parametrize("args,needle", [
    (["prepare", "--data", "{tmp}/bad.jsonl", "--out", "{tmp}/p.jsonl"], "bad.jsonl:2: malformed JSON"),
    (["prepare", "--data", "{tmp}/empty.jsonl", "--out", "{tmp}/p.jsonl"], "empty data set"),
    (["prepare", "--data", "{tmp}/nofield.jsonl", "--out", "{tmp}/p.jsonl"], "missing field 'response'"),
    (["synthesize", "--model", "tiny-random-nope", "--modality", "image", "--data", "{tmp}/good.jsonl", "--out",
      "{tmp}/e"], "unsupported model family"),
    (["synthesize", "--model", "tiny-random-llava", "--modality", "audio", "--data", "{tmp}/good.jsonl", "--out",
      "{tmp}/e"], "has no audio input"),
    (["synthesize", "--model", "tiny-random-llava", "--modality", "image", "--data", "{tmp}/prep.jsonl", "--out",
      "{tmp}/e", "--init", "text", "--init-text", "the phrase"], "synthesize.init_text: 'the phrase' has neither"),
    (["run", "--config", "tiny", "--out", "{tmp}/r", "synthesize.bogus=1"], "unknown key 'synthesize.bogus'"),
])
def test_one_line_errors(tmp_path, args, needle):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "response": "b"}\n{oops\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "nofield.jsonl").write_text('{"instruction": "a"}\n')
    (tmp_path / "good.jsonl").write_text('{"id": "1", "key_phrase": "x", "aux": {}}\n')
    (tmp_path / "prep.jsonl").write_text(json.dumps({"id": "1", "key_phrase": "x", "aux": {"image": [
        {"prompt": "What does the image say?", "target": "The image says 'x'."}]}}) + "\n")
    r = sea(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("sea: error")]
    assert len(lines) == 1 and needle in lines[0], r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "p.jsonl").exists()
