"""A resumed `sea run` reuses a stage's output only when it was made under the same settings: a changed
setting makes its stage and the stages that read it run again, with one line naming the change."""

import json
import logging
import shutil

import pytest

from sea_align.config import BenchSpec
from sea_align.config_load import load_config
from sea_align.pipeline import run_pipeline, teacher_of
from sea_align.runtime.fingerprint import Fingerprints, changed, flat

RUN = ["align_text_baseline=false", "synthesize.max_steps=2", "distill.enabled=true", "evaluate.max_new_tokens=4"]
OUTPUTS = {  # what each stage writes, by a file whose modification time says whether it was made again
    "prepare": "prepared.jsonl",
    "distill": "distilled.jsonl",
    "synthesize": "embeddings/index.jsonl",
    "align": "adapter/adapter_model.safetensors",
    "evaluate_base": "eval/base/samples.jsonl",
    "evaluate_aligned": "eval/aligned/samples.jsonl",
}


def _stamps(out):
    return {stage: (out / rel).stat().st_mtime_ns for stage, rel in OUTPUTS.items()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp") / "run"
    run_pipeline(load_config("tiny", RUN), out, progress=False)
    return out


@pytest.mark.parametrize(
    "change,line,again",
    [
        ([], None, set()),
        (["evaluate.max_new_tokens=3"], "evaluate_base runs again: evaluate.max_new_tokens 4 -> 3",
         {"evaluate_base", "evaluate_aligned"}),
        (["align.epochs=2"], "align runs again: align.epochs 1 -> 2", {"align", "evaluate_aligned"}),
        (["synthesize.lr=0.1"], "synthesize runs again: synthesize.lr 0.05 -> 0.1",
         {"synthesize", "align", "evaluate_aligned"}),
        (["distill.max_new_tokens=8"], "distill runs again: distill.max_new_tokens 64 -> 8",
         {"distill", "align", "evaluate_aligned"}),
        (["prepare.limit=2"], "prepare runs again: prepare.limit 0 -> 2",
         {"prepare", "distill", "synthesize", "align", "evaluate_aligned"}),
        (["seed=1"], "prepare runs again: seed 0 -> 1", set(OUTPUTS)),
    ],
)  # fmt: skip
def test_a_changed_setting_makes_its_stage_and_its_readers_again(made, tmp_path, caplog, change, line, again):
    out = tmp_path / "run"
    shutil.copytree(made, out)  # copy2: the modification times travel
    before = _stamps(out)
    with caplog.at_level(logging.WARNING, logger="sea_align.runtime.fingerprint"):
        run_pipeline(load_config("tiny", RUN + change), out, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "sea_align.runtime.fingerprint"]
    after = _stamps(out)
    assert {s for s in OUTPUTS if after[s] != before[s]} == again
    if line is None:
        assert lines == []
    else:
        assert lines[0] == line
        assert all(" runs again: " in x for x in lines)


def test_a_run_made_before_fingerprints_is_kept_and_recorded(made, tmp_path, caplog):
    out = tmp_path / "run"
    shutil.copytree(made, out)
    (out / "fingerprints.json").unlink()
    before = _stamps(out)
    with caplog.at_level(logging.WARNING, logger="sea_align.runtime.fingerprint"):
        run_pipeline(load_config("tiny", RUN), out, progress=False)
    assert _stamps(out) == before
    assert any("made before settings were recorded" in r.getMessage() for r in caplog.records)
    assert json.loads((out / "fingerprints.json").read_text()) == json.loads((made / "fingerprints.json").read_text())


def test_a_bench_built_under_other_settings_is_built_again(tmp_path, caplog):
    from types import SimpleNamespace

    from sea_align.benchmarks.build import build_configured_benches

    def cfg(limit):
        return SimpleNamespace(evaluate=SimpleNamespace(bench=[], build=[BenchSpec(name="benign-text", limit=limit)]))

    fp = Fingerprints(tmp_path)
    (b,) = build_configured_benches(cfg(1), tmp_path / "bench", fp)
    n1 = len((tmp_path / "bench" / "00-benign-text" / "bench.jsonl").read_text().splitlines())
    with caplog.at_level(logging.WARNING, logger="sea_align.runtime.fingerprint"):
        build_configured_benches(cfg(1), tmp_path / "bench", Fingerprints(tmp_path))
        assert not caplog.records
        build_configured_benches(cfg(2), tmp_path / "bench", Fingerprints(tmp_path))
    assert caplog.records[0].getMessage() == "bench:00-benign-text runs again: build.limit 1 -> 2"
    assert len(open(b).read().splitlines()) > n1


def test_the_change_is_named_in_words():
    old = flat({"align": {"lr": 0.1, "lora_targets": ["q", "k"]}, "after": {"prepare": "a"}})
    assert changed(old, {**old, "align.lr": 0.2}) == "align.lr 0.1 -> 0.2"
    assert changed(old, {**old, "after.prepare": "b"}) == "prepare was made again"
    assert changed(old, {**old, "align.new": 1}) == "align.new unset -> 1"
    assert changed(old, old) == ""


def test_claim_removes_only_what_other_settings_made(tmp_path):
    fp = Fingerprints(tmp_path)
    f = tmp_path / "out.jsonl"
    assert not fp.claim("s", {"a": 1}, [f])  # nothing there yet
    f.write_text("x")
    assert Fingerprints(tmp_path).claim("s", {"a": 1}, [f]) and f.exists()
    assert not Fingerprints(tmp_path).claim("s", {"a": 2}, [f]) and not f.exists()
    assert Fingerprints(tmp_path).data["s"]["settings"] == {"a": 2}


@pytest.mark.parametrize(
    "preset,overrides,teacher",
    [
        ("default", [], "smollm2-llava"),  # a 135M built-in answers with its LLM before its text safety stage
        ("default", ["model=/models/my-llava"], "/models/my-llava"),  # a user's model never keeps ours
        ("default", ["model=sea-qwen-vl"], "sea-qwen-vl"),
        ("audio", [], "smollm2-llava"),
        ("qwen-image", [], "sea-qwen-vl"),
        ("own-image", ["model=/models/my-qwen2-vl", "data=x.jsonl"], "/models/my-qwen2-vl"),
        ("default", ["distill.teacher=self"], "sea-tiny-vl"),
        ("default", ["distill.teacher=/models/other"], "/models/other"),
    ],
)
def test_the_teacher_belongs_to_the_model(preset, overrides, teacher):
    assert teacher_of(load_config(preset, overrides)) == teacher


@pytest.mark.parametrize("preset", ["own-image", "own-video", "own-audio"])
def test_own_model_presets_use_every_row_and_need_a_model(preset, tmp_path):
    from sea_align.runtime.io import DataError

    cfg = load_config(preset)
    assert (cfg.prepare.limit, cfg.prepare.benign_limit, cfg.distill.teacher) == (0, 0, "")
    assert all(spec.limit == 0 for spec in cfg.evaluate.build)
    with pytest.raises(DataError, match="'model' is required"):
        run_pipeline(load_config(preset, ["data=x.jsonl"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_setting_added_at_its_default_keeps_what_an_older_run_made(tmp_path):
    """A run recorded before `prepare.figstep` existed, resumed by a package that has it at its default
    (False), keeps its outputs; set to anything else, the stage runs again."""
    f = tmp_path / "out.jsonl"
    f.write_text("x")
    Fingerprints(tmp_path).claim("prepare", {"prepare.limit": 24}, [f])
    defaults = {"prepare.limit": 0, "prepare.figstep": False}
    assert Fingerprints(tmp_path, defaults).claim("prepare", {"prepare.limit": 24, "prepare.figstep": False}, [f])
    assert f.exists()
    # the record is unchanged, so what read it (after.prepare) still matches
    assert Fingerprints(tmp_path).data["prepare"]["settings"] == {"prepare.limit": 24}
    assert not Fingerprints(tmp_path, defaults).claim("prepare", {"prepare.limit": 24, "prepare.figstep": True}, [f])
    assert not f.exists()


def test_a_pipeline_resumed_after_an_upgrade_redoes_nothing(tmp_path):
    """The run's own defaults reach the record check: a record lacking one of today's settings at its
    default is the same run."""
    from sea_align.config import RunConfig, to_dict
    from sea_align.runtime.fingerprint import flat, same_but_new_defaults

    d = flat(to_dict(RunConfig()))
    new = {k: v for k, v in d.items() if k.startswith("prepare.")}
    old = {k: v for k, v in new.items() if k != "prepare.figstep"}
    assert "prepare.figstep" in new and same_but_new_defaults(old, new, d)
    assert not same_but_new_defaults(old, {**new, "prepare.figstep": True}, d)
    assert not same_but_new_defaults({**old, "prepare.limit": -5}, new, d)


def test_a_run_recorded_before_a_setting_existed_resumes_without_redoing(made, tmp_path, caplog):
    """fingerprints.json as a package without `prepare.figstep` wrote it: every stage is kept."""
    out = tmp_path / "run"
    shutil.copytree(made, out)
    from sea_align.runtime.fingerprint import digest

    rec = json.loads((out / "fingerprints.json").read_text())
    del rec["prepare"]["settings"]["prepare.figstep"]
    for _ in rec:  # every digest as that package computed it, and every stage's record of what it read
        for r in rec.values():
            for k in [k for k in r["settings"] if k.startswith("after.")]:
                r["settings"][k] = rec[k[len("after.") :]]["digest"]
            r["digest"] = digest(r["settings"])
    assert (
        rec["distill"]["settings"]["after.prepare"]
        != json.loads((made / "fingerprints.json").read_text())["prepare"]["digest"]
    )
    (out / "fingerprints.json").write_text(json.dumps(rec))
    before = _stamps(out)
    with caplog.at_level(logging.WARNING, logger="sea_align.runtime.fingerprint"):
        run_pipeline(load_config("tiny", RUN), out, progress=False)
    assert _stamps(out) == before
    assert [r.getMessage() for r in caplog.records if r.name == "sea_align.runtime.fingerprint"] == []


def test_arms_runs_only_the_arms_named(made, tmp_path):
    """`arms=[text_only]` on a made run adds that arm and touches nothing else; on a new run it makes no
    embeddings and evaluates no other arm. An unknown arm is one line."""
    from sea_align.runtime.io import DataError

    out = tmp_path / "run"
    shutil.copytree(made, out)
    before = _stamps(out)
    run_pipeline(load_config("tiny", RUN + ["arms=[text_only]"]), out, progress=False)
    assert _stamps(out) == before
    assert (out / "adapter_text" / "adapter_config.json").is_file() and (out / "eval/text_only/summary.json").is_file()
    fresh = tmp_path / "fresh"
    run_pipeline(load_config("tiny", RUN + ["arms=[text_only]"]), fresh, progress=False)
    assert sorted(p.name for p in (fresh / "eval").iterdir()) == ["text_only"]
    assert not (fresh / "embeddings").exists() and not (fresh / "adapter").exists()
    with pytest.raises(DataError, match=r"config: 'arms\[0\]' must be base, aligned or text_only, got 'sea'"):
        load_config("tiny", RUN + ["arms=[sea]"])
