"""Hostile input: hypothesis fuzzes the JSONL (prepare input), config and benchmark loaders.

Every input either loads or raises a one-line DataError, and a rejected input writes nothing.
500 examples per loader; the CLI cases check the console side (exit 2, one line, no traceback)."""

import json
import os
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sea_align.config import EvaluateConfig, PrepareConfig, RunConfig
from sea_align.config_load import load_config
from sea_align.models.media import check_media, load_audio, load_image, load_video
from sea_align.runtime.io import DataError, read_jsonl
from sea_align.stages.evaluate import run_evaluate
from sea_align.stages.prepare import run_prepare

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def _one_line(e: DataError) -> str:
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)
    return msg


def _bytes_lines(row_strategy):
    """File contents: JSON rows (some well formed), garbage, invalid UTF-8, huge or deeply nested lines."""
    line = st.one_of(
        row_strategy.map(lambda r: json.dumps(r).encode()),
        st.binary(max_size=60),
        st.just(b"\xff\xfe\x00bad"),
        st.just(b'{"instruction": "' + b"x" * 2_000_000 + b'", "response": "no"}'),  # a 2 MB line
        st.just(b"[" * 5000 + b"]" * 5000),
        st.just(b'{"instruction": ' + b"9" * 5000 + b"}"),
        st.sampled_from([b"", b"   ", b"null", b"[]", b'"str"', b"{", b"NaN"]),
    )
    return st.lists(line, max_size=6).map(lambda ls: b"\n".join(ls))


prepare_rows = st.fixed_dictionaries(
    {"instruction": st.one_of(st.text(max_size=40), values), "response": st.one_of(st.text(max_size=20), values)},
    optional={
        "id": values,
        "harmful": values,
        "rejected": values,
        "key_phrase": values,
        "phrase_type": values,
        "category": values,
    },
)


good_prepare = st.lists(
    st.fixed_dictionaries(
        {"instruction": st.text(min_size=1, max_size=40), "response": st.text(min_size=1, max_size=20)},
        optional={"harmful": st.booleans(), "category": st.text(max_size=5)},
    ),
    min_size=1,
    max_size=4,
).map(lambda rs: "\n".join(json.dumps(r) for r in rs).encode())


@FUZZ
@given(content=st.one_of(_bytes_lines(prepare_rows), good_prepare))
def test_fuzz_prepare_input(content):
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.jsonl", Path(d) / "out" / "prepared.jsonl"
        src.write_bytes(content)
        try:
            run_prepare(src, out)
        except DataError as e:
            msg = _one_line(e)
            event("rejected")
            assert "in.jsonl" in msg or "field" in msg or "id" in msg, msg
            assert not out.parent.exists() or not any(out.parent.iterdir())
            return
        event("loaded")
        rows = read_jsonl(out)  # what the next stage reads (not str.splitlines: U+0085 is a line break there)
        assert rows and all(isinstance(r["instruction"], str) for r in rows)


config_keys = st.sampled_from(
    [
        "model",
        "modality",
        "data",
        "seed",
        "dtype",
        "synthesize",
        "align",
        "evaluate",
        "prepare",
        "bogus",
        "note",
        "align_text_baseline",
    ]
)
sub_keys = st.sampled_from(
    [
        "max_steps",
        "lr",
        "batch_size",
        "space",
        "epochs",
        "lora_targets",
        "bench",
        "build",
        "judge",
        "method",
        "nope",
        "limit",
        "text_only",
    ]
)
config_docs = st.dictionaries(config_keys, st.one_of(values, st.dictionaries(sub_keys, values, max_size=4)), max_size=6)
overrides = st.lists(
    st.one_of(
        st.builds(lambda k, s, v: f"{k}.{s}={v}", config_keys, sub_keys, st.text(max_size=12)),
        st.builds(lambda k, v: f"{k}={v}", config_keys, st.text(max_size=12)),
        st.text(max_size=20),
    ),
    max_size=3,
)


