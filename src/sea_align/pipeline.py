"""`sea run`: prepare -> synthesize -> align -> evaluate (base and aligned) -> report, in one run
directory, resumable: a stage whose output exists and was made under the same settings is not redone
(`fingerprints.json`, runtime/fingerprint.py: other settings make it and the stages that read it run
again, with one line naming the change). Writes `config.yaml` (resolved) and `manifest.json` (seed,
versions, git SHA, decoding, hardware, time per stage)."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from sea_align.config import RunConfig, to_dict
from sea_align.runtime.fingerprint import Fingerprints, digest, file_digest, flat
from sea_align.runtime.io import DataError, atomic_write_json, atomic_write_text, read_jsonl, read_jsonl_tolerant

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    import importlib.metadata

    out = {"python": platform.python_version()}
    for pkg in ("sea-align", "torch", "transformers", "peft", "accelerate", "safetensors"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def git_sha() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def hardware() -> dict[str, Any]:
    import torch

    hw = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


class Manifest:
    def __init__(self, out: Path, cfg: RunConfig):
        self.path = out / "manifest.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"stages": {}}
        self.data.update(
            {
                "seed": cfg.seed,
                "versions": versions(),
                "git_sha": git_sha(),
                "hardware": hardware(),
                "model": cfg.model,
                "modality": cfg.modality,
                "decoding": {"do_sample": False, "max_new_tokens": cfg.evaluate.max_new_tokens},
            }
        )

    def stage(self, name: str, t0: float, **info: Any) -> None:
        """Stage `name` done: its seconds since `t0` (`time.perf_counter()` at its start) and `info`."""
        self.data["stages"][name] = {"seconds": round(time.perf_counter() - t0, 2), **info}
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def _load(cfg: RunConfig, adapter_dir: str | None = None, device_map: str = ""):
    from sea_align.models import load_adapter

    return load_adapter(
        cfg.model,
        dtype=cfg.dtype,
        adapter_dir=adapter_dir,
        modality=cfg.modality,
        device=cfg.device,
        device_map=device_map or None,
    )


def _evaluate_arm(
    cfg: RunConfig, name: str, adapter_dir: Path | None, benches: list[str], edir: Path, man: Manifest, progress: bool
) -> None:
    from sea_align.stages.evaluate import run_evaluate

    ev = cfg.evaluate
    t = time.perf_counter()
    ad = _load(cfg, str(adapter_dir) if adapter_dir else None, device_map=ev.device_map)
    info = {
        "seed": cfg.seed,
        "model": cfg.model,
        "note": cfg.note,
        "adapter": str(adapter_dir) if adapter_dir else None,
    }
    if ad.builtin_info:
        info["builtin"] = ad.builtin_info
    res = run_evaluate(ad, benches, edir, ev, info=info, progress=progress)
    man.stage(f"evaluate_{name}", t, asr=res.summary["asr"], over_refusal=res.summary["refusal_rate_harmless"])


def teacher_of(cfg: RunConfig) -> str:
    """The model whose answers become the benign targets: `distill.teacher` when set ("self" = the run's
    model); else the built-in's own teacher where it has one (a built-in whose text safety is a LoRA of ours
    answers with its LLM from before that stage), else the run's model itself: a user's own model is its
    own teacher, whichever preset they start from."""
    from sea_align.models.registry import builtin_teacher

    t = cfg.distill.teacher
    if t == "self":
        return cfg.model
    return t or builtin_teacher(cfg.model) or cfg.model


def _distill(cfg: RunConfig, teacher: str, rows: list[dict[str, Any]], path: Path, man: Manifest, progress: bool):
    """Benign targets = the teacher's own answers (docs/stages.md, distill); generated once, resumable."""
    from sea_align.stages.distill import apply, run_distill

    have = {d["id"] for d in read_jsonl_tolerant(path)}
    if any(not r.get("harmful", True) and (r.get("base_id") or r["id"]) not in have for r in rows):
        t = time.perf_counter()
        from sea_align.models import load_adapter

        ad = load_adapter(teacher, dtype=cfg.dtype, device=cfg.device)
        res = run_distill(ad, rows, path, cfg.distill, teacher_name=teacher, progress=progress)
        man.stage("distill", t, n=res.n, refused_by_teacher=res.n_refused, dropped=res.n_dropped, teacher=teacher)
    return apply(rows, path)


