"""The image recipe's caches of what the frozen recogniser reads: typography images (`render_set`) and
animated typography clips (`video_set`) are rendered and OCR'd once, in shards of JSONL rows
`work_dir/render/<name>-NNNN.jsonl` ({"text", "ocr"}; written whole). Rendering is deterministic from
the seed, so a lost cache is rebuilt identically."""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from sea_align.organism import assemble
from sea_align.organism.samples import read_rows
from sea_align.runtime.io import atomic_write_jsonl


def cached(cfg, texts: list[str], name: str, shard: int, make: Callable) -> list[dict]:
    """Rows of `texts`, made by `make(chunk, start)` one shard at a time and cached as
    `work_dir/render/<name>-NNNN.jsonl` (written whole; an existing shard is only read)."""
    from tqdm.auto import tqdm

    rows = []
    for k in tqdm(range(0, len(texts), shard), desc=f"render {name}"):
        f = cfg.work_dir / "render" / f"{name}-{k // shard:04d}.jsonl"
        if not f.exists():
            atomic_write_jsonl(f, make(texts[k : k + shard], k))
        rows += read_rows(f)
    return rows


def render_set(cfg, texts: list[str], tag: str) -> None:
    """Render `texts` (one image each), run the frozen recogniser once, cache its text: {"text", "ocr"}."""
    from sea_align.organism.ocr import OcrRecognizer, clean_text, ctc_decode
    from sea_align.organism.render import preprocess_images, render_typo, render_varied

    net = OcrRecognizer.from_english_g2()

    def make(chunk: list[str], k: int) -> list[dict]:
        rng = random.Random(f"{cfg.seed}-render-{tag}-{k}")
        imgs = [
            render_typo(t, font_size=rng.choice([60, 75, 90]))
            if rng.random() < cfg.typo_share
            else render_varied(t, rng)
            for t in chunk
        ]
        ocr = []
        for j in range(0, len(imgs), 25):
            with torch.no_grad():
                ocr += [clean_text(t) for t in ctc_decode(net(preprocess_images(imgs[j : j + 25]))[1])]
        return [{"text": t, "ocr": o} for t, o in zip(chunk, ocr)]

    cached(cfg, texts, tag, 250, make)


def load_render(cfg, tag: str) -> dict:
    """{"texts": true phrases, "ocr": what the recogniser read in their renderings}, every cached shard."""
    rows = [r for f in sorted((cfg.work_dir / "render").glob(f"{tag}-*.jsonl")) for r in read_rows(f)]
    return {"texts": [r["text"] for r in rows], "ocr": [r["ocr"] for r in rows]}


def video_set(cfg, texts: list[str], tag: str) -> list[list[str]]:
    """Animated typography clips of `texts`, sampled to the video model's frames, OCR'd once; cached.
    Returns the recogniser's text of each clip's frames."""
    from sea_align.benchmarks.typovideo import typo_frames
    from sea_align.models.media import load_video
    from sea_align.organism.ocr import OcrRecognizer, clean_text, ctc_decode
    from sea_align.organism.render import preprocess_images

    net = OcrRecognizer.from_english_g2()

    def make(chunk: list[str], k: int) -> list[dict]:
        rng = random.Random(f"{cfg.seed}-video-{tag}-{k}")
        frames = [fr for t in chunk for fr in load_video(typo_frames(t, rng)[0], assemble.VIDEO_FRAMES)]
        with torch.no_grad():
            ocr = [
                clean_text(t)
                for j in range(0, len(frames), 40)
                for t in ctc_decode(net(preprocess_images(frames[j : j + 40]))[1])
            ]
        n = assemble.VIDEO_FRAMES
        return [{"text": t, "ocr": ocr[i * n : (i + 1) * n]} for i, t in enumerate(chunk)]

    return [r["ocr"] for r in cached(cfg, texts, f"video-{tag}", 100, make)]
