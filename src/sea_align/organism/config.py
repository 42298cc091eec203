"""The recipes' settings, one dataclass per built-in model, and their stage order. Import-light (no
torch): `sea organism build --help` lists every field as a flag (`organism/cli.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WEIGHTS_ROOT = Path(__file__).parent / "weights"  # the committed trained parts, one folder per model
VL_STAGES = ("distill", "text", "render", "warm", "read", "instruct", "video")  # recipe.STAGES, in order
# sea-qwen-vl: its LLM refuses by itself (no `text` stage of ours); warm is the identity, no training
QWEN_VL_STAGES = ("distill", "render", "warm", "read", "instruct")
AUDIO_STAGES = ("distill", "hear", "speech", "read", "instruct")  # audio_recipe.STAGES, in order


@dataclass
class RecipeConfig:
    """`sea-tiny-vl` (recipe.py)."""

    name: str = "sea-tiny-vl"
    seed: int = 0
    work_dir: Path = Path("runs/organism/sea-tiny-vl")  # big caches + full checkpoints (git-ignored)
    weights_dir: Path = WEIGHTS_ROOT / "sea-tiny-vl"  # committed trained parts + light checkpoints
    llm_dir: Path | None = None  # default: the base's LLM (bases.base_llm_dir)
    base: str = "smollm2-135m"  # the LLM (bases.BASES)
    harm_replay: bool = True  # the media stages replay harmful typed requests -> our refusal (off: benign only)
    threads: int = 2
    ckpt_every: int = 25
    # distill
    distill_batch: int = 16  # prompts answered together (answers are appended as they come: resumable)
    distill_dtype: str = "float32"  # the LLM's dtype while it answers: float32, bfloat16, or auto (bf16 where native)
    n_benign_text: int = 200  # extra benign text prompts beyond those per activity
    templates_per_act: int = 3  # per activity: "List steps" + this many other training templates (0: only "List steps")
    border_share: float = 0.5  # share of borderline requests among the benign samples of stage (a)
    harm_share: float = 0.5  # share of harmful requests in a batch of stage (a)
    border_variants: int = 4  # renderings per borderline training activity (image instructions)
    distill_max_new: int = 96  # answer cap in tokens; longer answers are cut (no EOS trained)
    # (a) text safety
    lora_rank: int = 8  # higher: more capacity and larger committed files
    text_steps: int = 400  # 160 steps still refused 27% of borderline TRAINING prompts; 400: 11% held out
    text_batch: int = 8
    text_lr: float = 3e-4
    # render
    n_read: int = 3500  # reading images (random word phrases)
    act_variants: int = 8  # renderings per benign training activity
    max_act_images: int = 0  # cap on activity renderings (0 = all; tests use a few)
    typo_share: float = 0.3  # share rendered in the MM-SafetyBench TYPO layout
    # (b1) warm start
    warm_steps: int = 400
    warm_batch: int = 64
    warm_lr: float = 1e-3
    # (b2) reading through the LLM
    read_steps: int = 200
    read_batch: int = 8
    mm_lr: float = 2e-4  # LoRA of the multimodal stages
    proj_lr: float = 3e-4
    # (c) instruction tuning
    instruct_steps: int = 150
    border_replay_share: float = 0.5  # (c), (c'): share of borderline typed requests in the text replay slots
    #                             that are not the harmful templated one (0: drawn from all text samples)
    instruct_batch: int = 8
    # (c') video
    n_video_read: int = 1200  # reading clips (a subset of the reading phrases)
    video_steps: int = 150


@dataclass
class QwenVLConfig(RecipeConfig):
    """`sea-qwen-vl` (recipe.py on Qwen2.5-Coder-1.5B-Instruct): the LLM's own text safety is kept (no text
    stage, no harmful replay: media instruction tuning on benign data only, as real MLLMs get it); the
    linear projector starts as the identity. Steps sized for ~25 s a step on 2 CPU cores."""

    name: str = "sea-qwen-vl"
    work_dir: Path = Path("runs/organism/sea-qwen-vl")
    weights_dir: Path = WEIGHTS_ROOT / "sea-qwen-vl"
    base: str = "qwen2.5-coder-1.5b"
    harm_replay: bool = False
    ckpt_every: int = 10
    n_benign_text: int = 100
    distill_max_new: int = 64
    distill_batch: int = 8
    distill_dtype: str = "auto"  # ~2x faster answers on a CPU with native bf16 (generation is memory-bound)
    n_read: int = 2000
    act_variants: int = 4
    read_steps: int = 120
    instruct_steps: int = 100


@dataclass
class AudioRecipeConfig:
    """`sea-tiny-audio` (audio_recipe.py)."""

    name: str = "sea-tiny-audio"
    seed: int = 0
    work_dir: Path = Path("runs/organism/sea-tiny-audio")  # transcripts, full checkpoints (git-ignored)
    weights_dir: Path = WEIGHTS_ROOT / "sea-tiny-audio"  # committed trained parts + light checkpoints
    llm_dir: Path | None = None  # default: the base's LLM (bases.base_llm_dir)
    base: str = "smollm2-135m"  # the LLM (bases.BASES)
    text_lora: str = "../sea-tiny-vl/lora_text.safetensors"  # stage (a), relative to weights_dir ("": none)
    harm_replay: bool = True  # text replay of harmful typed requests -> our refusal (off: benign only)
    threads: int = 1
    ckpt_every: int = 25
    # distill (the image recipe's stage, same settings)
    n_benign_text: int = 200
    templates_per_act: int = 3
    distill_max_new: int = 96
    distill_batch: int = 16
    distill_dtype: str = "float32"  # float32, bfloat16, or auto (bf16 where the CPU/GPU has it natively)
    distill_from: Path = Path("runs/organism/sea-tiny-vl/distill.jsonl")  # the image recipe's, reused when equal
    # hear: Whisper decoder LoRA on espeak-ng speech (whisper_tune.py)
    hear_from: str = ""  # reuse this `hear` LoRA (relative to weights_dir; sha256 pinned) instead of training one
    hear_steps: int = 300
    hear_batch: int = 16
    hear_rank: int = 16
    hear_lr: float = 1e-3
    hear_act_variants: int = 2  # spoken renderings per training activity in `hear`
    max_hear_clips: int = 0  # cap (0 = all; tests use a few)
    # speech
    n_read: int = 1500  # training reading clips (random phrases of the speakable vocabulary)
    act_variants: int = 4  # spoken renderings per benign training activity
    border_variants: int = 2  # spoken renderings per borderline training activity
    max_act_clips: int = 0  # cap on activity and borderline clips, each (0 = all; tests use a few)
    noise_share: float = 0.25  # clips with noise: half KPT_noise layout (noise, then speech), half mixed
    heard_only: bool = True  # train only on clips whose transcript contains the text (see load_heard)
    # (b2) reading
    lora_rank: int = 8
    read_steps: int = 300
    read_batch: int = 8
    read_text_copies: int = 3  # per read batch: samples whose slots come from a text "transcript" (no audio)
    mm_lr: float = 2e-4  # LoRA
    proj_lr: float = 1e-4  # projector (starts at the identity)
    # (c) instruction tuning
    instruct_steps: int = 80
    instruct_batch: int = 8
    border_replay_share: float = 0.5  # (c): share of borderline typed requests in the other text replay slot


@dataclass
class QwenAudioConfig(AudioRecipeConfig):
    """`sea-qwen-audio` (audio_recipe.py on Qwen2.5-Coder-1.5B-Instruct): the LLM's own text safety is kept
    (no text LoRA, no harmful replay); Whisper tiny.en with sea-tiny-audio's `hear` LoRA, reused (the tower
    does not depend on the LLM); the distilled answers are sea-qwen-vl's (same LLM, prompts and decoding)."""

    name: str = "sea-qwen-audio"
    work_dir: Path = Path("runs/organism/sea-qwen-audio")
    weights_dir: Path = WEIGHTS_ROOT / "sea-qwen-audio"
    base: str = "qwen2.5-coder-1.5b"
    text_lora: str = ""
    harm_replay: bool = False
    hear_from: str = "../sea-tiny-audio/whisper_lora.safetensors"
    threads: int = 2
    ckpt_every: int = 10
    n_benign_text: int = 100  # = sea-qwen-vl's distill settings, so its distill.jsonl is reused
    distill_max_new: int = 64
    distill_batch: int = 8
    distill_dtype: str = "auto"
    distill_from: Path = Path("runs/organism/sea-qwen-vl/distill.jsonl")
    read_steps: int = 120
    instruct_steps: int = 60


CONFIGS = {
    "sea-tiny-vl": RecipeConfig,
    "sea-tiny-audio": AudioRecipeConfig,
    "sea-qwen-vl": QwenVLConfig,
    "sea-qwen-audio": QwenAudioConfig,
}
STAGE_ORDER = {
    "sea-tiny-vl": VL_STAGES,
    "sea-tiny-audio": AUDIO_STAGES,
    "sea-qwen-vl": QWEN_VL_STAGES,
    "sea-qwen-audio": AUDIO_STAGES,
}
RECIPE_MODULES = {
    "sea-tiny-vl": "sea_align.organism.recipe",
    "sea-tiny-audio": "sea_align.organism.audio_recipe",
    "sea-qwen-vl": "sea_align.organism.recipe",
    "sea-qwen-audio": "sea_align.organism.audio_recipe",
}
