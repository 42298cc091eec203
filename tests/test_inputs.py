"""Our input tensors equal each family's transformers processor's for the same media, on the tiny random
models; video frames are sampled while decoding; audio at other rates is resampled by PyAV.

The processors run on their PIL backend (no torchvision here). The video processors of LLaVA-NeXT-Video
and Qwen2-VL need torchvision, so video is compared frame by frame against the image processor with
the video processor's settings (same resize/normalise per frame; the temporal stacking is checked
against the layout of the image processor, whose single frame is repeated T times)."""

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, Qwen2AudioProcessor, Qwen2VLImageProcessorPil, WhisperFeatureExtractor

from sea_align.models import load_adapter, media
from sea_align.models.media import QWEN_VIDEO_PIXELS, load_audio, load_video, resample
from sea_align.models.registry import adapter_class
from sea_align.runtime.io import DataError


def _image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny():
    cache = {}

    def get(family, processors=None):
        if family not in cache:
            cache[family] = load_adapter(f"tiny-random-{family}")
        a = cache[family]
        return a if processors is None else adapter_class(family)(a.model, a.tokenizer, processors)

    return get


# ----- Qwen2-VL / Qwen2.5-VL ---------------------------------------------------------------------
QWEN_CONFIGS = [
    {},  # the processor's defaults (min 56*56, max 28*28*1280 pixels)
    {"min_pixels": 28 * 28, "max_pixels": 56 * 56},  # the tiny checkpoint's own
    {"size": {"shortest_edge": 3136, "longest_edge": 40000}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("cfg", QWEN_CONFIGS)
@pytest.mark.parametrize("wh", [(300, 180), (52, 40), (17, 640)])
def test_qwen_image_pixels_equal_processor(tiny, family, cfg, wh):
    a = tiny(family, {"preprocessor": cfg})
    img = _image(*wh)
    pv, grid = a.pixels("image", [img])
    ref = Qwen2VLImageProcessorPil(**cfg)(img, return_tensors="np")
    assert list(grid) == ref["image_grid_thw"][0].tolist()
    np.testing.assert_array_equal(pv, ref["pixel_values"])


def test_qwen_dynamic_resolution_is_the_default(tiny):
    """300x180 at the processor's defaults: 168x308 pixels, a 12x22 grid (not a 224 square's 16x16)."""
    a = tiny("qwen2_vl", {})
    assert a.pixels("image", [_image(300, 180)])[1] == (1, 12, 22)
    pinned = tiny("qwen2_vl", {"image_size": 224})  # a user can still pin one square size
    assert pinned.pixels("image", [_image(300, 180)])[1] == (1, 16, 16)
    with pytest.raises(DataError, match="aspect ratio over 200"):
        a.pixels("image", [_image(1, 300)])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_logits_equal_forward_on_processor_output(tiny, family):
    """At 300x180 and the default processor, our path (grid from our pixels, positions from
    get_rope_index) gives the logits of the model's own forward on the processor's tensors."""
    from sea_align.models import Item

    a = tiny(family, {})
    img = _image(300, 180)
    f = a.encode("image", [img])[0]
    batch = a.build([Item("What is shown?", "image", a.to_llm("image", f), f.meta)])
    ref = Qwen2VLImageProcessorPil()(img, return_tensors="pt")
    assert int((batch.ids == a.placeholder_ids["image"]).sum()) == int(ref["image_grid_thw"].prod()) // a.merge**2
    with torch.no_grad():
        ours = a.lm_head(a._lm(batch.inputs_embeds, batch.attention_mask, batch.position_ids).last_hidden_state)
        native = a.model(
            input_ids=batch.ids,
            attention_mask=batch.attention_mask,
            pixel_values=ref["pixel_values"],
            image_grid_thw=ref["image_grid_thw"],
            mm_token_type_ids=(batch.ids == a.placeholder_ids["image"]).int(),
        ).logits
    torch.testing.assert_close(ours, native, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cfg", [{}, {"min_pixels": 28 * 28, "max_pixels": 56 * 56}])
@pytest.mark.parametrize("n", [4, 3])
def test_qwen_video_pixels_equal_processor_per_frame(tiny, cfg, n):
    """Each frame as the image processor makes it (with the video bounds: the video processor's defaults,
    or preprocessor_config.json's, as transformers falls back), two frames per temporal patch, an odd
    count padded with the last frame."""
    a = tiny("qwen2_vl", {"preprocessor": cfg})
    frames = [_image(120, 72, seed=i) for i in range(n)]
    pv, (t, gh, gw) = a.pixels("video", frames)
    lo, hi = (cfg["min_pixels"], cfg["max_pixels"]) if cfg else QWEN_VIDEO_PIXELS
    proc = Qwen2VLImageProcessorPil(min_pixels=lo, max_pixels=hi)
    T, P = a.temporal, a.patch
    assert t == -(-n // T)
    ours = pv.reshape(t, gh * gw, 3, T, P * P)
    for k in range(t * T):
        ref = proc(frames[min(k, n - 1)], return_tensors="np")
        assert ref["image_grid_thw"][0].tolist() == [1, gh, gw]
        theirs = ref["pixel_values"].reshape(gh * gw, 3, T, P * P)[:, :, 0]  # the frame repeated T times
        np.testing.assert_array_equal(ours[k // T, :, :, k % T], theirs)


def test_qwen_blank_grid_is_consistent(tiny):
    """The synthesis blank goes through the same sizing: its grid gives the token count positions use."""
    a = tiny("qwen2_vl")
    f = a.blank("image")
    assert f.meta["grid"] == (1, 4, 4) and f.x.shape[0] == 16  # a 224 white square within 56x56 pixels
    assert a.to_llm("image", f).shape[0] == 4


# ----- LLaVA / LLaVA-NeXT-Video ---------------------------------------------------------------------
LLAVA_CONFIGS = [
    {},
    {
        "size": {"shortest_edge": 40},
        "crop_size": {"height": 32, "width": 32},
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
    },
]


def _clip(cfg):
    """CLIPImageProcessor as a tiny llava-hf checkpoint's config would set it (tower side 32)."""
    return CLIPImageProcessorPil(**{"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, **cfg})


@pytest.mark.parametrize("cfg", LLAVA_CONFIGS)
@pytest.mark.parametrize("wh", [(52, 40), (40, 52), (300, 180), (33, 97), (32, 32)])
def test_llava_pixels_equal_clip_processor(tiny, cfg, wh):
    a = tiny("llava", {"preprocessor": cfg})
    img = _image(*wh)
    np.testing.assert_array_equal(a.pixels([img]).numpy(), _clip(cfg)(img, return_tensors="np")["pixel_values"])


@pytest.mark.parametrize("key", ["preprocessor", "video_preprocessor"])
def test_llava_next_video_frames_equal_clip_processor(tiny, key):
    """LlavaNextVideoVideoProcessor (torchvision-only) is CLIP resize + crop + normalise per frame: compared
    against CLIPImageProcessor frame by frame, with video_preprocessor_config.json taking precedence."""
    cfg = LLAVA_CONFIGS[1]
    procs = {key: cfg} if key == "preprocessor" else {key: cfg, "preprocessor": {"crop_size": 16}}
    a = tiny("llava_next_video", procs)
    frames = [_image(300, 180, seed=i) for i in range(a.n_frames)]
    ref = np.concatenate([_clip(cfg)(f, return_tensors="np")["pixel_values"] for f in frames])
    np.testing.assert_array_equal(a.pixels(frames).numpy(), ref)


# ----- Qwen2-Audio ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [1.3, 3.0])
@pytest.mark.parametrize("from_config", [False, True])
def test_qwen2_audio_features_equal_processor(tiny, seconds, from_config):
    """Qwen2AudioProcessor's feature extractor, as a tiny checkpoint's preprocessor_config.json sets it
    (80 mel bins, 2 s chunks); a clip longer than the chunk is truncated the same way. Its audio-token
    count equals our slot count."""
    fe = WhisperFeatureExtractor(feature_size=80, chunk_length=2)
    a = tiny("qwen2_audio", {"preprocessor": fe.to_dict()} if from_config else {})
    wav = (np.random.default_rng(0).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)
    proc = Qwen2AudioProcessor(feature_extractor=fe, tokenizer=a.tokenizer)
    ref = proc(text=a.chat("Listen.", "audio"), audio=wav, sampling_rate=16000, return_tensors="np")
    ours = a.features(wav)
    np.testing.assert_array_equal(ours["input_features"], ref["input_features"])
    np.testing.assert_array_equal(ours["feature_attention_mask"], ref["feature_attention_mask"])
    n_tokens = int((ref["input_ids"] == a.placeholder_ids["audio"]).sum())
    assert a.encode("audio", [wav])[0].x.shape[0] == n_tokens


# ----- decoding ----------------------------------------------------------------------------------------
def _clip_file(path, n=11):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(
                np.full((24, 32, 3), (i * 23, 255 - i * 20, i * 7), np.uint8), format="rgb24"
            )
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _full_decode(path, n_frames):
    """The old way: every frame to PIL, then pick."""
    import av

    with av.open(str(path)) as c:
        frames = [f.to_image().convert("RGB") for f in c.decode(video=0)]
    return [frames[i] for i in np.linspace(0, len(frames) - 1, n_frames).round().astype(int)]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])  # mkv: no frame count in the container (frames == 0)
@pytest.mark.parametrize("n_frames", [1, 4, 8, 20])
def test_load_video_samples_the_same_frames(tmp_path, ext, n_frames):
    path = _clip_file(tmp_path / f"clip.{ext}")
    got, want = load_video(path, n_frames), _full_decode(path, n_frames)
    assert len(got) == n_frames
    assert all(np.array_equal(np.asarray(g), np.asarray(w)) for g, w in zip(got, want))


@pytest.mark.parametrize("wrong", [0, 6, 15])
def test_load_video_survives_wrong_frame_metadata(tmp_path, monkeypatch, wrong):
    path = _clip_file(tmp_path / "clip.mp4")
    want = _full_decode(path, 5)
    monkeypatch.setattr(media, "_video_stream_frames", lambda p: wrong)
    got = load_video(path, 5)
    assert len(got) == 5 and all(np.array_equal(np.asarray(g), np.asarray(w)) for g, w in zip(got, want))


def test_load_video_without_video_stream_is_one_line(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    with pytest.raises(DataError, match=r"a\.wav: has no video stream$"):
        load_video(wav)


def _av_resample(x, sr):
    import av

    r = av.AudioResampler(format="flt", layout="mono", rate=16000)
    frame = av.AudioFrame.from_ndarray(x[None].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = sr
    out = [o.to_ndarray().reshape(-1) for o in [*r.resample(frame), *r.resample(None)]]
    return np.concatenate(out)


@pytest.mark.parametrize("sr,fmt", [(44100, "wav"), (8000, "wav"), (44100, "flac")])
def test_audio_at_other_rates_is_resampled_by_pyav(tmp_path, sr, fmt):
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, np.stack([x, x], 1), sr)  # stereo: averaged to mono first
    wav = load_audio(path)
    file_x = sf.read(path, dtype="float32")[0].mean(1)
    np.testing.assert_array_equal(wav, _av_resample(file_x, sr))
    assert len(wav) == 16000  # one second, the resampler's tail flushed
    assert abs(np.abs(np.fft.rfft(wav)).argmax() * 16000 / len(wav) - 440) <= 1
    lin = np.interp(np.linspace(0, 1, 16000, endpoint=False), np.linspace(0, 1, sr, endpoint=False), file_x)
    assert not np.allclose(wav, lin, atol=1e-5)  # not the old linear interpolation


def test_audio_at_16k_and_arrays_pass_through(tmp_path):
    x = (np.random.default_rng(0).standard_normal(1600) * 0.1).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), x)
    np.testing.assert_array_equal(load_audio(x), x)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    assert len(resample(x, 8000, 16000)) == 3200


def test_resampling_filters_what_16_khz_cannot_hold():
    """A 10 kHz tone at 44.1 kHz is above the 8 kHz Nyquist limit: removed, not aliased to 6 kHz (linear
    interpolation let it through at full amplitude)."""
    x = (0.5 * np.sin(2 * np.pi * 10000 * np.arange(44100) / 44100)).astype(np.float32)
    assert np.sqrt(np.mean(resample(x, 44100, 16000) ** 2)) < 0.01


def test_compressed_audio_keeps_its_tail(tmp_path):
    """Non-WAV/FLAC files decode through PyAV; the resampler's buffered tail is flushed."""
    import av

    sr, n = 44100, 44100
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)
    path = tmp_path / "tone.mp3"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libmp3lame", rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
        frame.sample_rate = sr
        to_codec = av.AudioResampler(format=s.format.name, layout="mono", rate=sr, frame_size=s.frame_size)
        for f in to_codec.resample(frame):
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert abs(len(load_audio(path)) - 16000) <= 4  # the decoder drops mp3's padding; unflushed: 15984
