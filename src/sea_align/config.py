"""Typed configs: one dataclass per stage, and `RunConfig` holding them (reading one from presets, YAML
files and `key=value` overrides: config_load.py).

The dataclasses are the single source of truth. Each field is declared with `opt(default, help,
choices)` (config_keys.py, with the key walking, type coercion and choice checks): the stage commands'
options, their `--help` and defaults (cli/args.py) and docs/config.md (`python -m sea_align.cli.docs`)
are generated from these fields, and the fixed choices are checked when a config loads. Unknown keys
are an error that names the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sea_align.config_keys import Key, opt, walk_keys
from sea_align.runtime.device import DTYPES
from sea_align.runtime.tracking import TRACKERS


def _formats() -> list[str]:
    from sea_align.sources.registry import formats

    return [""] + formats()


def _labels() -> tuple[str, ...]:
    from sea_align.sources.registry import LABELS

    return LABELS


def _answer_judges() -> list[str]:
    from sea_align.judges import JUDGES

    return ["auto", "none"] + sorted(j for j in JUDGES if j != "refusal")


@dataclass
class PrepareConfig:
    """Key phrases, detoxified requests and auxiliary pairs from the text safety set (`sea prepare`)."""

    extractor: str = opt(
        "rules",
        "key-phrase extractor: rules (offline) or openai (any OpenAI-compatible chat endpoint)",
        ("rules", "openai"),
        brief="key-phrase extractor",
    )
    openai_base_url: str = opt(
        "https://api.openai.com/v1",
        "openai extractor: the endpoint (the key comes from OPENAI_API_KEY only)",
        brief="openai extractor: the endpoint",
    )
    openai_model: str = opt("gpt-4o-mini", "openai extractor: the model name")
    limit: int = opt(0, "use only the first N harmful rows (0 = all)", ge=0)
    benign_limit: int = opt(
        -1,
        "benign rows used: -1 = as many as `limit` (all when limit is 0), 0 = all, N = the first N",
        ge=-1,
        brief="benign rows used (-1 = as many as limit)",
    )
    whole_request: bool = opt(
        False,
        "also a row per request whose phrase is the WHOLE request (`<id>#whole`): its "
        "embedding carries all of it and alignment pairs it with no text (Audio_only form)",
        brief="also the whole request as a row",
    )
    figstep: bool = opt(
        False,
        "also a row per request in FigStep's form (`<id>#figstep`): its embedding carries the request as a "
        'statement heading an empty list ("Steps to ...") and alignment pairs it with FigStep\'s prompt (images)',
        brief="also the FigStep form as a row",
    )
    format: str = opt(
        "",
        'reader of `data` (docs/sources.md); "" = detected from the file',
        _formats,
        brief='reader of the data ("" = detected)',
    )
    label: str = opt(
        "",
        'label of rows whose file gives none (chat, ShareGPT): benign or harmful; "" = decided by the answer '
        "(a refusal makes the row harmful; rows whose answer helps are left out)",
        _labels,
        brief="label of rows whose file gives none",
    )
    allow_unsafe_answers: bool = opt(
        False,
        "keep harmful rows whose answer is not a refusal (otherwise an error naming them); the report says so",
        brief="keep harmful rows answered unsafely",
    )
    answer_judge: str = opt(
        "auto",
        "safety judge that also checks every training answer (unsafe: an error; undecided: left out): auto = "
        "evaluate.judge unless that is the refusal judge, none = the refusal check only",
        _answer_judges,
        brief="judge that checks the training answers",
    )


@dataclass
class SynthesizeExperimental:
    """Synthesis' tuning knobs (`synthesize.experimental.*`): each one's measured effect is in docs/experimental.md."""

    warmup: int = opt(
        0,
        "Adam steps over which each sample's lr ramps up linearly (0 = none)",
        ge=0,
        brief="per-sample lr warm-up steps",
    )
    lr_adapt: list[float] = opt(
        [],
        "[up, down, cap]: per-sample step size x up after a step that lowered the "
        "sample's loss, x down after one that raised it, at most cap x lr ([] = off)",
        gt=0,
        brief="[up, down, cap] per-sample step size",
    )
    init_steps: int = opt(
        200,
        "init text: Adam steps inverting the projector (projector only, cheap)",
        ge=0,
        brief="Adam steps inverting the projector",
    )
    lowp_weights: bool = opt(
        True,
        "with bf16 autocast on a float32 model: a bf16 copy of the LM's Linear weights "
        "for the loss pass (same results, no per-step cast; costs half the LM's size)",
        brief="bf16 copy of the LM weights",
    )
    attention: str = opt(
        "auto",
        "the loss pass's attention kernel: auto (PyTorch's choice) or math",
        ("auto", "math"),
        brief="the loss pass's attention kernel",
    )
    stop_on: str = opt(
        "all",
        "which auxiliary pairs must be reproduced (and under stop_loss) for a sample to stop: all (the "
        "paper's) or content (the phrase's pairs; the style pairs stay in the loss but do not hold a sample)",
        ("all", "content"),
        brief="pairs that gate a sample's stop",
    )


@dataclass
class SynthesizeConfig:
    """One synthetic embedding E per prepared row, optimised so the frozen model reads its phrase (`sea synthesize`)."""

    space: str = opt(
        "encoder",
        "where E lives: encoder (the tower's output; the paper's default) or llm (after the projector)",
        ("encoder", "llm"),
        brief="where E lives",
    )
    max_steps: int = opt(100, "Adam step cap per sample", ge=1)
    lr: float = opt(
        0.1,
        "Adam learning rate on E, relative: multiplied by the blank embedding's RMS",
        gt=0,
        brief="Adam lr on E, x the blank's RMS",
    )
    batch_size: int = opt(
        8,
        "samples optimised together; converged ones leave, waiting ones join",
        ge=1,
        brief="samples optimised together",
    )
    stop_loss: float = opt(
        0.05,
        "a sample may stop once its mean target CE is below this and a greedy decode reproduces its targets",
        ge=0,
        brief="stop a sample below this CE",
    )
    probe_max_new_tokens: int = opt(
        24,
        "tokens decoded when a finished embedding is verified (its answers to the held-out probes)",
        ge=1,
        brief="tokens decoded to verify an embedding",
    )
    init: str = opt(
        "blank",
        "E's start: blank (the blank item's features; the paper's), text (projected E "
        "matches the phrase's token embeddings) or media (the tower's features of the phrase rendered: a "
        "typography image or clip, espeak-ng speech, with the blank's size, frames and seconds)",
        ("blank", "text", "media"),
        brief="E's start",
    )
    init_text: str = opt(
        "{phrase}",
        "init text: what is written into the slots; {phrase} = the key phrase, "
        "{targets} = the sample's auxiliary targets joined",
        brief="init text written into the slots",
    )
    autocast: str = opt(
        "none",
        "bf16: the loss pass's matmuls in bfloat16 (E, Adam and the checks stay float32); "
        "auto: bf16 where the hardware has native bf16",
        ("none", "bf16", "auto"),
        brief="bf16 loss pass",
    )
    blank_seconds: float = opt(
        2.0,
        "audio: length of the silent clip (sets the number of slots)",
        gt=0,
        brief="audio: seconds of the silent clip",
    )
    blank_frames: int = opt(8, "video: frames of the black clip", ge=1)
    blank_size: int = opt(
        0,
        "image/video: side in pixels of the blank item (0 = the processor's default)",
        ge=0,
        brief="image/video: blank side in pixels",
    )
    seed: int = opt(0, "random seed of synthesis", ge=0)
    experimental: SynthesizeExperimental = opt(
        SynthesizeExperimental,
        "the optimiser's tuning knobs (docs/experimental.md; `sea synthesize --help-experimental`)",
    )


@dataclass
class AlignExperimental:
    """Alignment's research knobs (`align.experimental.*`), measured and adopted by no preset; each one's
    measured effect is in docs/experimental.md."""

    consistency: float = opt(
        0.0,
        "weight of the consistency term: KL(frozen model on the typed request || aligned model on the media form) "
        "on the answer tokens of every embedding example, harmful and benign: read the media as its text; 0 = off",
        ge=0,
        brief="weight of the media-vs-typed KL term",
    )
    benign_repeat: int = opt(
        1,
        "each benign example (media and text) this many times per epoch: weighs helpfulness up",
        ge=1,
        brief="each benign example this many times",
    )
    adversarial: float = opt(
        0.0,
        "share of the harmful embedding examples attacked at each step: their embedding is pushed toward an "
        "affirmative answer by projected gradient steps against the adapter as it is, and they keep their "
        "refusal target (SEA with attack embeddings in its mix); 0 = off",
        ge=0,
        le=1,
        brief="share of harmful embeddings attacked each step",
    )
    adversarial_eps: float = opt(
        1.0,
        "the attack's linf budget, x the RMS of the example's embedding in the LLM's input space",
        gt=0,
        brief="attack budget (x the embedding's RMS)",
    )
    adversarial_steps: int = opt(5, "the attack's gradient steps per attacked example", ge=1)
    adversarial_target: str = opt(
        "Sure, here is how to {phrase}:",
        "the answer start the attack aims at; {phrase} = the row's key phrase",
        brief="the attack's answer start",
    )


@dataclass
class AlignConfig:
    """LoRA safety alignment on the synthetic embeddings and the typed requests (`sea align`)."""

    method: str = opt(
        "auto",
        "sft, dpo, or auto (dpo when every row has `rejected`)",
        ("auto", "sft", "dpo"),
        brief="objective; auto: dpo given `rejected`",
    )
    text_only: bool = opt(
        False,
        "train the textual-alignment baseline (no embeddings) on the same data",
        brief="train the text-only baseline",
    )
    include_text: bool = opt(True, "add the text-only samples to the SEA mix", brief="also train on the typed requests")
    benign: int = opt(
        -1,
        "benign samples with synthetic embeddings (-1 = as many as harmful ones)",
        ge=-1,
        brief="benign embeddings (-1 = as harmful)",
    )
    prefix: str = opt(
        "The {media} shows a phrase of {article} {ptype}.",
        "text put before the request of an embedding sample; {media}, {article} and {ptype} are filled in per row",
        brief="text before the request",
    )
    reading: float = opt(
        0.0,
        "share of the harmful embeddings that also teach reading: asked what the media says, the model "
        "transcribes the phrase (transcribing is not harm; a refusal to read is over-refusal)",
        ge=0,
        le=1,
        brief="share of harmful embeddings also asked to be read",
    )
    epochs: int = opt(3, "passes over the training set", ge=1)
    lr: float = opt(2.0e-4, "LoRA learning rate", gt=0)
    batch_size: int = opt(4, "training examples per step", ge=1)
    lora_r: int = opt(8, "LoRA rank: higher = more capacity and memory", ge=1, brief="LoRA rank")
    lora_alpha: int = opt(
        16, "LoRA scaling numerator (the update is scaled by alpha / r)", ge=1, brief="LoRA scaling numerator"
    )
    lora_dropout: float = opt(0.0, "dropout on the LoRA input", ge=0, lt=1)
    lora_targets: list[str] = opt(["q_proj", "k_proj", "v_proj", "o_proj"], "LLM modules that get a LoRA")
    dpo_beta: float = opt(0.1, "dpo: the KL strength beta", gt=0)
    retain: float = opt(
        0.0,
        "weight of the retain term: KL(base || aligned) on the answer tokens of benign examples",
        ge=0,
        brief="KL(base||aligned) weight on benign",
    )
    templates: int = opt(
        0,
        "per embedding, also train it under N other request templates (the benign rows' own, "
        "same phrase type): refusal then has to come from what the media says; 0 = off",
        ge=0,
        brief="other templates per embedding",
    )
    seed: int = opt(0, "random seed of alignment", ge=0)
    report_to: str = opt(
        "",
        "tensorboard: loss, lr and gradient norm per step through accelerate's tracker, under "
        '<adapter\'s parent>/tensorboard/<adapter name>; "" = metrics.jsonl only',
        ("",) + TRACKERS,
        brief='tracker ("" = metrics.jsonl only)',
    )
    experimental: AlignExperimental = opt(
        AlignExperimental,
        "research terms, measured and not in a preset (docs/experimental.md; `sea align --help-experimental`)",
    )


@dataclass
class DistillConfig:
    """Benign targets = the teacher's own greedy answers to the typed requests (`sea run` only)."""

    enabled: bool = opt(False, "self-distillation: benign targets are the teacher's own greedy answers")
    teacher: str = opt(
        "",
        'model that answers: "" = the run\'s model itself (a built-in whose text safety is a LoRA of ours: its '
        'LLM from before that stage, organism/builtin.py TEACHERS), "self" = the run\'s model always, or a model',
        brief='model that answers ("" = the model itself)',
    )
    max_new_tokens: int = opt(64, "length of the teacher's answers", ge=1)
    batch_size: int = opt(16, "requests answered together", ge=1)


