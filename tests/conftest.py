import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_data(name: str) -> Path | None:
    """The released files `$SEA_SHARED/data/NAME`, else `../shared/data/NAME` beside the checkout (CI has
    them), or None where absent (a fresh clone): tests then use our fixtures or skip."""
    root = os.environ.get("SEA_SHARED") or Path(__file__).resolve().parents[2] / "shared"
    path = Path(root) / "data" / name
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def tiny_llava():
    from sea_align.models import load_adapter

    return load_adapter("tiny-random-llava")


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tiny_llm(out, model_cls, cfg_cls, **cfg):
    """A random `model_cls` of `cfg_cls(**cfg)` with SmolLM2's tokenizer (vocab: the tokenizer's + `extra_vocab`)."""
    from transformers import AutoTokenizer

    from sea_align.organism.cache import smollm2_dir

    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    torch.manual_seed(0)
    model_cls(cfg_cls(vocab_size=len(tok) + cfg.pop("extra_vocab", 0), **cfg)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory):
    """A tiny random Llama with SmolLM2's tokenizer (the built-in models' tests)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _tiny_llm(
        tmp_path_factory.mktemp("tiny-llm"),
        LlamaForCausalLM,
        LlamaConfig,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    """A tiny random Qwen2 (hidden 24, untied head) with SmolLM2's tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return _tiny_llm(
        tmp_path_factory.mktemp("tiny-qwen"),
        Qwen2ForCausalLM,
        Qwen2Config,
        extra_vocab=8,
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )


def tiny_audio_recipe_kw(work_dir, llm_dir, **extra) -> dict:
    """Audio recipe options for a two-steps-per-stage build of a few clips on a tiny LLM."""
    return dict(
        work_dir=work_dir,
        llm_dir=llm_dir,
        n_benign_text=4,
        distill_max_new=3,
        n_read=6,
        max_act_clips=6,
        ckpt_every=1,
        read_steps=2,
        instruct_steps=2,
        read_batch=4,
        instruct_batch=4,
        heard_only=False,
        read_text_copies=1,
        **extra,
    )


def llm_delta(model) -> tuple[int, float]:
    """(tensors changed, sum of squared changes in float64) of a built-in model's language model against
    SmolLM2 as shipped: what the committed LoRA deltas (and the added token rows) do. Exact hashes of
    merged float32 weights differ between CPUs; these sums agree to ~1e-9 and move with any change."""
    import torch
    from transformers import AutoModelForCausalLM

    from sea_align.organism.cache import smollm2_dir

    base = AutoModelForCausalLM.from_pretrained(str(smollm2_dir()), dtype=torch.float32).state_dict()
    n, total = 0, 0.0
    for k, v in model.state_dict().items():
        b = base.get("model." + k.split("language_model.", 1)[1]) if "language_model." in k else None
        if b is None:
            continue
        d = v.double()[: b.shape[0]] - b.double()
        s = float(d.pow(2).sum())
        n, total = n + (s > 0), total + s
    return n, total


TINY = "tiny-random-llava"


def synth_argv(data, out, *extra, model=TINY, modality="image"):
    """`sea synthesize` arguments: MODEL on DATA's MODALITY into OUT, then `extra`."""
    return ["synthesize", "--model", model, "--modality", modality, "--data", str(data), "--out", str(out), *extra]


def eval_argv(bench, out, *extra, model=TINY):
    """`sea evaluate` arguments: MODEL on BENCH into OUT, then `extra`."""
    return ["evaluate", "--model", model, "--bench", str(bench), "--out", str(out), *extra]


def sft_losses(adapter, batch, peft_model=None, retain=0.0, consistency=0.0):
    """Per-example SFT losses of `batch` with the retain and consistency terms at these weights."""
    from sea_align.config import AlignConfig, AlignExperimental
    from sea_align.stages.losses import build_terms, item_losses

    cfg = AlignConfig(retain=retain, experimental=AlignExperimental(consistency=consistency))
    return item_losses(adapter, batch, build_terms(cfg, "sft"), peft_model)
