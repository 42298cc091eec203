"""The recipes' runner: their stages in order from an explicit table, each resumable, and the pieces
both recipes share (config from overrides, the LLM folder, pins, file hashes).

A stage is `fn(cfg, resume: bool) -> dict` (a JSON-able summary). It writes its outputs under
`cfg.work_dir` and, for trained parts, under `cfg.weights_dir`; a finished stage leaves
`<work_dir>/<stage>.done.json` and is skipped while `resume`; its light checkpoints under
`<weights_dir>/ckpt/` are deleted (its outputs replace them); `<weights_dir>/recipe.json` pins the
config, the stages' summaries and the versions after every stage."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from sea_align.runtime.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)
Stage = Callable[[Any, bool], dict]


def make_config(cls: type, name: str, out_dir: str | Path | None, overrides: dict[str, Any]):
    """`cls(name=name, **overrides)` with `out_dir` as its weights_dir; an unknown key is a ValueError."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{name}: unknown recipe option(s) {', '.join(unknown)}")
    cfg = cls(**{**overrides, "name": name})
    if out_dir is not None:
        cfg.weights_dir = Path(out_dir)
    cfg.work_dir, cfg.weights_dir = Path(cfg.work_dir), Path(cfg.weights_dir)
    return cfg


def run_stages(
    cfg, table: dict[str, Stage], stages: list[str] | None, resume: bool, pins: Callable[[Any, dict], dict]
) -> dict:
    """Run `stages` (default: all of `table`, in its order); returns every stage's summary so far."""
    import torch

    for stage in stages or []:
        if stage not in table:
            raise ValueError(f"unknown stage {stage!r}; stages of {cfg.name}: {', '.join(table)}")
    torch.set_num_threads(cfg.threads)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    pins_file = cfg.weights_dir / "recipe.json"
    results = json.loads(pins_file.read_text())["stages"] if pins_file.exists() else {}
    for stage in stages or list(table):
        done = cfg.work_dir / f"{stage}.done.json"
        if resume and done.exists():
            log.info("stage %s already done, skipping", stage)
            continue
        res = table[stage](cfg, resume)
        atomic_write_json(done, res)
        for f in (cfg.weights_dir / "ckpt").glob(f"{stage}.*"):
            f.unlink()
        results[stage] = res
        atomic_write_text(pins_file, json.dumps(pins(cfg, results), indent=1))
    ck = cfg.weights_dir / "ckpt"
    if ck.is_dir() and not any(ck.iterdir()):
        ck.rmdir()
    return results


def base_pins(cfg, version: str, results: dict) -> dict:
    """What both recipes pin: version, seed, config (without machine paths), stage summaries, LLM, versions."""
    import torch
    import transformers

    return {
        "recipe_version": version,
        "name": cfg.name,
        "seed": cfg.seed,
        "config": {
            k: _portable(v) if isinstance(v, Path) else v
            for k, v in asdict(cfg).items()
            if k not in ("work_dir", "weights_dir", "llm_dir")
        },
        "stages": results,
        "llm": _base(cfg).about,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": sys.version.split()[0],
        },
    }


def _portable(p: Path) -> str:
    """A path as recipe.json (committed) keeps it: relative as given, an absolute one as folder/file only."""
    return f"{p.parent.name}/{p.name}" if p.is_absolute() else str(p)


def _base(cfg):
    from sea_align.organism.bases import BASES

    return BASES[getattr(cfg, "base", "smollm2-135m")]


def llm_dir(cfg) -> Path:
    """The LLM folder: `cfg.llm_dir`, else the base's LLM from the local cache (converted once)."""
    if cfg.llm_dir is not None:
        return Path(cfg.llm_dir)
    from sea_align.organism.bases import base_llm_dir

    return base_llm_dir(_base(cfg))


def read_pins(weights_dir: Path) -> dict:
    """`<weights_dir>/recipe.json` (the pins `run_stages` writes), or {} before the first stage."""
    f = Path(weights_dir) / "recipe.json"
    return json.loads(f.read_text()) if f.exists() else {}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