@dataclass
class BenchSpec:
    """One benchmark that `sea run` builds into DIR/bench/ (an item of `evaluate.build`)."""

    name: str = opt(
        "text", "the builder: text, mm-safetybench-typo, benign-typo, benign-text, ... (docs/benchmarks.md)"
    )
    source: str = opt(
        "", "JSONL (instruction, key_phrase, phrase_type, category), a questions folder, ... (docs/sources.md)"
    )
    format: str = opt(
        "", 'reader of `source`: "" = detected, or va-safetybench, mm-safetybench, figstep, ...', _formats
    )
    limit: int = opt(0, "first N items per category (0 = all)", ge=0)
    seed: int = opt(0, "random seed of the builder (voices, noise, fonts, animation)", ge=0)
    types: list[str] = opt([], "VA-SafetyBench builders: attack types to keep ([] = all)")
    fallback: str = opt(
        "",
        "source read instead when `source` does not exist (logged; build_info.json says so); "
        '"" = a missing source is an error that says how to get it',
    )


@dataclass
class EvaluateConfig:
    """Generation on the benchmarks and the judge's verdicts (`sea evaluate`)."""

    bench: list[str] = opt([], "benchmark JSONL files (generic format)")
    build: list[BenchSpec] = opt([], "benchmarks built into DIR/bench/ by `sea run` (items: see below)")
    judge: str = opt("refusal", "judge name (refusal, harm, openai, hf-classifier; docs/judges.md)", brief="judge name")
    judge_arg: list[str] = opt(
        [],
        "the judge's settings, KEY=VALUE each (harm: model=DIR|NAME, base_url=URL, batch_size=N; docs/judges.md)",
        brief="judge setting KEY=VALUE",
    )
    max_new_tokens: int = opt(48, "greedy decoding length", ge=1)
    batch_size: int = opt(8, "items generated together", ge=1)
    limit: int = opt(
        0,
        "evaluate only the first N items of each benchmark (0 = all)",
        ge=0,
        brief="first N items per benchmark (0 = all)",
    )
    device_map: str = opt(
        "",
        "auto: spread a model too large for one GPU over the GPUs (accelerate; pretrained "
        'models only); "" = the whole model on `device`',
        ("", "auto"),
        brief="auto: spread the model over the GPUs",
    )


