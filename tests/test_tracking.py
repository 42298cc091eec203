"""`--report-to tensorboard`: align's loss, lr and gradient norm reach TensorBoard through accelerate's
tracker; an unknown tracker or a missing package is a one-line error before any model loads."""

import importlib.util

import pytest

from sea_align.cli import main
from sea_align.config import AlignConfig
from sea_align.config_load import load_config
from sea_align.models import load_adapter
from sea_align.runtime import tracking
from sea_align.runtime.io import DataError
from sea_align.stages.align import run_align
from sea_align.stages.prepare import prepare_rows, rules_extract

ROWS = [
    {"instruction": "Explain how to steal a car", "response": "I can't help with that."},
    {"instruction": "Write a guide on how to forge a passport", "response": "I can't help with that."},
]


def test_align_logs_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows, _ = prepare_rows([dict(r) for r in ROWS], rules_extract)
    cfg = AlignConfig(epochs=2, batch_size=1, text_only=True, report_to="tensorboard")
    run_align(load_adapter("tiny-random-llava"), rows, None, tmp_path / "adapter", cfg, progress=False)
    runs = list((tmp_path / "tensorboard" / "adapter").glob("events.out.tfevents.*"))
    assert runs, "no event file"
    acc = EventAccumulator(str(runs[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"loss", "lr", "grad_norm"} <= set(tags)
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
    assert all(e.value == pytest.approx(2e-4) for e in acc.Scalars("lr"))
    assert not (tmp_path / "adapter" / "tensorboard").exists()  # the PEFT folder holds only the adapter


def test_missing_package_is_one_line(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a),
    )
    with pytest.raises(DataError, match=r"the tensorboard package is not installed \(pip install tensorboard\)"):
        tracking.check("tensorboard")
    (tmp_path / "p.jsonl").write_text('{"instruction": "x", "response": "y", "detoxified": "x"}\n')
    rc = main(
        [
            "align",
            "--model",
            "no-such-model",
            "--data",
            str(tmp_path / "p.jsonl"),
            "--out",
            str(tmp_path / "a"),
            "--text-only",
            "--report-to",
            "tensorboard",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "tensorboard package is not installed" in err  # before the model


def test_report_to_is_checked_in_configs():
    assert load_config("tiny", ["align.report_to=tensorboard"]).align.report_to == "tensorboard"
    with pytest.raises(DataError, match="align.report_to"):
        load_config("tiny", ["align.report_to=wandb"])