def _yaml_text(doc) -> str:
    import yaml

    return yaml.safe_dump(doc, allow_unicode=True)


good_configs = st.fixed_dictionaries(
    {},
    optional={
        "seed": st.integers(0, 10**6),
        "modality": st.sampled_from(["image", "video", "audio"]),
        "synthesize": st.fixed_dictionaries(
            {}, optional={"max_steps": st.integers(1, 100), "lr": st.floats(1e-4, 1.0)}
        ),
        "align": st.fixed_dictionaries(
            {}, optional={"lora_targets": st.lists(st.text(min_size=1, max_size=6)), "epochs": st.integers(0, 5)}
        ),
    },
)
config_texts = st.one_of(
    config_docs.map(_yaml_text),
    good_configs.map(_yaml_text),
    st.text(max_size=80),
    st.sampled_from(
        [
            "[",
            "a: [1, 2",
            "- 1\n- 2",
            "x: !!python/object:os.system ls",
            "synthesize:\n  lr: 1e999999",
            "seed: " + "9" * 5000,
            "&a [*a]",
            "a: " + "[" * 3000,
        ]
    ),
)


@FUZZ
@given(
    text=st.one_of(config_texts, st.binary(max_size=40).map(lambda b: b.decode("latin-1"))),
    ov=overrides,
    raw=st.booleans(),
)
def test_fuzz_config_loader(text, ov, raw):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.yaml"
        if raw:  # invalid UTF-8 too
            p.write_bytes(text.encode("utf-8", "surrogatepass") + b"\xff")
        else:
            p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            cfg = load_config(str(p), ov)
        except DataError as e:
            _one_line(e)
            event("rejected")
            assert os.listdir(d) == ["c.yaml"]
            return
        event("loaded")
        assert isinstance(cfg, RunConfig) and cfg.modality in ("image", "video", "audio")


class StubAdapter:
    """Just enough of a model to let run_evaluate run without one (the loader is what is fuzzed)."""

    modalities = ("image", "audio")

    def check_modality(self, m):
        if m not in self.modalities:
            raise DataError(f"no {m} input")

    def encode(self, kind, paths):
        class F:
            meta = {}

        return [F() for _ in paths]

    def to_llm(self, kind, feats):
        return None

    def generate(self, items, max_new_tokens):
        return ["I'm sorry"] * len(items)


def _media_dir(d: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), "white").save(d / "ok.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)
    (d / "empty.wav").write_bytes(b"")
    with wave.open(str(d / "silent0.wav"), "wb") as w:  # a valid WAV header with zero frames
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    (d / "text.mp4").write_text("not a video")


media_items = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["image", "audio", "video", "smell", 3]),
            "path": st.sampled_from(
                [
                    "ok.png",
                    "corrupt.png",
                    "empty.wav",
                    "silent0.wav",
                    "text.mp4",
                    "missing.png",
                    "",
                    "x" * 5000,
                    "a\0b",
                    7,
                ]
            ),
        }
    ),
    values,
)
bench_rows = st.fixed_dictionaries(
    {
        "id": st.one_of(st.integers(0, 3), st.text(max_size=3), values),
        "prompt": st.one_of(st.text(max_size=20), values),
        "harmful": st.one_of(st.booleans(), values),
    },
    optional={"media": st.one_of(st.lists(media_items, max_size=2), values), "category": values, "attack": values},
)


good_bench = st.lists(
    st.fixed_dictionaries(
        {
            "prompt": st.text(max_size=20),
            "harmful": st.booleans(),
            "media": st.lists(
                st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(["image", "audio"]),
                        "path": st.sampled_from(["ok.png", "corrupt.png", "silent0.wav"]),
                    }
                ),
                max_size=1,
            ),
        },
        optional={"category": st.text(max_size=5)},
    ),
    min_size=1,
    max_size=4,
).map(lambda rs: "\n".join(json.dumps({"id": i, **r}) for i, r in enumerate(rs)).encode())


