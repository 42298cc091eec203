import json

import pytest

from sea_align.config import load_config
from sea_align.runtime.io import DataError, atomic_path, read_jsonl


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: x\nsynthesize:\n  max_stepz: 3\n")
    with pytest.raises(DataError, match=r"unknown key 'synthesize.max_stepz'"):
        load_config(str(p))


def test_overrides_and_types(tmp_path):
    cfg = load_config("tiny", ["synthesize.max_steps=7", "align.text_only=true", "evaluate.bench=[a.jsonl]"])
    assert cfg.synthesize.max_steps == 7 and cfg.align.text_only is True and cfg.evaluate.bench == ["a.jsonl"]
    with pytest.raises(DataError, match="'synthesize.max_steps' must be an integer"):
        load_config("tiny", ["synthesize.max_steps=many"])
    with pytest.raises(DataError, match="'modality' must be image, video or audio"):
        load_config("tiny", ["modality=smell"])


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"instruction": "a", "response": "b"}\n{"instruction": \n')
    with pytest.raises(DataError, match=r"d.jsonl:2: malformed JSON"):
        read_jsonl(p, required=("instruction",))


def test_missing_field_and_empty(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"instruction": "a"}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: missing field 'response'"):
        read_jsonl(p, required=("instruction", "response"))
    e = tmp_path / "e.jsonl"
    e.write_text("\n")
    with pytest.raises(DataError, match="empty data set"):
        read_jsonl(e)


def test_invalid_utf8(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"instruction": "\xff"}\n')
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_jsonl(p)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
