"""Typed configs: one dataclass per stage, YAML presets, `key=value` overrides.

The dataclasses are the single source of truth: the CLI help, the YAML presets and docs/config.md
come from these fields. Unknown keys are an error that names the key.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from sea_align import PKG_DIR
from sea_align.runtime.io import DataError

PRESET_DIR = PKG_DIR / "configs"


@dataclass
class PrepareConfig:
    extractor: str = "rules"  # "rules" (offline) or "openai" (any OpenAI-compatible chat endpoint)
    openai_base_url: str = "https://api.openai.com/v1"  # key comes from OPENAI_API_KEY only
    openai_model: str = "gpt-4o-mini"
    limit: int = 0  # use only the first N harmful rows (0 = all)
    benign_limit: int = -1  # benign rows used: -1 = as many as `limit` (all when limit is 0), 0 = all, N = first N
    whole_request: bool = False  # also a row per request whose phrase is the WHOLE request ("<id>#whole"): its
    #                              embedding carries all of it and alignment pairs it with no text (Audio_only form)
    format: str = ""  # reader of `data` (docs/sources.md): "" = detected from the file, or harmbench, advbench, ...


@dataclass
class SynthesizeConfig:
    space: str = "encoder"  # "encoder": E is the tower output (paper default); "llm": E is after the projector
    max_steps: int = 100  # step cap per sample
    lr: float = 0.1  # Adam learning rate on E (relative: multiplied by the blank embedding's RMS)
    warmup: int = 0  # Adam steps over which each sample's lr ramps up linearly (0 = none)
    lr_adapt: list[float] = field(default_factory=list)  # [up, down, cap]: per-sample step size x up after a
    #                       step that lowered the sample's loss, x down after one that raised it, at most cap x lr ([] = off)
    batch_size: int = 8  # samples optimised together; converged ones leave, waiting ones join
    stop_loss: float = 0.05  # a sample may stop once its mean target CE is below this ...
    check_every: int = 5  # ... and a greedy decode of its targets reproduces them (checked every N steps)
    probe_max_new_tokens: int = 24
    init: str = "blank"  # "blank": the blank item's features (paper); "text": project(E) ~ the phrase's token embeddings
    init_text: str = "{phrase}"  # "text": what is written into the slots; {phrase} = the key phrase, {targets} =
    #                              the sample's auxiliary targets joined
    init_steps: int = 200  # "text": Adam steps inverting the projector (projector only, cheap)
    autocast: str = "none"  # "bf16": the loss pass's matmuls in bfloat16 (E, Adam, verification stay float32);
    #                         "auto": bf16 where the hardware has native bf16
    lowp_weights: bool = True  # with bf16 autocast on a float32 model: a bf16 copy of the LM's Linear weights
    #                            for the loss pass (identical results, no per-step cast; costs half the LM's size)
    attention: str = "auto"  # loss pass's attention kernel: "auto" (PyTorch's choice) or "math"
    blank_seconds: float = 2.0  # audio: length of the silent clip, sets the number of slots
    blank_frames: int = 8  # video: frames of the black clip
    blank_size: int = 0  # image/video side in pixels for the blank item (0 = the processor's default)
    seed: int = 0


@dataclass
class AlignConfig:
    method: str = "auto"  # "sft", "dpo", or "auto" (dpo when every row has `rejected`)
    text_only: bool = False  # train the textual-alignment baseline (no embeddings) on the same data
    include_text: bool = True  # add the text-only samples to the SEA mix
    benign: int = -1  # benign samples with synthetic embeddings (-1 = as many as harmful ones)
    benign_repeat: int = 1  # each benign example (media and text) this many times per epoch: weighs helpfulness up
    prefix: str = "The {media} shows a phrase of {article} {ptype}."
    epochs: int = 3
    lr: float = 2.0e-4
    batch_size: int = 4
    lora_r: int = 8  # higher = more capacity and memory
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    dpo_beta: float = 0.1
    retain: float = 0.0  # weight of the retain term: KL(base || aligned) on the answer tokens of benign examples
    replay: int = 0  # per benign embedding, also train on its first N auxiliary pairs (1 = content, 2 = + style):
    #                  the questions synthesis optimised it for, answered as the frozen model answers them, so
    #                  asking about the media (e.g. reading it) keeps working; 0 = off
    templates: int = 0  # per embedding, also train it under N other request templates (the benign rows' own,
    #                     same phrase type, chosen by the row id): the template then carries no sign of harm, so
    #                     refusal has to come from what the media says; 0 = off
    text_view: bool = False  # per embedding, also a "text view" of its row: the key phrase's token embeddings
    #                          written where the media goes (as synthesis' text init, no optimisation), same
    #                          text and target: a second, unoptimised form of the same content
    seed: int = 0
    report_to: str = ""  # "tensorboard": loss, lr and gradient norm per step through accelerate's tracker, under
    #                      <adapter's parent>/tensorboard/<adapter name> ("" = metrics.jsonl only)


@dataclass
class DistillConfig:
    enabled: bool = False  # benign targets = the teacher's own greedy answers to the typed requests (self-distillation)
    teacher: str = ""  # model that answers ("" = the run's model, i.e. the base model itself)
    max_new_tokens: int = 64
    batch_size: int = 16


@dataclass
class BenchSpec:
    name: str = "text"  # a builder: text | mm-safetybench-typo | benign-typo | benign-text
    source: str = ""  # JSONL (instruction, key_phrase, phrase_type, category), a questions dir, ... (docs/sources.md)
    format: str = ""  # reader of `source`: "" = detected, or va-safetybench, mm-safetybench, figstep, ...
    limit: int = 0  # first N items per category (0 = all)
    seed: int = 0
    types: list[str] = field(default_factory=list)  # VA-SafetyBench builders: attack types to keep (empty = all)
    fallback: str = ""  # source read instead when `source` does not exist (logged; build_info.json says so);
    #                     "" = a missing source is an error that says how to get it


@dataclass
class EvaluateConfig:
    bench: list[str] = field(default_factory=list)  # benchmark JSONL files (generic format)
    build: list[BenchSpec] = field(default_factory=list)  # benchmarks built into DIR/bench/ by `sea run`
    judge: str = "refusal"
    max_new_tokens: int = 48
    batch_size: int = 8
    limit: int = 0  # evaluate only the first N items of each benchmark (0 = all)
    device_map: str = ""  # "auto": spread a model too large for one GPU over the GPUs (accelerate; pretrained
    #                       models only); "" = the whole model on `device`


@dataclass
class RunConfig:
    model: str = "sea-tiny-vl"  # local dir, hub id, or a built-in name (sea-tiny-vl, sea-tiny-audio, tiny-random-*)
    modality: str = "image"  # image | video | audio
    data: str = ""  # the text safety set: a named set (advbench), our JSONL or any format of docs/sources.md
    benign_data: str = ""  # optional benign set (JSONL: instruction, response, key_phrase) for benign embeddings
    device: str = "auto"  # auto (the GPU when there is one: cuda, then mps, else cpu) | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (bfloat16 on a CUDA card with native bf16, else float32) | float32 | bfloat16 | float16
    seed: int = 0
    note: str = ""  # free text copied into the report (e.g. what the evaluation can and cannot show)
    align_text_baseline: bool = False  # also train + evaluate the text-only alignment baseline (paper's comparison)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    synthesize: SynthesizeConfig = field(default_factory=SynthesizeConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = getattr(typ, "__origin__", None)
    if is_dataclass(typ):
        if not isinstance(value, dict):
            raise DataError(f"config: '{key}' must be a mapping")
        return from_dict(typ, value, prefix=key + ".")
    if origin is list and typ.__args__ and is_dataclass(typ.__args__[0]):
        if not isinstance(value, list):
            raise DataError(f"config: '{key}' must be a list")
        return [_coerce(v, typ.__args__[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise DataError(f"config: '{key}' must be a list")
        elem = typ.__args__[0] if typ.__args__ else str
        if elem in (int, float):
            return [_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
        return [str(v) for v in value]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise DataError(f"config: '{key}' must be true or false, got {_short(value)}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DataError(f"config: '{key}' must be an integer, got {_short(value)}")
        try:
            return int(value)
        except ValueError:
            raise DataError(f"config: '{key}' must be an integer, got {_short(value)}") from None
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise DataError(f"config: '{key}' must be a number, got {_short(value)}")
        try:
            out = float(value)
        except (ValueError, OverflowError):
            raise DataError(f"config: '{key}' must be a number, got {_short(value)}") from None
        if not math.isfinite(out):
            raise DataError(f"config: '{key}' must be a finite number, got {_short(value)}")
        return out
    if typ is str:
        if isinstance(value, (dict, list)):
            raise DataError(f"config: '{key}' must be a string")
        return "" if value is None else str(value)
    return value


def _printable(text: str, limit: int = 60) -> str:
    """User text shown in an error: control characters escaped (the message stays one line), bounded."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short(value: Any) -> str:
    """A one-line, bounded repr for error messages."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            shown = _printable(key) if isinstance(key, (str, int, float, bool)) or key is None else type(key).__name__
            raise DataError(f"config: unknown key '{prefix}{shown}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for k, v in data.items():
        try:
            kwargs[k] = _coerce(v, hints[k], prefix + k)
        except (ValueError, OverflowError, TypeError, RecursionError) as e:  # not already a DataError
            if isinstance(e, DataError):
                raise
            raise DataError(f"config: '{prefix}{k}' has an unusable value ({type(e).__name__})") from None
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (value parsed as YAML) onto a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise DataError(f"override '{_printable(item)}': expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except (yaml.YAMLError, ValueError, RecursionError):
            value = raw
        _set(data, key.strip(), value, f"override '{_printable(item)}'")
    return data


def _set(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    """data[a][b] = value for key 'a.b' (sections made as needed)."""
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise DataError(f"{where}: '{_printable(p)}' is not a section")
    node[parts[-1]] = value


def resolve_preset(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (PRESET_DIR / name_or_path, PRESET_DIR / f"{name_or_path}.yaml"):
        if cand.is_file():
            return cand
    known = ", ".join(sorted(x.stem for x in PRESET_DIR.glob("*.yaml")))
    raise DataError(f"config: {name_or_path}: no such file or preset (presets: {known})")


def load_config(path: str | None, overrides: list[str] = (), flags: dict[str, Any] | None = None) -> RunConfig:
    """The preset or YAML file `path` (None: the defaults), then `key=value` overrides, then `flags`
    ({dotted key: value}, values used as given: the command line's own options, which win)."""
    data: dict[str, Any] = {}
    base_dir = None
    if path:
        p = resolve_preset(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{p}: not valid UTF-8 (byte {e.start})") from None
        except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: e.g. a 5000-digit integer
            first = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise DataError(f"{p}: invalid YAML ({first})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise DataError(f"{p}: top level must be a mapping")
        data = loaded
        base_dir = p.parent
    data = apply_overrides(data, list(overrides))
    for key, value in (flags or {}).items():
        _set(data, key, value, f"option for '{key}'")
    cfg = from_dict(RunConfig, data)
    cfg = _expand_paths(cfg, base_dir)
    _validate(cfg)
    return cfg


def _expand_paths(cfg: RunConfig, base_dir: Path | None) -> RunConfig:
    """`${SEA_SHARED}` and `${SEA_PKG}` in paths: the shared data dir and the installed package dir."""
    env = dict(os.environ)
    env.setdefault("SEA_PKG", str(PKG_DIR))
    env.setdefault("SEA_SHARED", str(default_shared_dir()))

    def expand(s: str) -> str:
        for k in ("SEA_PKG", "SEA_SHARED"):
            s = s.replace("${" + k + "}", env[k])
        return os.path.expanduser(s)

    cfg.data = expand(cfg.data)
    cfg.benign_data = expand(cfg.benign_data)
    cfg.evaluate.bench = [expand(b) for b in cfg.evaluate.bench]
    for spec in cfg.evaluate.build:
        spec.source, spec.fallback = expand(spec.source), expand(spec.fallback)
    return cfg


def default_shared_dir() -> Path:
    """The project's shared data folder: $SEA_SHARED, else ../shared beside the checkout."""
    if os.environ.get("SEA_SHARED"):
        return Path(os.environ["SEA_SHARED"])
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent.parent / "shared" / "data").is_dir():
            return parent.parent / "shared"
    return Path.cwd().parent / "shared"


def _validate(cfg: RunConfig) -> None:
    if cfg.modality not in ("image", "video", "audio"):
        raise DataError(f"config: 'modality' must be image, video or audio, got {cfg.modality!r}")
    if cfg.synthesize.space not in ("encoder", "llm"):
        raise DataError(f"config: 'synthesize.space' must be encoder or llm, got {cfg.synthesize.space!r}")
    if cfg.align.method not in ("auto", "sft", "dpo"):
        raise DataError(f"config: 'align.method' must be auto, sft or dpo, got {cfg.align.method!r}")
    from sea_align.runtime.tracking import TRACKERS
    if cfg.align.report_to not in ("",) + TRACKERS:
        raise DataError(f"config: 'align.report_to' must be '' or {', '.join(TRACKERS)}, "
                        f"got {_printable(cfg.align.report_to)!r}")
    _validate_runtime(cfg)
    from sea_align.sources.registry import formats
    for key, fmt in [("prepare.format", cfg.prepare.format)] + [
            (f"evaluate.build[{i}].format", b.format) for i, b in enumerate(cfg.evaluate.build)]:
        if fmt and fmt not in formats():
            raise DataError(f"config: '{key}' must be one of {', '.join(formats())}, got {_printable(fmt)!r}")
    for name in ("max_steps", "batch_size", "check_every"):
        if getattr(cfg.synthesize, name) < 1:
            raise DataError(f"config: 'synthesize.{name}' must be >= 1")


def _validate_runtime(cfg: RunConfig) -> None:
    """Device, dtype and judge names: checked here, before any model loads (no torch imported)."""
    from sea_align.runtime.device import DEVICES, DTYPES, DeviceError, check_spec
    from sea_align.judges import JUDGES
    try:
        check_spec(cfg.device)
    except DeviceError:
        raise DataError(f"config: 'device' must be one of {DEVICES}, got {_printable(cfg.device)!r}") from None
    if cfg.dtype not in DTYPES:
        raise DataError(f"config: 'dtype' must be {', '.join(DTYPES)}, got {_printable(cfg.dtype)!r}")
    if cfg.evaluate.device_map not in ("", "auto"):
        raise DataError(f"config: 'evaluate.device_map' must be '' or auto, "
                        f"got {_printable(cfg.evaluate.device_map)!r}")
    if cfg.evaluate.judge not in JUDGES:
        raise DataError(f"config: 'evaluate.judge': unknown judge {_printable(cfg.evaluate.judge)!r} "
                        f"(known: {', '.join(sorted(JUDGES))})")