def test_a_line_break_quoted_from_the_input_stays_escaped(tmp_path):
    """Found by the bench fuzzer: a duplicate id that is a line break made a two-line message."""
    from sea_align.stages.evaluate import load_bench

    row = {"id": "\n", "prompt": "p", "harmful": True}
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as e:
        load_bench(bench)
    assert _one_line(e.value) == f"{bench}:2: duplicate id '\\n'"


@FUZZ
@given(content=st.one_of(_bytes_lines(bench_rows), good_bench))
def test_fuzz_bench_loader(content):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _media_dir(d)
        (d / "bench.jsonl").write_bytes(content)
        out = d / "eval"
        try:
            res = run_evaluate(StubAdapter(), d / "bench.jsonl", out, EvaluateConfig(max_new_tokens=2), progress=False)
        except DataError as e:
            msg = _one_line(e)
            event("rejected")
            assert "bench.jsonl" in msg or ".png" in msg or ".wav" in msg or ".mp4" in msg or "no " in msg, msg
            assert not out.exists()
            return
        event("loaded")
        assert res.summary["n"] == len(read_jsonl(out / "samples.jsonl"))


def test_media_loaders_refuse_bad_files(tmp_path):
    _media_dir(tmp_path)
    cases = [
        (load_image, "corrupt.png", "not a readable image"),
        (load_image, "missing.png", "not found"),
        (load_audio, "empty.wav", "zero length"),
        (load_audio, "silent0.wav", "zero length"),
        (load_video, "text.mp4", "not a readable video"),
    ]
    for fn, name, needle in cases:
        with pytest.raises(DataError, match=needle):
            fn(tmp_path / name)
    for kind, name, needle in [
        ("image", "corrupt.png", "not a readable image"),
        ("audio", "empty.wav", "zero length"),
        ("audio", "silent0.wav", "zero length"),
        ("video", "text.mp4", "video"),
    ]:
        with pytest.raises(DataError, match=needle):
            check_media(kind, tmp_path / name)
    check_media("image", tmp_path / "ok.png")


ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("case", ["utf8", "corrupt_image"])
def test_cli_hostile_input_one_line(tmp_path, case):
    """Through the console: exit 2, one `sea: error:` line, no traceback, nothing written."""
    if case == "utf8":
        (tmp_path / "in.jsonl").write_bytes(b'{"instruction": "a", "response": "\xff"}\n')
        args = ["prepare", "--data", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out" / "p.jsonl")]
        needle = "not valid UTF-8"
    else:
        _media_dir(tmp_path)
        (tmp_path / "b.jsonl").write_text(
            json.dumps({"id": 1, "prompt": "p", "harmful": True, "media": [{"type": "image", "path": "corrupt.png"}]})
            + "\n"
        )
        args = [
            "evaluate",
            "--model",
            "tiny-random-llava",
            "--bench",
            str(tmp_path / "b.jsonl"),
            "--out",
            str(tmp_path / "out"),
        ]
        needle = "corrupt.png: not a readable image"
    r = subprocess.run(
        [sys.executable, "-m", "sea_align.cli", *args], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert r.returncode == 2, r.stderr[-2000:]
    errs = [line for line in r.stderr.splitlines() if line.startswith("sea: error:")]
    assert len(errs) == 1 and needle in errs[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


# --- the answer check (stages/answer_check.py) and every numeric option ------------------------------------
REFUSING = ["I'm sorry, but I can't help with that.", "I cannot assist with this.", "I won't provide it."]
HELPING = ["Use cash-heavy businesses to mix illicit funds.", "Mix flour and water, then bake.", "Sure: step 1."]
answers = st.one_of(st.sampled_from(REFUSING + HELPING), st.text(min_size=1, max_size=20))
labels = st.sampled_from([None, True, False])


def _answer_rows(chat: bool):
    def row(q, a, label):
        rec = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} if chat else {}
        if not chat:
            rec.update(instruction=q, response=a)
        return rec if label is None else {**rec, "harmful": label}

    one = st.builds(row, st.text(min_size=1, max_size=20).filter(str.strip), answers, labels)
    return st.lists(one, min_size=1, max_size=6)


@FUZZ
@given(
    rows=st.one_of(_answer_rows(True), _answer_rows(False)),
    label=st.sampled_from(["", "benign", "harmful"]),
    allow=st.booleans(),
    limit=st.integers(0, 3),
)
def test_fuzz_answer_check(rows, label, allow, limit):
    """No answer that helps is ever a harmful target (unless allowed, and then marked); an unlabelled row is
    harmful only by its refusal; a rejected file leaves nothing behind; a second run gives the same rows."""
    from sea_align.judges import is_refusal

    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.jsonl", Path(d) / "out" / "prepared.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg = PrepareConfig(label=label, allow_unsafe_answers=allow, limit=limit)
        try:
            res = run_prepare(src, out, cfg)
        except DataError as e:
            _one_line(e)
            event("rejected")
            assert not out.parent.exists()
            return
        event("loaded")
        got = read_jsonl(out)
        for r in got:
            if r["harmful"] and r["answer_check"] != "unsafe-allowed":
                assert is_refusal(r["response"]), r
            assert r["answer_check"] != "unsafe-allowed" or allow
            assert r["label_source"] != "answer" or (r["harmful"] and is_refusal(r["response"]))
        if not limit:
            assert res.n + sum(res.checks["left_out"].values()) == len(rows)
        again = Path(d) / "again" / "prepared.jsonl"
        run_prepare(src, again, cfg)
        assert again.read_bytes() == out.read_bytes()


def _numeric_keys():
    from sea_align.config import BenchSpec, config_keys

    keys = [k for k in config_keys() if k.type in (int, float, list[float])]
    return keys + [k for k in config_keys(BenchSpec, "evaluate.build[].") if k.type in (int, float)]


NUMERIC_KEYS = _numeric_keys()
near_bounds = st.one_of(
    st.integers(-3, 4), st.sampled_from([-1e-9, 0.0, 1e-9, 0.5, 0.999999, 1.0, 1.000001, 2.0, 2.5, 1e12])
)


@FUZZ
@given(key=st.sampled_from(NUMERIC_KEYS), value=near_bounds)
def test_fuzz_numeric_options(key, value):
    """`sea prepare` with any numeric option: out of its range is exit 2 with nothing written; in range the
    stage runs, and a second run gives the same prepared rows."""
    import contextlib
    import io

    from sea_align import PKG_DATA
    from sea_align.cli import main

    if key.type is int:
        value = int(value) if float(value).is_integer() and abs(value) < 1e9 else value
    item = key.name.rsplit(".", 1)[-1]
    given_value = [value, 0.7, 3.0] if key.type == list[float] else value
    ov = (
        f"evaluate.build=[{json.dumps({item: given_value})}]"
        if "[]" in key.name
        else f"{key.name}={json.dumps(given_value)}"
    )
    fits = (key.type is not int or isinstance(value, int)) and key.range.holds(value)
    if key.name.endswith("lr_adapt"):
        fits = fits and 0.7 < 1 <= value <= 3.0  # [up, down, cap]
    elif key.type == list[float]:
        fits = fits and key.range.holds(0.7) and key.range.holds(3.0)  # every value in range (attack.eps)
    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):
        out = Path(d) / "out" / "prepared.jsonl"
        argv = ["prepare", "--data", str(PKG_DATA / "tiny_safety.jsonl"), "--out", str(out), ov]
        with contextlib.redirect_stderr(io.StringIO()) as err:
            rc = main(argv)
        if not fits:
            event("rejected")
            assert rc == 2 and err.getvalue().count("\n") == 1 and item in err.getvalue(), err.getvalue()
            assert not out.parent.exists()
            return
        event("accepted")
        assert rc == 0, err.getvalue()
        first = out.read_bytes()
        out.unlink()
        assert main(argv) == 0 and out.read_bytes() == first