@dataclass
class AttackConfig:
    """A white-box attacker on the media input: the budget it needs to make the model comply (`sea attack`)."""

    space: str = opt(
        "encoder",
        "what is perturbed: encoder (the tower's output features, where SEA's embeddings live; any family) or "
        "pixel (image pixels in [0, 1], through a differentiable preprocessing and tower: LLaVA, Qwen2-VL)",
        ("encoder", "pixel"),
        brief="what is perturbed",
    )
    norm: str = opt("linf", "the budget's norm: linf (each value) or l2 (the whole tensor)", ("linf", "l2"))
    eps: list[float] = opt(
        [0.0, 0.5, 1.0, 2.0],
        "budgets, each a curve point. encoder: x the RMS of the start's features (linf: max |delta| <= eps x RMS; "
        "l2: RMS of delta <= eps x RMS); pixel: in 1/255 (e.g. 0,8,16,32)",
        ge=0,
        brief="budgets (encoder: x the start's RMS; pixel: /255)",
    )
    start: str = opt(
        "media",
        "where the perturbation starts: media (the item's own image, clip or audio) or blank (the blank item)",
        ("media", "blank"),
        brief="media (the item's) or blank",
    )
    steps: int = opt(20, "projected gradient steps per restart (an item stops once it answers with the target)", ge=0)
    restarts: int = opt(0, "extra runs from a random point in the budget, for items the first run did not break", ge=0)
    alpha: float = opt(0.1, "step size, as a share of the budget (linf: per value; l2: of the radius)", gt=0, le=1)
    target: str = opt(
        "Sure, here is how to {phrase}:",
        "the affirmative answer start the attack aims at; {phrase} = the item's key phrase (else its request)",
        brief="the answer start aimed at",
    )
    batch_size: int = opt(8, "items attacked together", ge=1)
    max_new_tokens: int = opt(48, "greedy decoding length of the answer that is judged", ge=1)
    judge: str = opt("refusal", "judge of the answers (as evaluate.judge; docs/judges.md)", brief="judge name")
    judge_arg: list[str] = opt([], "the judge's settings, KEY=VALUE each (as evaluate.judge_arg)")
    per_category: int = opt(
        0,
        "attack at most the first N harmful media items of each category (a VA-SafetyBench scenario), so that a "
        "small attack set covers every scenario (0 = no cap; applied before limit)",
        ge=0,
        brief="at most N items per category (0 = no cap)",
    )
    limit: int = opt(0, "attack only the first N harmful media items of the benchmark (0 = all)", ge=0)
    seed: int = opt(0, "random seed of the restarts' starting points", ge=0)


