"""From files to a `RunConfig` (config.py): presets (with `base:` inheritance) and YAML files, `key=value`
overrides and the command line's options on top, keys that left the config (`RETIRED`) named with where they
went, `${SEA_SHARED}` / `${SEA_PKG}` in paths, and one validation pass before any model loads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from sea_align import PKG_DIR
from sea_align.config import RunConfig
from sea_align.config_keys import check_choices, from_dict, printable
from sea_align.runtime.io import DataError

PRESET_DIR = PKG_DIR / "configs"
_MISSING = object()

# the synthesis knobs that moved under `experimental:` (knobs added there since never lived elsewhere)
_MOVED_SYNTH = ("warmup", "lr_adapt", "init_steps", "lowp_weights", "attention")
_MOVED_ALIGN = ("consistency", "benign_repeat")
_GONE = "removed: measured and adopted by no preset (docs/experimental.md says what it did)"
# Keys that left the config: where each one went, or why it went. A config that still sets one fails with
# a line that says so, not with a bare "unknown key".
RETIRED = {
    "benign_data": "removed: it was never read",
    "synthesize.check_every": "removed: it was never read",
    "align.lead": _GONE,
    "align.lead_tokens": _GONE,
    "align.echo": _GONE,
    "align.text_view": _GONE,
    "align.replay": _GONE,
    **{f"synthesize.{k}": f"moved to synthesize.experimental.{k}" for k in _MOVED_SYNTH},
    **{f"align.{k}": f"moved to align.experimental.{k}" for k in _MOVED_ALIGN},
}


def check_retired(data: dict[str, Any], where: str = "config") -> None:
    """A DataError naming the first key of `data` (a config tree) that left the config, and where it went."""
    for name, why in RETIRED.items():
        node: Any = data
        for part in name.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            raise DataError(f"{where}: '{name}' {why}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (value parsed as YAML) onto a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise DataError(f"override '{printable(item)}': expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except (yaml.YAMLError, ValueError, RecursionError):
            value = raw
        _set(data, key.strip(), value, f"override '{printable(item)}'")
    return data


def _set(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    """data[a][b] = value for key 'a.b' (sections made as needed)."""
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise DataError(f"{where}: '{printable(p)}' is not a section")
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


def _read_yaml(p: Path) -> dict[str, Any]:
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
    return loaded


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: sections merge key by key, anything else (values, lists) is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_preset(p: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset's YAML tree. `base: NAME` (a preset name, or a file relative to this one) starts it from
    that preset's tree, so a preset holds only what differs; chains are followed, cycles are an error."""
    p = p.resolve()
    if p in _seen:
        chain = " -> ".join(x.name for x in (*_seen, p))
        raise DataError(f"{p}: 'base' runs in a circle ({chain})")
    data = _read_yaml(p)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise DataError(f"{p}: 'base' must name a preset or a YAML file, got {printable(repr(base))}")
    near = p.parent / base
    try:
        bp = near if near.is_file() else resolve_preset(base)
    except DataError as e:
        raise DataError(f"{p}: 'base': {e}") from None
    return _merge(read_preset(bp, (*_seen, p)), data)


def load_config(path: str | None, overrides: list[str] = (), flags: dict[str, Any] | None = None) -> RunConfig:
    """The preset or YAML file `path` (None: the defaults), then `key=value` overrides, then `flags`
    ({dotted key: value}, values used as given: the command line's own options, which win)."""
    data: dict[str, Any] = {}
    base_dir = None
    if path:
        p = resolve_preset(path)
        data = read_preset(p)
        base_dir = p.parent
    data = apply_overrides(data, list(overrides))
    for key, value in (flags or {}).items():
        _set(data, key, value, f"option for '{key}'")
    check_retired(data, str(path) if path else "config")
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
    check_choices(cfg)  # choices and the ranges declared beside each field
    up_down_cap = cfg.synthesize.experimental.lr_adapt
    if up_down_cap and (len(up_down_cap) != 3 or not up_down_cap[1] < 1 <= up_down_cap[0] <= up_down_cap[2]):
        raise DataError(
            f"config: 'synthesize.experimental.lr_adapt' must be [up >= 1, down < 1, cap >= up] or [], "
            f"got {up_down_cap}"
        )
    _validate_runtime(cfg)


def _validate_runtime(cfg: RunConfig) -> None:
    """Device and judge names: checked here, before any model loads (no torch imported)."""
    from sea_align.judges import JUDGES
    from sea_align.runtime.device import DEVICES, DeviceError, check_spec

    try:
        check_spec(cfg.device)
    except DeviceError:
        raise DataError(f"config: 'device' must be one of {DEVICES}, got {printable(cfg.device)!r}") from None
    if cfg.evaluate.judge not in JUDGES:
        raise DataError(
            f"config: 'evaluate.judge': unknown judge {printable(cfg.evaluate.judge)!r} "
            f"(known: {', '.join(sorted(JUDGES))})"
        )
