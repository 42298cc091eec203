"""Every number in the config has a range, declared beside its field and checked when the config loads:
a value just outside it is one line naming the key, the value and the range (exit 2 on the command line),
before any model loads and before any file is written. The keys are read from the config itself, so a new
numeric key without a range fails here."""

import json
import subprocess
import sys

import pytest

from sea_align.config import BenchSpec, config_keys
from sea_align.config_keys import Range
from sea_align.config_load import load_config
from sea_align.runtime.io import DataError

NUMERIC = (int, float, list[float])


def numeric_keys():
    """(dotted key, Key) of every number (and list of numbers) in RunConfig and in an `evaluate.build` item."""
    keys = [(k.name, k) for k in config_keys() if k.type in NUMERIC]
    return keys + [(k.name, k) for k in config_keys(BenchSpec, "evaluate.build[].") if k.type in NUMERIC]


def _override(name: str, value) -> str:
    if name.startswith("evaluate.build[]."):
        return f"evaluate.build=[{json.dumps({name.rsplit('.', 1)[1]: value})}]"
    return f"{name}={json.dumps(value)}"


def just_outside(key) -> list:
    """Values just past each declared bound (an int's next integer; a float's bound itself when open)."""
    rng, out = key.range, []
    step = 1 if key.type is int else 1e-6
    if rng.lo is not None:
        out.append(rng.lo if rng.lo_open else rng.lo - step)
    if rng.hi is not None:
        out.append(rng.hi if rng.hi_open else rng.hi + step)
    return [key.type(v) if key.type is int else v for v in out]


def just_inside(key) -> list:
    rng, step = key.range, 1 if key.type is int else 1e-6
    out = [] if rng.lo is None else [rng.lo + step if rng.lo_open else rng.lo]
    out += [] if rng.hi is None else [rng.hi - step if rng.hi_open else rng.hi]
    return [key.type(v) if key.type is int else v for v in out]


def test_every_numeric_key_declares_a_range():
    missing = [name for name, key in numeric_keys() if not isinstance(key.range, Range)]
    assert not missing, f"numeric config keys without a range (opt(..., ge=/gt=/le=/lt=)): {missing}"
    assert len(numeric_keys()) >= 35


@pytest.mark.parametrize("name,key", numeric_keys(), ids=[n for n, _ in numeric_keys()])
def test_a_value_just_outside_the_range_is_one_line_naming_key_value_and_range(name, key):
    for value in just_outside(key):
        given = [value, 0.7, 3.0] if key.type == list[float] else value  # lr_adapt: one bad item
        with pytest.raises(DataError) as e:
            load_config(None, [_override(name, given)])
        msg = str(e.value)
        shown = name.replace("[]", "[0]").split("[0].")[-1]
        assert shown in msg and str(key.range) in msg and repr(value)[:6] in msg and "\n" not in msg, msg
    for value in just_inside(key):
        if key.type == list[float]:
            continue  # lr_adapt's items also have an order ([up, down, cap]): covered below
        load_config(None, [_override(name, value)])


def test_lr_adapt_shape():
    load_config(None, ["synthesize.experimental.lr_adapt=[1.1, 0.7, 3.0]"])
    with pytest.raises(DataError, match=r"'synthesize.experimental.lr_adapt' must be \[up >= 1, down < 1, cap >= up\]"):
        load_config(None, ["synthesize.experimental.lr_adapt=[0.7, 1.1, 3.0]"])


def test_every_preset_is_in_range():
    from sea_align.config_load import PRESET_DIR

    for preset in sorted(PRESET_DIR.glob("*.yaml")):
        load_config(str(preset))


@pytest.mark.parametrize(
    "override,needle",
    [
        ("align.epochs=-1", "'align.epochs' must be >= 1, got -1"),
        ("align.batch_size=0", "'align.batch_size' must be >= 1, got 0"),
        ("align.lora_r=0", "'align.lora_r' must be >= 1, got 0"),
        ("prepare.limit=-3", "'prepare.limit' must be >= 0, got -3"),
    ],
)
def test_cli_out_of_range_exits_2_before_any_model_or_file(tmp_path, override, needle):
    out = tmp_path / "run"
    code = (
        "import sys; from sea_align.cli import main; rc = main(sys.argv[1:]); "
        "print('torch' in sys.modules, 'transformers' in sys.modules); sys.exit(rc)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, "run", "--config", "default", "--out", str(out), override],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr == f"sea: error: config: {needle}\n", r.stderr
    assert r.stdout.split() == ["False", "False"]  # no model code was imported
    assert not out.exists() and list(tmp_path.iterdir()) == []