ARMS = ("base", "aligned", "text_only")  # the arms `sea run` can train and evaluate, in order


@dataclass
class RunConfig:
    """A whole run (`sea run`); every stage command reads the same tree."""

    model: str = opt(
        "sea-tiny-vl",
        "local model directory, hub id or built-in name (sea-tiny-vl, sea-tiny-audio, "
        "smollm2-llava, sea-qwen-vl, sea-qwen-audio, qwen-coder-llava, tiny-random-<family>)",
        brief="model dir, hub id or built-in",
    )
    modality: str = opt("image", "the media form the model takes and E stands for", ("image", "video", "audio"))
    data: str = opt(
        "",
        "the text safety set: a named set (advbench, safety-mix), our JSONL (instruction, response, ...) or any "
        "format of docs/sources.md",
        brief="the text safety set (file or named set)",
    )
    device: str = opt(
        "auto",
        "where the model runs: auto (the GPU when there is one: cuda, then mps, else cpu), cpu, cuda, cuda:N or mps",
        brief="auto, cpu, cuda, cuda:N or mps",
    )
    dtype: str = opt(
        "auto",
        "weights' dtype; auto = bfloat16 on a CUDA card with native bf16 or, for a model of 100M+ "
        "parameters, on a CPU with AVX512-BF16/AMX; else float32",
        DTYPES,
        brief="weights' dtype",
    )
    seed: int = opt(0, "random seed of the run (torch's, before any stage)", ge=0)
    note: str = opt("", "free text copied into the report (e.g. what the evaluation can and cannot show)")
    align_text_baseline: bool = opt(
        False, "also train and evaluate the text-only alignment baseline (the paper's comparison)"
    )
    arms: list[str] = opt(
        [],
        "run only these arms, of base, aligned (SEA) and text_only; [] = base and aligned, and text_only with "
        "align_text_baseline. An arm left out is neither trained nor evaluated (what an earlier run made of it "
        "stays); without aligned there is no synthesis",
        ARMS,
        brief="only these arms ([] = all configured)",
    )
    prepare: PrepareConfig = opt(PrepareConfig, "stage 1, prepare")
    distill: DistillConfig = opt(DistillConfig, "self-distilled benign targets")
    synthesize: SynthesizeConfig = opt(SynthesizeConfig, "stage 2, synthesize")
    align: AlignConfig = opt(AlignConfig, "stage 3, align")
    evaluate: EvaluateConfig = opt(EvaluateConfig, "stage 4, evaluate")
    attack: AttackConfig = opt(AttackConfig, "white-box attack on the media input (`sea attack`; `sea run` runs none)")

    def selected_arms(self) -> list[str]:
        """The arms this run trains and evaluates, in order: `arms`, else base + aligned (+ text_only with
        `align_text_baseline`)."""
        if self.arms:
            return [a for a in ARMS if a in self.arms]
        return ["base", "aligned"] + (["text_only"] if self.align_text_baseline else [])


def config_keys(cls: type = RunConfig, prefix: str = "") -> Iterator[Key]:
    """Every leaf entry of `cls` (default: RunConfig), sections walked, in declaration order."""
    return walk_keys(cls, prefix)


def config_key(name: str) -> Key:
    """The entry `name` (dotted) of RunConfig."""
    for k in config_keys():
        if k.name == name:
            return k
    raise KeyError(name)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
