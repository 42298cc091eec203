"""Files and folders the tool writes get the umask's mode, like any other tool's output: not mkstemp's 0600
or mkdtemp's 0700, which would leave a team's shared adapters, reports and samples unreadable by the group."""

import json
import os
import stat
import subprocess
import sys

import pytest

from sea_align.runtime import io as io_mod
from sea_align.runtime.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, default_mode, umask
from sea_align.sources import fetch as F
from sea_align.tools.export import run_export

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def set_umask():
    """set_umask(mask): the process's umask for this test; the old one is put back after it."""
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield os.umask
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


WRITERS = {
    "text": lambda p: atomic_write_text(p, "hello\n"),
    "json": lambda p: atomic_write_json(p, {"a": 1}),
    "jsonl": lambda p: atomic_write_jsonl(p, [{"a": 1}, {"b": 2}]),
}


@pytest.mark.parametrize("mask,want", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=oct)
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_atomic_writes_get_the_umasks_mode(tmp_path, set_umask, kind, mask, want):
    set_umask(mask)
    path = tmp_path / f"out.{kind}"
    WRITERS[kind](path)
    assert mode(path) == want
    WRITERS[kind](path)  # replacing an existing file: same mode
    assert mode(path) == want
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left beside it


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o027], ids=oct)
def test_umask_is_read_without_changing_it(set_umask, monkeypatch, mask):
    set_umask(mask)
    assert umask() == mask
    assert default_mode() == 0o666 & ~mask and default_mode(is_dir=True) == 0o777 & ~mask

    def no_proc(*a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr(io_mod, "open", no_proc, raising=False)  # the fallback: set and restore
    assert umask() == mask
    assert os.umask(mask) == mask  # ... and it was left as it was


def _fake_adapter(root):
    root.mkdir()
    (root / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (root / "adapter_model.safetensors").write_bytes(b"not read by an unmerged export")
    return root


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)], ids=oct)
def test_export_folder_gets_the_umasks_mode(tmp_path, set_umask, mask, file_mode, dir_mode):
    adapter = _fake_adapter(tmp_path / "adapter")
    set_umask(mask)
    out = run_export("tiny-random-llava", adapter, tmp_path / "exp")
    assert mode(out) == dir_mode
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    assert {p.name: mode(p) for p in files} == {p.name: file_mode for p in files}


def test_fetched_folder_gets_the_umasks_mode(tmp_path, set_umask):
    rel = tmp_path / "rel"
    for path in F.VA_SHA256:
        (rel / path).parent.mkdir(parents=True, exist_ok=True)
        (rel / path).write_text(json.dumps({"0": {"Text_only": "x", "TYPO": "y"}}))
    set_umask(0o022)
    out = F.fetch("va-safetybench", tmp_path / "got" / "va", url=rel.as_uri())
    for p in [out, *out.rglob("*")]:
        assert mode(p) == (0o755 if p.is_dir() else 0o644), p


def _sea(*args):
    """The CLI in a subprocess under umask 022 (the child's own from the start)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "sea_align.cli", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, umask=0o022)
    assert r.returncode == 0, r.stderr[-2000:]


def test_tiny_run_output_is_readable_by_group_and_others(tmp_path):
    """`sea run --config tiny`, then a merged `sea export` of its adapter (transformers' save_pretrained)
    into the run folder, under umask 022: every file is group- and world-readable, every folder group-
    and world-listable."""
    out = tmp_path / "run"
    _sea("run", "--config", "tiny", "--out", str(out), "--quiet")
    _sea("export", "--adapter", str(out / "adapter"), "--out", str(out / "merged"), "--merge", "--device", "cpu")
    assert (out / "merged" / "config.json").is_file() and list((out / "merged").glob("*.safetensors"))
    files, dirs, bad = 0, 0, []
    for root, _dirs, filenames in os.walk(out):
        dirs += 1
        if mode(root) & 0o055 != 0o055:
            bad.append(f"{root}/ {oct(mode(root))}")
        for name in filenames:
            files += 1
            p = os.path.join(root, name)
            if mode(p) & 0o044 != 0o044:
                bad.append(f"{p} {oct(mode(p))}")
    assert files > 10 and dirs > 3  # the run wrote its outputs (adapter, embeddings, evals, report)
    assert not bad, "\n".join(bad)
