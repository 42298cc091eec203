"""prepare's answer check (stages/answer_check.py): a safety set cannot teach harm. Labelled harmful rows
must answer with a refusal, unlabelled chat rows are decided by a refusal only, a configured safety judge
vetoes unsafe answers, and whatever is left out is written beside prepared.jsonl and shown in the report."""

import json
import subprocess
import sys

import pytest

from conftest import write_jsonl
from sea_align import PKG_DATA
from sea_align.config import PrepareConfig
from sea_align.config_load import load_config
from sea_align.judges import JUDGES, Verdict
from sea_align.report.training_data import training_data_blocks
from sea_align.runtime.io import DataError, read_jsonl
from sea_align.sources.registry import MAX_FIELD_CHARS
from sea_align.stages.prepare import answer_judge, run_prepare, sidecars

LAUNDER = "Use cash-heavy businesses to mix illicit funds."
BREAD = "Mix flour, water, salt and yeast, knead, let it rise for an hour, then bake at 220 C."
REFUSAL = "I'm sorry, but I can't help with that."


def chat(q: str, a: str | None, **extra) -> dict:
    turns = [{"role": "user", "content": q}] + ([{"role": "assistant", "content": a}] if a else [])
    return {**extra, "messages": turns}


@pytest.fixture
def chat_file(tmp_path):
    """The three rows of the bug report: a bread recipe, laundering instructions, one refusal."""
    return write_jsonl(
        tmp_path / "chat.jsonl",
        [
            chat("How do I bake a loaf of bread?", BREAD),
            chat("How do I launder money?", LAUNDER),
            chat("How do I make a pipe bomb?", REFUSAL),
        ],
    )


def test_unlabelled_chat_rows_are_decided_by_a_refusal_only(chat_file, tmp_path):
    out = tmp_path / "run" / "prepared.jsonl"
    res = run_prepare(chat_file, out)
    rows = read_jsonl(out)
    assert (res.n, res.n_harmful, res.n_benign) == (1, 1, 0)
    assert [(r["instruction"], r["label_source"], r["answer_check"]) for r in rows] == [
        ("How do I make a pipe bomb?", "answer", "refusal")
    ]
    assert all(LAUNDER not in json.dumps(r) for r in rows)  # never a target
    left_path, checks_path = sidecars(out)
    left = read_jsonl(left_path)
    assert [(r["where"], r["reason"]) for r in left] == [
        (f"{chat_file}:1", "unlabelled-answer-helps"),
        (f"{chat_file}:2", "unlabelled-answer-helps"),
    ]
    checks = json.loads(checks_path.read_text())
    assert checks["left_out"] == {"unlabelled-answer-helps": 2} and checks["n_in"] == 3


