"""`sea run --plan`: what a run will do and what it needs, before any model loads.

- The work: rows used of the safety set, benign answers to distil, embeddings to make, alignment steps
  (estimated from the row counts: the exact count depends on the templates drawn) and evaluation items
  (counted by the benchmark builders without rendering anything).
- The memory: the model's parameters (from its safetensors headers, or the built-ins' recorded counts), its
  weights in the run's dtype against what the device has. `sea run` stops before loading when the
  weights alone cannot fit (`check_memory`).
- The time: the measured rates of data/rates.json (per built-in, device and dtype), scaled by parameter
  count from the nearest measured size on the same kind of device. No rate is recorded for GPUs yet, so
  there the plan gives no time rather than a guess.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sea_align.config import RunConfig
from sea_align.runtime.io import DataError, read_jsonl
from sea_align.runtime.modelsize import device_memory, param_count, rates

GiB = 1024**3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _device_class(device: str) -> str:
    if device != "cpu":
        return device.split(":")[0]
    from sea_align.runtime.device import bf16_native

    return "cpu" if bf16_native("cpu") == "bf16" else "cpu-avx2"


def stage_rates(model: str, params: int | None, modality: str, device: str) -> tuple[dict[str, float] | None, str]:
    """Seconds per embedding / align step / evaluation item / distilled row for this model on this device,
    and where they come from; (None, why) when nothing measured applies."""
    table = rates()
    kind = _device_class(device)
    rows = [r for r in table["rates"] if r["device"] == kind.removesuffix("-avx2")]
    if not rows:
        return None, f"no rate measured on {kind} yet"
    same = [r for r in rows if r["model"] == model]
    if same:
        r, scale, how = same[0], 1.0, f"measured for {model}"
    elif params:
        pool = [r for r in rows if r["modality"] == modality] or rows
        r = min(pool, key=lambda r: abs(math.log(r["params"] / params)))
        scale, how = params / r["params"], f"scaled by size from {r['model']}"
    else:
        return None, "the model's size is unknown"
    if kind == "cpu-avx2":
        scale *= table["avx2_factor"]
        how += f", x{table['avx2_factor']} for a CPU without native bf16"
    keys = ("s_per_embedding", "s_per_align_step", "s_per_eval_item", "s_per_distill_row")
    out = {k: r[k] * scale for k in keys}
    if same and "s_per_embedding_stop_content" in r:  # stop_on=content: how soon it stops is the model's own
        out["s_per_embedding_stop_content"] = r["s_per_embedding_stop_content"] * scale
    out["eval_max_new_tokens"] = r["eval_max_new_tokens"]
    return out, f"{how} ({r['machine']}, {r['date']})"


def _rows(cfg: RunConfig) -> tuple[int, int]:
    """(harmful, benign) rows of the safety set, before limits."""
    from sea_align.sources.named import NAMED, named_rows
    from sea_align.sources.registry import read_safety_set

    if cfg.data in NAMED:
        rows = named_rows(cfg.data)
        return sum(bool(r.get("harmful", True)) for r in rows), sum(not r.get("harmful", True) for r in rows)
    rows = read_safety_set(cfg.data, cfg.prepare.format, cfg.prepare.label)
    h = sum(r.get("harmful") is not False for r in rows)
    return h, len(rows) - h


def _bench_items(cfg: RunConfig) -> list[tuple[str, int]]:
    from sea_align.benchmarks.build import configured_source, count_items

    out = [(Path(b).name, len(read_jsonl(b))) for b in cfg.evaluate.bench]
    for k, spec in enumerate(cfg.evaluate.build):
        src, _ = configured_source(spec, k)
        n = count_items(spec.name, src, spec.limit, spec.seed, list(spec.types) or None, spec.format)
        out.append((spec.name + "".join(f"-{t}" for t in spec.types), n))
    if cfg.evaluate.limit:
        out = [(name, min(n, cfg.evaluate.limit)) for name, n in out]
    return out


@dataclass
class Plan:
    model: str
    device: str
    dtype: str
    params: int | None
    params_from: str
    memory: int | None
    memory_what: str
    work: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    rates_from: str = ""

    @property
    def weights(self) -> int | None:
        return self.params * BYTES.get(self.dtype, 4) if self.params else None


def make_plan(cfg: RunConfig) -> Plan:
    """What `sea run` with `cfg` will do, its memory and its time, without loading the model."""
    from sea_align.runtime.device import choose

    device, dtype = choose(cfg.device, cfg.dtype, model=cfg.model)
    params, params_from = param_count(cfg.model)
    memory, what = device_memory(device)
    p = Plan(cfg.model, device, dtype, params, params_from, memory, what)
    h_all, b_all = _rows(cfg)
    h = min(h_all, cfg.prepare.limit) if cfg.prepare.limit else h_all
    nb = cfg.prepare.limit if cfg.prepare.benign_limit < 0 else cfg.prepare.benign_limit
    b = min(b_all, nb) if nb else b_all
    chosen = cfg.selected_arms()
    n = (h + b) * (1 + cfg.prepare.whole_request + cfg.prepare.figstep) if "aligned" in chosen else 0
    a = cfg.align
    # each row with its embedding, typed, and with its template variants (~0.9 of `templates` are drawn, as
    # measured: 228 examples from 24 + 24 rows with 3 templates, 280 from the same with whole-request rows)
    n_train = n + round((h + b) * (1 + 0.9 * a.templates) + h * a.reading)
    steps = math.ceil(n_train / a.batch_size) * a.epochs if "aligned" in chosen else 0
    text_steps = math.ceil((h + b) / a.batch_size) * a.epochs if "text_only" in chosen else 0
    benches = _bench_items(cfg)
    arms = len(chosen)
    items = sum(k for _, k in benches) * arms
    p.work = {
        "rows": (h, h_all, b, b_all),
        "distill": b if cfg.distill.enabled else 0,
        "embeddings": n,
        "align_steps": steps,
        "text_steps": text_steps,
        "benches": benches,
        "arms": arms,
        "items": items,
    }
    r, p.rates_from = stage_rates(cfg.model, params, cfg.modality, device)
    if r:
        gen = cfg.evaluate.max_new_tokens / r["eval_max_new_tokens"]
        per_embedding = r["s_per_embedding"]
        if cfg.synthesize.experimental.stop_on == "content":
            # a sample stops once its content pair is reproduced: how soon depends on the model, so only a rate
            # measured with it counts; otherwise the full-budget rate is an upper bound
            measured = r.get("s_per_embedding_stop_content")
            per_embedding = measured or per_embedding
            p.work["synth_note"] = (
                "stop_on=content, its measured rate"
                if measured
                else "stop_on=content: an upper bound, no rate measured with it for this model"
            )
        p.seconds = {
            "distill": p.work["distill"] * r["s_per_distill_row"] * cfg.distill.max_new_tokens / 64,
            "synthesize": n * per_embedding,
            "align": (steps + text_steps) * r["s_per_align_step"],
            "evaluate": items * r["s_per_eval_item"] * gen,
        }
    return p


def _hm(s: float) -> str:
    m = round(s / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{max(m, 1)} min"


def render(p: Plan) -> str:
    w = p.work
    h, h_all, b, b_all = w["rows"]
    gib = lambda x: f"{x / GiB:.1f} GiB"  # noqa: E731
    lines = [
        f"model {p.model} on {p.device} in {p.dtype}",
        f"  size: {f'{p.params / 1e9:.2f}B parameters' if p.params else 'unknown'} ({p.params_from})",
        f"  memory: weights {gib(p.weights) if p.weights else 'unknown'}"
        + (f" of the {p.memory_what}'s {gib(p.memory)}" if p.memory else "")
        + ("" if not (p.weights and p.memory) else "  (does not fit)" if p.weights > p.memory else "  (fits)"),
        f"prepare:    {h} of {h_all} harmful rows, {b} of {b_all} benign rows",
        f"distill:    {w['distill']} benign answers" if w["distill"] else "distill:    off",
        f"synthesize: {w['embeddings']} embeddings" + (f" ({w['synth_note']})" if w.get("synth_note") else ""),
        f"align:      about {w['align_steps']} steps (SEA)"
        + (f" + {w['text_steps']} (text-only)" if w["text_steps"] else ""),
        f"evaluate:   {w['items']} items ({w['arms']} arm{'s' if w['arms'] > 1 else ''} x {w['items'] // w['arms']}): "
        + ", ".join(f"{name} {k}" for name, k in w["benches"]),
    ]
    if p.seconds:
        lines.append(
            "time:       about " + _hm(sum(p.seconds.values())) + " ("
            + ", ".join(f"{k} {_hm(v)}" for k, v in p.seconds.items() if v) + f"; rates {p.rates_from})"
        )  # fmt: skip
    else:
        lines.append(f"time:       no estimate ({p.rates_from})")
    return "\n".join(lines)


def check_memory(cfg: RunConfig, device: str, dtype: str) -> None:
    """One line, before any model loads, when the model's weights alone exceed what the device has."""
    try:
        params, _ = param_count(cfg.model)
    except (OSError, ValueError, KeyError, struct.error):  # an unreadable header: loading will say what is wrong
        return
    memory, what = device_memory(device)
    if not params or not memory or cfg.evaluate.device_map == "auto":
        return
    need = params * BYTES.get(dtype, 4)
    if need > memory:
        raise DataError(
            f"{cfg.model}: its weights take {need / GiB:.1f} GiB in {dtype}, more than the {what}'s "
            f"{memory / GiB:.1f} GiB on {device} (try dtype=bfloat16, a larger device or evaluate.device_map=auto)"
        )
