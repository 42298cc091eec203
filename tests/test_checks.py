"""runtime/checks.py: `refuse_overwrite` refuses an output that is an input, contains one, or lies inside an
input folder; anything else passes."""

import pytest

from sea_align.runtime.checks import refuse_overwrite
from sea_align.runtime.io import DataError


def test_refuse_overwrite(tmp_path, monkeypatch):
    data = tmp_path / "in" / "set.jsonl"
    data.parent.mkdir()
    data.write_text("{}\n")
    media = tmp_path / "media"
    media.mkdir()
    monkeypatch.chdir(tmp_path)
    for out, why in (
        ("in/set.jsonl", "is the input"),  # the same file, spelt differently
        (tmp_path / "in" / ".." / "in" / "set.jsonl", "is the input"),
        (tmp_path / "in", "contains the input"),  # a folder output holding an input file
        (tmp_path, "contains the input"),
        (media / "bench", "inside the input"),  # written into an input folder
    ):
        with pytest.raises(DataError, match=f"--out {out}: .*{why}") as e:
            refuse_overwrite(out, data, None, "", media, what="--out")
        assert "\n" not in str(e.value)
    link = tmp_path / "alias.jsonl"
    link.symlink_to(data)
    with pytest.raises(DataError, match="is the input"):
        refuse_overwrite(link, data)
    for out in (tmp_path / "out", tmp_path / "in2" / "set.jsonl", tmp_path / "mediabench"):
        refuse_overwrite(out, data, media)  # siblings, a name that only starts like an input: fine
    refuse_overwrite(tmp_path / "out")  # no inputs