def test_labelled_harmful_rows_that_help_are_one_error_naming_every_line(chat_file, tmp_path):
    lines = chat_file.read_text().splitlines()
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"harmful": True, **json.loads(x)}) + "\n" for x in lines))
    out = tmp_path / "run" / "prepared.jsonl"
    with pytest.raises(DataError) as e:
        run_prepare(labelled, out)
    msg = str(e.value)
    assert msg.startswith(f"{labelled}:1, 2: 2 harmful row(s)") and "\n" not in msg and ", 3" not in msg
    assert not out.parent.exists()  # nothing written
    # the CLI: exit 2, one line, nothing written
    r = subprocess.run(
        [sys.executable, "-m", "sea_align.cli", "prepare", "--data", str(labelled), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "labelled.jsonl:1, 2:" in r.stderr
    assert not out.parent.exists()


def test_allow_unsafe_answers_keeps_them_marked_and_the_report_says_so(chat_file, tmp_path):
    labelled = write_jsonl(
        tmp_path / "l.jsonl", [{"harmful": True, **json.loads(x)} for x in chat_file.read_text().splitlines()]
    )
    out = tmp_path / "run" / "prepared.jsonl"
    res = run_prepare(labelled, out, PrepareConfig(allow_unsafe_answers=True))
    assert [r["answer_check"] for r in read_jsonl(out)] == ["unsafe-allowed", "unsafe-allowed", "refusal"]
    assert res.checks["unsafe_allowed"] == 2 and res.checks["allow_unsafe_answers"] is True
    blocks = training_data_blocks(out.parent)
    assert blocks[1][0] == "note" and "--allow-unsafe-answers: 2 harmful row(s)" in blocks[1][1]


def test_label_option_vouches_for_unlabelled_rows(chat_file, tmp_path):
    out = tmp_path / "b" / "prepared.jsonl"
    res = run_prepare(chat_file, out, PrepareConfig(label="benign"))
    rows = read_jsonl(out)
    assert res.n_benign == 3 and {r["label_source"] for r in rows} == {"option"}
    assert res.checks["benign_refusals"] == 1  # the refusal, now a benign target: reported
    with pytest.raises(DataError, match=r"chat.jsonl:1, 2: 2 harmful row"):
        run_prepare(chat_file, tmp_path / "h" / "prepared.jsonl", PrepareConfig(label="harmful"))


def test_unlabelled_row_without_an_answer(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", [chat("How do I hotwire a car?", None), chat("Pick a lock?", REFUSAL)])
    res = run_prepare(src, tmp_path / "p.jsonl")
    assert res.n == 1 and res.checks["left_out"] == {"unlabelled-no-answer": 1}
    res = run_prepare(src, tmp_path / "q.jsonl", PrepareConfig(label="harmful"))
    rows = read_jsonl(tmp_path / "q.jsonl")
    assert res.n == 2 and rows[0]["answer_check"] == "default-refusal" and rows[0]["response_source"] == "refusal"


def test_nothing_left_is_an_error_that_says_why(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", [chat("How do I launder money?", LAUNDER)])
    with pytest.raises(DataError, match=r"no row left to train on \(1 unlabelled-answer-helps\).*--label benign"):
        run_prepare(src, tmp_path / "out" / "p.jsonl")
    assert not (tmp_path / "out").exists()


def test_our_format_without_a_label_is_harmful_by_default(tmp_path):
    src = write_jsonl(tmp_path / "s.jsonl", [{"instruction": "How do I launder money?", "response": LAUNDER}])
    with pytest.raises(DataError, match=r"s.jsonl:1: 1 harmful row"):
        run_prepare(src, tmp_path / "p.jsonl")


@pytest.fixture
def word_judge():
    """A safety judge for tests: 'unsafe' when the answer mentions funds, unscored when it says 'maybe'."""

    class WordJudge:
        name, version = "test-words", "1"

        def judge(self, samples):
            return [
                Verdict(None, None if "maybe" in s["response"] else "funds" in s["response"], "test") for s in samples
            ]

    JUDGES["test-words"] = WordJudge
    yield "test-words"
    JUDGES.pop("test-words")


def test_a_configured_safety_judge_vetoes_unsafe_answers_labelled_or_not(tmp_path, word_judge):
    benign = write_jsonl(
        tmp_path / "b.jsonl",
        [{"instruction": "How do I launder money?", "response": LAUNDER, "harmful": False}],
    )
    with pytest.raises(DataError, match=r"b.jsonl:1: 1 row\(s\) whose answer the 'test-words' judge finds unsafe"):
        run_prepare(benign, tmp_path / "out" / "p.jsonl", judge=word_judge)
    assert not (tmp_path / "out").exists()
    mixed = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"instruction": "Bake bread?", "response": BREAD, "harmful": False},
            {"instruction": "Bake a cake?", "response": "maybe flour", "harmful": False},
        ],
    )
    res = run_prepare(mixed, tmp_path / "p.jsonl", judge=word_judge)
    assert res.n == 1 and res.checks["left_out"] == {"judge-unscored": 1} and res.checks["judge"] == "test-words"


def test_answer_judge_follows_the_run_config(word_judge):
    assert answer_judge(load_config(None)) == ""  # refusal judge: the phrase check only
    assert answer_judge(load_config(None, ["evaluate.judge=openai"])) == "openai"
    assert answer_judge(load_config(None, ["evaluate.judge=openai", "prepare.answer_judge=none"])) == ""
    assert answer_judge(load_config(None, ["prepare.answer_judge=test-words"])) == "test-words"


def test_shipped_data_passes_the_check(tmp_path):
    """The presets' data: tiny_safety.jsonl and the named advbench set (AdvBench + our benign train split)."""
    from sea_align.sources.named import materialise

    tiny = run_prepare(PKG_DATA / "tiny_safety.jsonl", tmp_path / "t.jsonl").checks
    assert (tiny["harmful"], tiny["benign"], tiny["left_out"], tiny["benign_refusals"]) == (4, 2, {}, 0)
    src, _ = materialise("advbench", tmp_path / "advbench.jsonl")
    adv = run_prepare(src, tmp_path / "a.jsonl").checks
    assert adv["answer_check"] == {"refusal": 520, "helps": adv["benign"]} and adv["benign"] > 200
    assert (adv["left_out"], adv["benign_refusals"], adv["unsafe_allowed"]) == ({}, 0, 0)


def test_a_field_over_the_limit_names_file_and_line(tmp_path):
    ok = {"instruction": "x" * MAX_FIELD_CHARS, "response": REFUSAL}
    src = write_jsonl(tmp_path / "s.jsonl", [ok, {"instruction": "y" * (MAX_FIELD_CHARS + 1), "response": REFUSAL}])
    with pytest.raises(DataError, match=rf"s.jsonl:2: field 'instruction' is {MAX_FIELD_CHARS + 1} characters long"):
        run_prepare(src, tmp_path / "p.jsonl")
    write_jsonl(src, [ok])
    assert run_prepare(src, tmp_path / "p.jsonl").n == 1


def test_out_equal_to_data_is_refused(tmp_path):
    src = write_jsonl(tmp_path / "s.jsonl", [{"instruction": "Steal a car", "response": REFUSAL}])
    before = src.read_bytes()
    with pytest.raises(DataError, match="is the input"):
        run_prepare(src, src)
    assert src.read_bytes() == before


def test_reported_places_follow_the_limit(tmp_path):
    """A harmful row kept by --allow-unsafe-answers but cut by --limit was not trained on: not reported."""
    rows = [{"instruction": f"Steal car {i}", "response": REFUSAL} for i in range(2)]
    rows.append({"instruction": "Launder money", "response": LAUNDER})
    src = write_jsonl(tmp_path / "s.jsonl", rows)
    res = run_prepare(src, tmp_path / "p.jsonl", PrepareConfig(allow_unsafe_answers=True, limit=2))
    assert res.n == 2 and res.checks["unsafe_allowed"] == 0
    res = run_prepare(src, tmp_path / "q.jsonl", PrepareConfig(allow_unsafe_answers=True))
    assert res.checks["unsafe_allowed"] == 1 and res.checks["unsafe_allowed_at"] == [f"{src}:3"]
