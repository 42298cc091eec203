"""`sea tradeoff`: attack success against harmless refusal across runs, one point per arm, one colour per
model (or --group), intervals from the summaries; the points also as JSON; bad input is one line."""

import json

import pytest

from sea_align.cli import main
from sea_align.report.tradeoff import collect


def fake_run(root, name, model, arms):
    """A run folder with a manifest and eval/<arm>/summary.json of the given (asr, refusal) per arm."""
    run = root / name
    (run).mkdir()
    (run / "manifest.json").write_text(json.dumps({"model": model}))
    for arm, (asr, refusal) in arms.items():
        (run / "eval" / arm).mkdir(parents=True)
        summary = {
            "asr": asr,
            "asr_ci95": [max(0, asr - 0.1), min(1, asr + 0.1)],
            "refusal_rate_harmless": refusal,
            "refusal_rate_harmless_ci95": [max(0, refusal - 0.05), min(1, refusal + 0.05)],
            "n_harmless_scored": 300,
            "per_attack": {
                "TYPO": {
                    "asr": asr / 2,
                    "asr_ci95": [0.0, asr],
                    "refusal_rate_harmless": refusal / 2,
                    "refusal_rate_harmless_ci95": [0.0, refusal],
                    "n_harmless_scored": 140,
                },
                "Text_only": {"asr": asr, "asr_ci95": [0.0, asr]},  # no harmless items typed: the overall rate
            },
        }
        (run / "eval" / arm / "summary.json").write_text(json.dumps(summary))
    return run


def test_tradeoff_chart_and_points(tmp_path, capsys):
    small = fake_run(tmp_path, "small", "sea-tiny-vl", {"base": (0.8, 0.05), "aligned": (0.1, 0.4)})
    large = fake_run(tmp_path, "large", "sea-qwen-vl", {"base": (0.6, 0.02), "text_only": (0.5, 0.03)})
    out = tmp_path / "charts" / "tradeoff.png"
    assert main(["tradeoff", str(small), str(large), "--out", str(out), "--group", "small=135M"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pts = json.loads(out.with_suffix(".json").read_text())["points"]
    assert [(p["run"], p["arm"], p["group"]) for p in pts] == [
        ("small", "base", "135M"),
        ("small", "aligned", "135M"),
        ("large", "base", "sea-qwen-vl"),
        ("large", "text_only", "sea-qwen-vl"),
    ]
    assert pts[1]["asr"] == 0.1 and pts[1]["refusal"] == 0.4 and pts[1]["refusal_ci95"] == pytest.approx([0.35, 0.45])
    typo = collect([small], attack="TYPO")
    assert [p.asr for p in typo] == [0.4, 0.05]
    # with --attack, the refusal is that form's own where the run has harmless items in it
    assert [(p.refusal, p.n_harmless) for p in typo] == [(0.05 / 2, 140), (0.4 / 2, 140)]
    typed = collect([small], attack="Text_only")  # no harmless item in that form: all harmless requests
    assert [(p.asr, p.refusal, p.n_harmless) for p in typed] == [(0.8, 0.05, 300), (0.1, 0.4, 300)]
    # a sweep run that copied the base evaluation adds its own SEA point, not a second base point
    sweep = fake_run(tmp_path, "small-ep1", "sea-tiny-vl", {"base": (0.8, 0.05), "aligned": (0.3, 0.2)})
    pts = collect([small, sweep])
    assert [(p.run, p.arm) for p in pts] == [("small", "base"), ("small", "aligned"), ("small-ep1", "aligned")]


def test_tradeoff_bad_input_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, needle in [
        (["tradeoff", str(empty), "--out", str(tmp_path / "t.png")], "no arm with both ASR and harmless refusal"),
        (["tradeoff", str(tmp_path / "nope"), "--out", str(tmp_path / "t.png")], "no such run directory"),
        (["tradeoff", str(empty), "--out", str(tmp_path / "t.svg")], "the chart is a PNG"),
        (["tradeoff", str(empty), "--out", str(tmp_path / "t.png"), "--group", "x"], "expected RUN=NAME"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("attack", ["KPT"])
def test_tradeoff_attack_missing_names_it(tmp_path, attack):
    from sea_align.runtime.io import DataError

    run = fake_run(tmp_path, "r", "m", {"base": (0.5, 0.1)})
    with pytest.raises(DataError, match=f"attack '{attack}' ASR"):
        collect([run], attack=attack)


def test_labels_of_nearby_points_do_not_share_a_line():
    from sea_align.report.tradeoff import Point, _label_offsets

    def pt(run, refusal, asr):
        return Point(run, "aligned", "g", asr, None, refusal, None, None)

    points = [pt("a", 0.39, 0.07), pt("b", 0.50, 0.10), pt("c", 0.45, 0.08), pt("far", 0.90, 0.90)]
    offs = _label_offsets(points)
    per_pt = 110 / 280
    lines = [100 * p.asr + o * per_pt for p, o in zip(points, offs)]
    for i in range(3):
        for j in range(i):
            assert abs(lines[i] - lines[j]) >= 3, (offs, lines)
    assert offs[0] == offs[3] == 3  # a lone point keeps the default place
