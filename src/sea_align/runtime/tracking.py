"""Experiment trackers for `align` (`align.report_to`, `--report-to`), through accelerate's tracker classes
(`accelerate.tracking`). Only the main process logs. `check` imports nothing heavy: the CLI calls it before
any model loads, so a tracker whose package is missing is a one-line error, not a traceback mid-run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from sea_align.runtime.io import DataError

# tracker -> the packages that provide it (accelerate's TensorBoard tracker takes torch.utils.tensorboard,
# which needs `tensorboard`, or else tensorboardX)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX")}
TRACKERS = tuple(PACKAGES)


def check(name: str) -> None:
    """'' (no tracker) or a known tracker whose package is installed; else a one-line DataError."""
    if not name:
        return
    if name not in PACKAGES:
        raise DataError(f"align.report_to: unknown tracker {name!r} (known: {', '.join(TRACKERS)}; '' = none)")
    if not any(importlib.util.find_spec(m) for m in PACKAGES[name]):
        raise DataError(
            f"align.report_to {name}: the {PACKAGES[name][0]} package is not installed "
            f"(pip install {PACKAGES[name][0]})"
        )


def logging_dir(adapter_dir: str | Path) -> Path:
    """The trackers' folder for an adapter: `<parent>/tensorboard`, each adapter's run in a sub-folder named
    after it (not inside the PEFT directory, which is renamed into place when training ends)."""
    return Path(adapter_dir).parent / "tensorboard"


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters as trackers take them: scalars and strings (lists become their text)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items()}


def open_tracker(name: str, adapter_dir: str | Path, config: dict[str, Any]) -> Any | None:
    """A started accelerate tracker logging under `logging_dir(adapter_dir)/<adapter name>`, or None."""
    check(name)
    if not name:
        return None
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    tracker = LOGGER_TYPE_TO_CLASS[name](Path(adapter_dir).name, str(logging_dir(adapter_dir)))
    tracker.start()
    tracker.store_init_configuration(_flat(config))
    return tracker
