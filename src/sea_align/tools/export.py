"""`sea export`: an aligned model in the form other tools load.

- without `merge`: the PEFT adapter (`adapter_config.json` with `base_model_name_or_path` = `--model`,
  `adapter_model.safetensors`, `train_summary.json`) and a model card;
- with `merge`: the base model with the LoRA folded into its weights (`merge_and_unload`), saved with
  `save_pretrained` (loads with the family's transformers class, e.g. `LlavaForConditionalGeneration`),
  its tokenizer, the base's processor when it has a Hugging Face one, and a model card.
Written to `OUT.partial-*` beside OUT and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from sea_align.runtime.io import DataError, atomic_write_json, make_temp_dir, set_default_modes
from sea_align.stages.modelcard import CardInfo, collect, is_builtin, read_json, write_card

log = logging.getLogger(__name__)
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "train_summary.json")


def _copy_adapter(adapter_dir: Path, out: Path, model: str) -> None:
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    atomic_write_json(out / "adapter_config.json", {**cfg, "base_model_name_or_path": model})
    for name in ADAPTER_FILES:
        if (adapter_dir / name).is_file():
            shutil.copyfile(adapter_dir / name, out / name)


def _save_processor(model: str, out: Path) -> bool:
    """The base's Hugging Face processor (image/video/audio + tokenizer), when it has one."""
    if is_builtin(model):
        return False
    try:
        from transformers import AutoProcessor

        AutoProcessor.from_pretrained(model).save_pretrained(str(out))
    except (OSError, ValueError, TypeError, KeyError) as e:
        log.warning("export: no processor saved for %s (%s); tokenizer only", model, type(e).__name__)
        return False
    return True


def _merged_notes(merged: Any, processor: bool) -> list[str]:
    cls = type(merged).__name__
    notes = [
        f"Merged: LoRA folded into the weights. Load: `transformers.{cls}.from_pretrained(DIR)` and "
        "`AutoTokenizer.from_pretrained(DIR)`" + (" / `AutoProcessor.from_pretrained(DIR)`." if processor else ".")
    ]
    towers = [getattr(merged.config, k, None) for k in ("vision_config", "audio_config")]
    custom = sorted({t.model_type for t in towers if t is not None and str(t.model_type).startswith("sea_")})
    if custom:
        notes.append(
            f"Its encoder ({', '.join(custom)}) is sea-align's own: `sea_align.organism.register()` before "
            "`from_pretrained` (it registers the encoder with transformers' Auto classes); media are "
            "preprocessed by `sea_align.organism` (no Hugging Face processor)."
        )
    if hasattr(getattr(merged.model, "vision_tower", None), "attach_reader"):
        notes.append(
            "The OCR tower writes the text it reads into the LLM's embedding space: after loading, "
            "`model.model.vision_tower.attach_reader(tokenizer, model.get_input_embeddings())`; images: "
            "`sea_align.organism.render.preprocess_images(list_of_PIL_images)` -> `pixel_values`."
        )
    elif not processor and not custom:
        notes.append(
            "No Hugging Face processor saved (the base has none): build the media inputs as sea-align "
            "does (`sea_align.models.load_adapter(DIR)`)."
        )
    return notes


def _merge(model: str, adapter_dir: Path, out: Path, device: str, dtype: str) -> list[str]:
    """Base + adapter merged and saved into `out`; returns the card's loading notes."""
    from sea_align.models import load_adapter

    modality = read_json(adapter_dir / "train_summary.json").get("modality")  # the form it was trained for
    ad = load_adapter(model, dtype=dtype, adapter_dir=str(adapter_dir), modality=modality, device=device)
    merged = ad.peft_model.merge_and_unload()
    merged.save_pretrained(str(out))
    ad.tokenizer.save_pretrained(str(out))
    return _merged_notes(merged, _save_processor(model, out))


def base_of(adapter_dir: str | Path) -> str | None:
    """The base model an adapter names: its adapter_config.json, else its run's config.yaml (older adapters)."""
    adapter_dir = Path(adapter_dir)
    name = read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    if not name and (adapter_dir.parent / "config.yaml").is_file():
        import yaml

        try:
            name = (yaml.safe_load((adapter_dir.parent / "config.yaml").read_text()) or {}).get("model")
        except (OSError, ValueError, AttributeError):
            return None
    return name or None


def run_export(
    model: str,
    adapter_dir: str | Path,
    out: str | Path,
    *,
    merge: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    command: str | None = None,
    force: bool = False,
) -> Path:
    """Write the export of `adapter_dir` on base `model` into `out` (a new folder; `force` replaces one);
    returns `out`. No config section: `model`, `device` and `dtype` are the config's (resolved by the
    caller: `sea export` defaults the model to the base the adapter names), `merge` and `force` the
    command's options."""
    adapter_dir, out = Path(adapter_dir), Path(out)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise DataError(f"--adapter {adapter_dir}: no adapter_config.json there (expected a PEFT adapter directory)")
    if out.exists() and not force:
        raise DataError(f"--out {out} already exists (remove it, or --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{out.name}.", ".partial", out.parent)
    try:
        notes = _merge(model, adapter_dir, tmp, device, dtype) if merge else []
        if not merge:
            _copy_adapter(adapter_dir, tmp, model)
        info: CardInfo = collect(adapter_dir, base_model=model)
        info.merged, info.notes = merge, notes or info.notes
        info.commands += [command] if command else []
        write_card(tmp, info)
        set_default_modes(tmp)  # save_pretrained's safetensors files are 0600 as written
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s + %s (%s) -> %s", model, adapter_dir, "merged" if merge else "adapter", out)
    return out
