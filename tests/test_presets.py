"""Presets inherit (`base: NAME`): each one resolves to the values recorded in
tests/fixtures/presets_resolved.json, which were made from the presets before they inherited and before the
research knobs moved under `experimental:` (the recorded trees are mapped through `RETIRED`: a moved key is
read at its new place, a removed key must hold its old default), so neither change can change a run."""

import json
from pathlib import Path

import pytest

from sea_align.config import to_dict
from sea_align.config_load import PRESET_DIR, RETIRED, load_config
from sea_align.runtime.io import DataError

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "presets_resolved.json").read_text(encoding="utf-8"))
REMOVED_DEFAULTS = {  # what each removed key was set to by default: a preset that set it otherwise used it
    "benign_data": "",
    "synthesize.check_every": 5,
    "align.lead": 0.0,
    "align.lead_tokens": 4,
    "align.echo": False,
    "align.text_view": False,
    "align.replay": 0,
}


RECORDED_AS_NOW = {
    "own-image",
    "own-video",
    "own-audio",
    "qwen-image-mix",
}  # recorded after the keys retired: already as now


def as_now(tree: dict) -> dict:
    """A recorded preset tree with the retired keys moved to their new place or (unused) dropped."""
    tree = json.loads(json.dumps(tree))
    for name, why in RETIRED.items():
        *path, leaf = name.split(".")
        node = tree
        for part in path:
            node = node[part]
        value = node.pop(leaf)
        if why.startswith("moved to "):
            *new_path, new_leaf = why.removeprefix("moved to ").split(".")
            node = tree
            for part in new_path:
                node = node.setdefault(part, {})
            node[new_leaf] = value
        else:
            assert value == REMOVED_DEFAULTS[name], f"a preset set the removed key {name}"
    return tree


RESOLVED = {name: tree if name in RECORDED_AS_NOW else as_now(tree) for name, tree in RECORDED.items()}


@pytest.fixture
def literal_paths(monkeypatch):
    """`${SEA_SHARED}` and `${SEA_PKG}` stay as written, so the recorded values hold on any machine."""
    monkeypatch.setenv("SEA_SHARED", "${SEA_SHARED}")
    monkeypatch.setenv("SEA_PKG", "${SEA_PKG}")


def test_every_retired_key_is_accounted_for():
    assert {k for k, why in RETIRED.items() if not why.startswith("moved to ")} == set(REMOVED_DEFAULTS)


def test_every_preset_is_recorded():
    assert sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) == sorted(RESOLVED)


@pytest.mark.parametrize("name", sorted(RESOLVED))
def test_preset_resolves_to_its_recorded_values(literal_paths, name):
    assert json.loads(json.dumps(to_dict(load_config(name)))) == RESOLVED[name]


def test_full_presets_hold_only_what_differs():
    for name, base in (("image-full", "default"), ("video-full", "video"), ("audio-full", "audio")):
        text = (PRESET_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        assert f"base: {base}" in text
        assert "align:" not in text and "synthesize:" not in text, name


def test_base_merges_sections_and_replaces_lists(tmp_path, literal_paths):
    (tmp_path / "a.yaml").write_text(
        "seed: 3\nalign: {epochs: 5, lr: 1.0e-4}\nevaluate: {build: [{name: text}, {name: benign-typo}]}\n"
    )
    (tmp_path / "b.yaml").write_text("base: a.yaml\nalign: {epochs: 2}\nevaluate: {build: [{name: benign-text}]}\n")
    cfg = load_config(str(tmp_path / "b.yaml"), ["align.batch_size=2"])
    assert (cfg.seed, cfg.align.epochs, cfg.align.lr, cfg.align.batch_size) == (3, 2, 1.0e-4, 2)
    assert [b.name for b in cfg.evaluate.build] == ["benign-text"]


def test_a_base_preset_by_name(tmp_path, literal_paths):
    (tmp_path / "mine.yaml").write_text("base: default\nmodel: my-model\n")
    cfg = to_dict(load_config(str(tmp_path / "mine.yaml")))
    assert cfg == {**RESOLVED["default"], "model": "my-model"}


def test_base_errors_are_one_line(tmp_path):
    (tmp_path / "x.yaml").write_text("base: y.yaml\n")
    (tmp_path / "y.yaml").write_text("base: x.yaml\n")
    with pytest.raises(DataError, match=r"'base' runs in a circle \(x.yaml -> y.yaml -> x.yaml\)"):
        load_config(str(tmp_path / "x.yaml"))
    (tmp_path / "m.yaml").write_text("base: nosuch\n")
    with pytest.raises(DataError, match=r"m.yaml: 'base': config: nosuch: no such file or preset"):
        load_config(str(tmp_path / "m.yaml"))
    (tmp_path / "n.yaml").write_text("base: [default]\n")
    with pytest.raises(DataError, match="'base' must name a preset"):
        load_config(str(tmp_path / "n.yaml"))
