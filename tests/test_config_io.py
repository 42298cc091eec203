import json
import re

import pytest

from sea_align.config_load import load_config
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


def test_docs_config_md_is_generated_from_the_dataclasses():
    """docs/config.md is what `python -m sea_align.cli.docs` writes: regenerate it when a config field changes."""
    from pathlib import Path

    from sea_align.cli.docs import render

    committed = (Path(__file__).parents[1] / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/config.md is stale: python -m sea_align.cli.docs > docs/config.md"


def _other_value(key):
    """A valid value of `key` that differs from its default."""
    from sea_align.judges import JUDGES

    special = {
        "device": "cpu",
        "evaluate.judge": next(j for j in sorted(JUDGES) if j != key.default),
        "evaluate.build": [{"name": "benign-text", "limit": 2}],
    }
    if key.name in special:
        return special[key.name]
    if key.choices() and key.type == list[str]:  # a list whose items are choices
        return [key.choices()[-1]]
    if key.choices():
        return next(c for c in reversed(key.choices()) if c != key.default)
    if key.type is bool:
        return not key.default
    if key.type in (int, float):
        value = key.type(key.default + 2)
        return value if key.range is None or key.range.holds(value) else key.type((key.range.lo + key.range.hi) / 2)
    return {str: "x", list[str]: ["x", "y"], list[float]: [1.5, 0.5, 3.0]}[key.type]


def test_every_config_entry_has_help_and_is_reachable():
    """Every entry (BenchSpec's included) has help text, and each can be set through YAML / key=value; the
    ones a stage command takes as an option are in docs/config.md with that option."""
    from sea_align.cli.docs import render
    from sea_align.config import BenchSpec, config_keys

    docs = render()
    for key in [*config_keys(), *config_keys(BenchSpec, "evaluate.build[].")]:
        assert key.help.strip(), key.name
        assert f"| `{key.name}` |" in docs, key.name
        if "[]" in key.name:
            name = key.name.rsplit(".", 1)[1]
            value = _other_value(key)
            cfg = load_config(None, [f"evaluate.build=[{json.dumps({name: value})}]"])
            assert getattr(cfg.evaluate.build[0], name) == value, key.name
            continue
        value = _other_value(key)
        cfg = load_config(None, [f"{key.name}={json.dumps(value)}"])
        node = cfg
        for part in key.name.split("."):
            node = getattr(node, part)
        if key.name == "evaluate.build":
            assert node[0] == BenchSpec(name="benign-text", limit=2)
        else:
            assert node == value and node != key.default, key.name


def test_fixed_choices_are_checked_when_the_config_loads():
    for override, needle in [
        ("synthesize.init=noise", "'synthesize.init' must be blank, text or media, got 'noise'"),
        ("evaluate.device_map=balanced", "'evaluate.device_map' must be '' or auto"),
        ("evaluate.build=[{format: nosuch}]", "'evaluate.build[0].format' must be one of ''"),
        ("align.report_to=wandb", "'align.report_to' must be '' or tensorboard"),
    ]:
        with pytest.raises(DataError, match=re.escape(needle)):
            load_config(None, [override])
