"""Device and dtype choice (sea_align.runtime.device), decided from a made-up Machine: no GPU needed."""

import pytest
import torch

from sea_align.config_load import load_config
from sea_align.runtime.device import DeviceError, Machine, check_spec, choose, resolve_device, resolve_dtype
from sea_align.runtime.io import DataError

CPU = Machine()
CUDA_BF16 = Machine(cuda_count=2, cuda_bf16=True)
CUDA_OLD = Machine(cuda_count=1, cuda_bf16=False)  # e.g. a V100 / T4: no native bf16
MAC = Machine(mps=True)


@pytest.mark.parametrize(
    "machine,want",
    [
        (CPU, "cpu"),
        (CUDA_BF16, "cuda:0"),
        (CUDA_OLD, "cuda:0"),
        (MAC, "mps"),
        (Machine(cuda_count=1, mps=True), "cuda:0"),
    ],
)
def test_auto_takes_the_gpu_when_there_is_one(machine, want):
    assert resolve_device("auto", machine) == want


def test_explicit_devices():
    assert resolve_device("cpu", CUDA_BF16) == "cpu"
    assert resolve_device("cuda:1", CUDA_BF16) == "cuda:1"
    assert resolve_device("mps", MAC) == "mps"


def test_launch_rank_picks_its_card():
    m = Machine(cuda_count=4, cuda_bf16=True, local_rank=3)
    assert resolve_device("auto", m) == resolve_device("cuda", m) == "cuda:3"


@pytest.mark.parametrize(
    "spec,machine,needle",
    [
        ("cuda", CPU, "no CUDA GPU"),
        ("cuda:0", MAC, "no CUDA GPU"),
        ("cuda:2", CUDA_BF16, "has 2 CUDA GPU"),
        ("mps", CUDA_BF16, "MPS"),
        ("gpu", CUDA_BF16, "expected one of"),
        ("cuda:x", CUDA_BF16, "expected one of"),
    ],
)
def test_unavailable_or_malformed_device_is_one_line(spec, machine, needle):
    with pytest.raises(DeviceError) as e:
        resolve_device(spec, machine)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, DataError)  # the CLI prints it as one line


@pytest.mark.parametrize(
    "device,machine,want",
    [
        ("cuda:0", CUDA_BF16, "bfloat16"),
        ("cuda:0", CUDA_OLD, "float32"),
        ("cpu", CUDA_BF16, "float32"),
        ("cpu", CPU, "float32"),
        ("mps", MAC, "float32"),
    ],
)
def test_auto_dtype_is_bf16_only_where_native(device, machine, want):
    assert resolve_dtype("auto", device, machine) == want


BF16_CPU = Machine(cpu_bf16=True)


@pytest.mark.parametrize(
    "machine,params,want",
    [
        (BF16_CPU, 1_785_594_081, "bfloat16"),  # sea-qwen-vl: measured faster, same verdicts
        (BF16_CPU, 138_961_633, "bfloat16"),  # sea-tiny-vl
        (BF16_CPU, 61_856, "float32"),  # a tiny random test model: not measured, stays float32
        (BF16_CPU, None, "float32"),  # unknown size
        (CPU, 1_785_594_081, "float32"),  # an AVX2-only CPU emulates bf16: slower
    ],
)
def test_auto_dtype_on_a_cpu_is_bf16_only_where_native_and_measured_faster(machine, params, want):
    assert resolve_dtype("auto", "cpu", machine, params) == want


def test_auto_dtype_reads_the_size_of_a_named_model():
    assert choose("cpu", "auto", BF16_CPU, model="sea-qwen-vl") == ("cpu", "bfloat16")
    assert choose("cpu", "auto", BF16_CPU, model="tiny-random-llava") == ("cpu", "float32")
    assert choose("cpu", "auto", CPU, model="sea-qwen-vl") == ("cpu", "float32")
    assert choose("cpu", "float32", BF16_CPU, model="sea-qwen-vl") == ("cpu", "float32")


