"""Qwen2-Audio (`Qwen2AudioForConditionalGeneration`): audio. Encoder space = the audio tower's
output for the clip's valid frames ([25 per second, 1280]); LLM space = after the linear projector.
The model class has no embedding entry point, so we build `inputs_embeds` ourselves (as for every family).
Features are what Qwen2AudioProcessor gives: its WhisperFeatureExtractor (the checkpoint's config, else
Whisper's defaults at the tower's mel count and length) on the 16 kHz waveform, padded to max length."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sea_align.models.base import BaseAdapter, Features
from sea_align.models.media import load_audio


class Qwen2AudioAdapter(BaseAdapter):
    family = "qwen2_audio"
    modalities = ("audio",)
    placeholder = {"audio": "<|AUDIO|>"}

    def __init__(self, model: Any, tokenizer: Any, processors: dict[str, Any] | None = None, **kw: Any):
        super().__init__(model, tokenizer, processors, **kw)
        from transformers import WhisperFeatureExtractor

        ac = model.config.audio_config
        self.n_frames = int(ac.max_source_positions) * 2  # mel frames the tower expects (3000 = 30 s)
        fe = self.processors.get("feature_extractor")
        pp = self.processors.get("preprocessor") or {}  # preprocessor_config.json
        if fe is None and pp.get("feature_extractor_type") == "WhisperFeatureExtractor":
            fe = WhisperFeatureExtractor.from_dict(pp)
        self.fe = fe or WhisperFeatureExtractor(
            feature_size=int(ac.num_mel_bins),
            sampling_rate=16000,
            hop_length=160,
            chunk_length=self.n_frames // 100,
            n_fft=400,
        )
        self.tower = model.model.audio_tower

    def media_text(self, modality: str) -> str:
        return "Audio 1: <|audio_bos|>" + self.placeholder[modality] + "<|audio_eos|>\n"

    def blank(self, modality: str, seconds: float = 2.0, **_: Any) -> Features:
        self.check_modality(modality)
        return self.encode(modality, [np.zeros(int(16000 * seconds), dtype=np.float32)])[0]

    @torch.no_grad()
    def encode(self, modality: str, media: Sequence[Any]) -> list[Features]:
        self.check_modality(modality)
        out = []
        for m in media:
            wav = load_audio(m)[: self.n_frames * 160]
            feats = self.features(wav)
            mel = torch.from_numpy(feats["input_features"]).to(self.device, self.dtype)
            n_mel = int(feats["feature_attention_mask"].sum())
            n_feat, n_out = self.tower._get_feat_extract_output_lengths(torch.tensor(n_mel))
            h = self.tower(mel, attention_mask=self._mask(mel, int(n_feat))).last_hidden_state[0, : max(1, int(n_out))]
            out.append(Features(h, {"seconds": len(wav) / 16000}))
        return out

    def features(self, wav: np.ndarray) -> dict[str, np.ndarray]:
        """input_features [1, mel, frames] and feature_attention_mask [1, frames] of a 16 kHz waveform."""
        f = self.fe(
            wav,
            sampling_rate=16000,
            return_tensors="np",
            padding="max_length",
            max_length=self.n_frames * 160,
            return_attention_mask=True,
        )
        return {"input_features": f["input_features"], "feature_attention_mask": f["attention_mask"]}

    def _mask(self, mel: torch.Tensor, n_feat: int):
        """The padding mask the family's own forward gives its tower (frames past the clip are masked)."""
        from transformers.masking_utils import create_bidirectional_mask

        max_len = (mel.shape[-1] - 2) // 2 + 1
        mask2d = (torch.arange(max_len, device=mel.device) < n_feat).long()[None]
        dummy = torch.zeros((1, max_len, 1), dtype=mel.dtype, device=mel.device)
        return create_bidirectional_mask(config=self.tower.config, inputs_embeds=dummy, attention_mask=mask2d)

    def project(self, modality: str, x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        return self.model.model.multi_modal_projector(x)