def run_pipeline(cfg: RunConfig, out: str | Path, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """All stages into `out`. `command` (the command line, if any) goes into manifest.json and model cards."""
    import torch

    from sea_align.benchmarks.build import build_configured_benches
    from sea_align.report import run_report
    from sea_align.stages.records import read_prepared

    out = Path(out)
    device, dtype = _preflight(cfg)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    man = Manifest(out, cfg)
    man.data.update(device=device, dtype=dtype, **({"command": command} if command else {}))
    man.save()
    fp = Fingerprints(out, defaults=flat(to_dict(type(cfg)())))
    benches = build_configured_benches(cfg, out / "bench", fp)
    fp.claim("prepare", _prepare_settings(cfg, benches), [out / n for n in PREPARE_OUTPUTS])
    _prepare(cfg, out / "prepared.jsonl", benches, man)
    rows = read_prepared(out / "prepared.jsonl", cfg.modality)  # a resumed run's file: errors name its line
    common = {"model": cfg.model, "modality": cfg.modality, "dtype": dtype, "seed": cfg.seed}
    if cfg.distill.enabled:
        teacher = teacher_of(cfg)
        settings = {**_settings(fp, common, "distill", cfg.distill, "prepare"), "distill.teacher": teacher}
        fp.claim("distill", settings, [out / "distilled.jsonl"])
        rows = _distill(cfg, teacher, rows, out / "distilled.jsonl", man, progress)
    if "aligned" in cfg.selected_arms():
        fp.claim("synthesize", _settings(fp, common, "synthesize", cfg.synthesize, "prepare"), [out / "embeddings"])
        _synthesize(cfg, rows, out / "embeddings", man, progress)
    _arms(cfg, out, rows, benches, man, progress, fp, common)
    t = time.perf_counter()
    run_report(out)
    man.stage("report", t)
    return man.data


def _preflight(cfg: RunConfig) -> tuple[str, str]:
    """What can fail before any work, fails now: no data, an unavailable device (returns the chosen
    (device, dtype)), configured benchmark data that is missing with no fallback, a tracker not installed."""
    from sea_align.benchmarks.build import configured_source
    from sea_align.plan import check_memory
    from sea_align.runtime.device import choose
    from sea_align.runtime.tracking import check

    if not cfg.model:
        raise DataError("config: 'model' is required (your model's directory or hub id: model=DIR)")
    if not cfg.data:
        raise DataError("config: 'data' (the text safety set) is required")
    device, dtype = choose(cfg.device, cfg.dtype, model=cfg.model)
    check_memory(cfg, device, dtype)
    for k, spec in enumerate(cfg.evaluate.build):
        if not spec.fallback:
            configured_source(spec, k)
    check(cfg.align.report_to)
    return device, dtype


def _prepare(cfg: RunConfig, prepared: Path, benches: list[str], man: Manifest) -> None:
    """prepared.jsonl, unless there; a named set is materialised disjoint from this run's evaluation phrases."""
    from sea_align.sources.named import NAMED, materialise
    from sea_align.stages.answer_check import describe
    from sea_align.stages.prepare import answer_judge, answer_judge_arg, run_prepare

    if prepared.is_file():
        return
    t = time.perf_counter()
    data, dropped, pcfg = cfg.data, 0, cfg.prepare
    if data in NAMED:
        held = [r.get("key_phrase", "") for b in benches for r in read_jsonl(b)]
        data, dropped = materialise(data, prepared.parent / "safety_set.jsonl", held)
        pcfg = replace(cfg.prepare, format="sea")  # materialised as our own JSONL
    res = run_prepare(data, prepared, pcfg, judge=answer_judge(cfg), judge_arg=answer_judge_arg(cfg))
    for level, line in describe(res.checks):
        log.log(level, "prepare: %s", line)
    left_out = res.checks["left_out"]
    man.stage(
        "prepare",
        t,
        n=res.n,
        n_harmful=res.n_harmful,
        n_benign=res.n_benign,
        dropped_overlapping_eval=dropped,
        left_out=left_out,
        unsafe_allowed=res.checks["unsafe_allowed"],
    )


PREPARE_OUTPUTS = ("prepared.jsonl", "prepared.checks.json", "prepared.left_out.jsonl", "safety_set.jsonl")


def _after(fp: Fingerprints, *stages: str) -> dict[str, str]:
    """The digests of the stages a stage reads (a stage made again makes its readers run again)."""
    return {f"after.{s}": fp.digest_of(s) for s in stages if fp.digest_of(s)}


def _settings(fp: Fingerprints, common: dict[str, Any], section: str, cfg: Any, *reads: str) -> dict[str, Any]:
    """A stage's fingerprint settings: the run's common ones, the digests of the stages it reads, its section."""
    return {**common, **_after(fp, *reads), **flat(to_dict(cfg), f"{section}.")}


def _prepare_settings(cfg: RunConfig, benches: list[str]) -> dict[str, Any]:
    """What shapes prepared.jsonl: the data (a file's digest too), the prepare settings, the answer check's
    judge and, for a named set, the evaluation phrases it is kept disjoint from."""
    from sea_align.sources.named import NAMED
    from sea_align.stages.prepare import answer_judge, answer_judge_arg

    s = {"data": cfg.data, "data.sha256": file_digest(cfg.data), "modality": cfg.modality, "seed": cfg.seed}
    s.update(flat(to_dict(cfg.prepare), "prepare."))
    s["prepare.answer_judge"] = answer_judge(cfg)
    s["prepare.answer_judge_arg"] = answer_judge_arg(cfg)
    if cfg.data in NAMED:
        s["held_out_phrases"] = digest({"p": sorted(r.get("key_phrase", "") for b in benches for r in read_jsonl(b))})
    return s


def _synthesize(cfg: RunConfig, rows: list[dict[str, Any]], emb: Path, man: Manifest, progress: bool) -> None:
    """The embeddings directory, unless done.json says it is complete."""
    from sea_align.stages.synthesize import run_synthesize

    if (emb / "done.json").is_file():
        return
    t = time.perf_counter()
    res = run_synthesize(_load(cfg), rows, emb, cfg.modality, cfg.synthesize, model_name=cfg.model, progress=progress)
    atomic_write_json(emb / "done.json", {"n": res.n, "verified": res.n_verified, "failed": res.n_failed})
    man.stage("synthesize", t, n=res.n, verified=res.n_verified, failed=res.n_failed)


def _arms(
    cfg: RunConfig,
    out: Path,
    rows: list[dict[str, Any]],
    benches: list[str],
    man: Manifest,
    progress: bool,
    fp: Fingerprints,
    common: dict[str, Any],
) -> None:
    """Each arm trained (unless its adapter is there) and evaluated (unless its summary is there): the base
    model, the SEA-aligned one and, with `align_text_baseline`, the text-only baseline (or those `arms` names)."""
    from sea_align.stages.align import run_align
    from sea_align.stages.evaluate import judge_changed
    from sea_align.stages.modelcard import refresh

    # arms, in order: (name, adapter dir, align config, embeddings, manifest stage of its training)
    every = [
        ("base", None, None, None, None),
        ("aligned", out / "adapter", cfg.align, out / "embeddings", "align"),
        ("text_only", out / "adapter_text", replace(cfg.align, text_only=True), None, "align_text_only"),
    ]
    chosen = cfg.selected_arms()
    arms = [a for a in every if a[0] in chosen]
    ev = {"evaluate.max_new_tokens": cfg.evaluate.max_new_tokens, "evaluate.limit": cfg.evaluate.limit}
    ev["benches"] = [fp.digest_of(f"bench:{Path(b).parent.name}") or file_digest(b) for b in benches]
    for name, adapter_dir, align_cfg, arm_emb, stage in arms:
        if adapter_dir:
            ups = ("prepare", "distill") + (("synthesize",) if arm_emb else ())
            settings = _settings(fp, common, "align", align_cfg, *ups)
            settings.pop("align.report_to", None)
            fp.claim(stage, settings, [adapter_dir, adapter_dir.with_name(adapter_dir.name + ".partial")])
        fp.claim(f"evaluate_{name}", {**common, **(_after(fp, stage) if stage else {}), **ev}, [out / "eval" / name])
        if adapter_dir and not (adapter_dir / "adapter_config.json").is_file():
            t = time.perf_counter()
            res = run_align(_load(cfg), rows, arm_emb, adapter_dir, align_cfg, progress=progress, base_model=cfg.model)
            man.stage(stage, t, n_train=res.n_train, method=res.method, final_loss=res.final_loss)
        if benches and (
            not (out / "eval" / name / "summary.json").is_file() or judge_changed(out / "eval" / name, cfg.evaluate)
        ):
            _evaluate_arm(cfg, name, adapter_dir, benches, out / "eval" / name, man, progress)
        if adapter_dir:
            refresh(adapter_dir)  # the adapter's README with this run's measured ASR and over-refusal