def test_explicit_dtype_wins():
    assert choose("auto", "float32", CUDA_BF16) == ("cuda:0", "float32")
    assert choose("cpu", "bfloat16", CPU) == ("cpu", "bfloat16")
    assert choose("auto", "auto", CPU) == ("cpu", "float32")
    with pytest.raises(DeviceError):
        resolve_dtype("fp8", "cpu", CPU)


def test_check_spec_needs_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from sea_align.runtime.device import check_spec; check_spec('cuda:3'); "
        "assert 'torch' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert check_spec("auto") == "auto"


def test_config_device_and_dtype():
    cfg = load_config(None)
    assert (cfg.device, cfg.dtype, cfg.evaluate.device_map) == ("auto", "auto", "")
    cfg = load_config("tiny", ["device=cuda:1", "dtype=bfloat16", "evaluate.device_map=auto"])
    assert (cfg.device, cfg.dtype, cfg.evaluate.device_map) == ("cuda:1", "bfloat16", "auto")
    for bad, needle in [
        ("device=gpu", "'device' must be one of"),
        ("dtype=fp8", "'dtype' must be"),
        ("evaluate.device_map=balanced", "'evaluate.device_map'"),
        ("evaluate.judge=nosuch", "unknown judge 'nosuch'"),
    ]:
        with pytest.raises(DataError, match=needle):
            load_config("tiny", [bad])


@pytest.mark.parametrize("preset", ["tiny", "default", "video", "audio", "image-full", "video-full", "audio-full"])
def test_presets_still_load(preset):
    assert load_config(preset).device == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_adapter_refuses_missing_device_before_building(monkeypatch):
    from sea_align import models
    from sea_align.models import loading

    monkeypatch.setattr(loading, "_load_builtin_or_test", lambda *a: pytest.fail("model built"))
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        models.load_adapter("tiny-random-llava", device="cuda")


def test_device_map_reaches_from_pretrained(monkeypatch, tmp_path, tiny_llava):
    """`device_map="auto"` goes to transformers' from_pretrained (accelerate); built-in names refuse it."""
    from sea_align import models
    from sea_align.models import loading

    tiny_llava.model.save_pretrained(tmp_path)
    tiny_llava.tokenizer.save_pretrained(tmp_path)
    seen = {}
    real = loading.model_class

    class Spy:
        @staticmethod
        def from_pretrained(spec, **kw):
            seen.update(kw)
            return real("llava").from_pretrained(spec, **{**kw, "device_map": None})

    monkeypatch.setattr(loading, "model_class", lambda model_type: Spy)
    models.load_adapter(str(tmp_path), device="cpu", device_map="auto")
    assert seen["device_map"] == "auto"
    models.load_adapter(str(tmp_path), device="cpu")
    assert seen["device_map"] is None  # the CPU: transformers' default placement
    with pytest.raises(models.ModelError, match="only for a pretrained model"):
        models.load_adapter("tiny-random-llava", device_map="auto")


def test_run_fails_on_a_missing_device_before_any_work(tmp_path):
    from sea_align.pipeline import run_pipeline

    out = tmp_path / "run"
    with pytest.raises(DeviceError, match="cuda:99"):
        run_pipeline(load_config("tiny", ["device=cuda:99"]), out)
    assert not out.exists()


def test_place_leaves_a_spread_model_alone():
    from types import SimpleNamespace

    from sea_align.runtime.distributed import Dist, place

    moved = []
    model = SimpleNamespace(hf_device_map={"vision": 0, "language_model": 1}, to=moved.append)
    place(SimpleNamespace(model=model, device=torch.device("cpu")), Dist(rank=0, world=2, device=torch.device("meta")))
    assert moved == []
    model.hf_device_map = {"": "cpu"}  # one device: a launch still moves it to the process's device
    place(SimpleNamespace(model=model, device=torch.device("cpu")), Dist(rank=0, world=2, device=torch.device("meta")))
    assert moved == [torch.device("meta")]
