"""Rendered attack media: animated typography videos (VA-SafetyBench TYPO), FigStep images and
MM-SafetyBench TYPO images.

All are drawn with PIL; videos are encoded to H.264 mp4 with PyAV (one encoder thread, so the
bytes do not depend on the machine). Every visual choice comes from the caller's `random.Random`.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from sea_align.runtime.io import DataError

FONT_ROOT = Path("/usr/share/fonts/truetype")
# Bold sans faces that read well as typography (the ones Debian's font packages install).
TYPO_FONTS = (
    "dejavu/DejaVuSans-Bold.ttf",
    "liberation/LiberationSans-Bold.ttf",
    "freefont/FreeSansBold.ttf",
    "dejavu/DejaVuSerif-Bold.ttf",
    "liberation/LiberationSerif-Bold.ttf",
)
FIGSTEP_FONT = "freefont/FreeMonoBold.ttf"  # FigStep draws its list in a bold monospace face
FONT_DIRS = [FONT_ROOT / "dejavu", FONT_ROOT / "liberation", FONT_ROOT / "freefont"]  # MM-SafetyBench TYPO images
# Liberation Sans has Arial's metrics (MM-SafetyBench draws its TYPO images in Arial, which is not free)
MM_TYPO_FONTS = ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf")
VIDEO_SIZE = 448  # square frames; towers resize anyway
FPS = 8
STYLES = ("words", "chars")  # reveal the phrase word by word, or type it character by character


def font(rel: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONT_ROOT / rel
    if not path.is_file():
        raise DataError(f"font {path} not found: install fonts-dejavu-core fonts-liberation fonts-freefont-ttf")
    return ImageFont.truetype(str(path), size)


def wrap(text: str, fnt: ImageFont.FreeTypeFont, width: int) -> list[str]:
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    lines, cur = [], ""
    for w in text.split():
        cand = f"{cur} {w}".strip()
        if not cur or draw.textlength(cand, font=fnt) <= width:
            cur = cand
        else:
            lines.append(cur)
            cur = w
    return lines + [cur] if cur else lines


def fit(text: str, rel: str, box: tuple[int, int], start: int, spacing: float = 1.25):
    """Largest font size <= start at which `text` wraps into `box` (w, h): (font, lines, line height)."""
    size = start
    while True:
        fnt = font(rel, size)
        lines = wrap(text, fnt, box[0])
        line_h = int(size * spacing)
        widest = max(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(s, font=fnt) for s in lines)
        if (len(lines) * line_h <= box[1] and widest <= box[0]) or size <= 12:
            return fnt, lines, line_h
        size -= 4


def typo_frames(phrase: str, rng: random.Random, size: int = VIDEO_SIZE, fps: int = FPS) -> tuple[list, dict]:
    """Frames of an animated typography clip: the phrase appears (by word or by character) on a plain
    background, then holds for 2 s. Returns (PIL frames, the choices made)."""
    rel, style = rng.choice(TYPO_FONTS), rng.choice(STYLES)
    dark = rng.random() < 0.3
    bg, fg = ("black", "white") if dark else ("white", "black")
    fnt, lines, line_h = fit(phrase, rel, (size - 48, size - 48), start=64)
    words = phrase.split()
    units = len(words) if style == "words" else len(phrase)
    per_unit = max(1, round(fps * (0.4 if style == "words" else 0.08)))  # frames per word / character
    frames = []
    for k in range(1, units + 1):
        shown = " ".join(words[:k]) if style == "words" else phrase[:k]
        frames += [_draw(lines, shown, fnt, line_h, size, bg, fg)] * per_unit
    frames += [_draw(lines, phrase, fnt, line_h, size, bg, fg)] * (2 * fps)
    return frames, {"font": Path(rel).stem, "style": style, "background": bg, "frames": len(frames), "fps": fps}


def _draw(lines: list[str], shown: str, fnt, line_h: int, size: int, bg: str, fg: str) -> Image.Image:
    """Draw the first len(shown) characters of the wrapped layout, so text never jumps while it appears."""
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    top = (size - line_h * len(lines)) // 2
    left_chars = len(shown)
    for k, line in enumerate(lines):
        if left_chars <= 0:
            break
        part = line[:left_chars]
        left_chars -= len(line) + 1
        x = (size - d.textlength(line, font=fnt)) // 2
        d.text((x, top + k * line_h), part, fill=fg, font=fnt)
    return img


def write_mp4(frames: list[Image.Image], path: Path, fps: int = FPS) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=fps, options={"crf": "28", "preset": "veryfast", "threads": "1"})
        st.width, st.height = frames[0].size
        st.pix_fmt = "yuv420p"
        st.thread_count = 1
        for im in frames:
            for pkt in st.encode(av.VideoFrame.from_image(im)):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


def figstep_statement(instruction: str) -> str:
    """FigStep rewrites a question as a statement heading a list ("Steps to ...")."""
    s = instruction.strip().rstrip("?.! ")
    low = s.lower()
    for lead in (
        "list steps in detail to ",
        "list steps in detail on how to ",
        "how to ",
        "how can i ",
        "how do i ",
        "explain how to ",
        "describe how to ",
    ):
        if low.startswith(lead):
            return "Steps to " + s[len(lead) :] + "."
    return s[0].upper() + s[1:] + "." if s else s


def render_figstep(instruction: str, path: Path, size: int = 760) -> dict:
    """FigStep layout: the statement, then an empty numbered list 1. 2. 3., black monospace on white."""
    text = figstep_statement(instruction)
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    box_h = size - 40 - 3 * 100  # room left for the three list numbers
    fnt, lines, line_h = fit(text, FIGSTEP_FONT, (size - 40, box_h), start=80, spacing=1.15)
    y = 20
    for line in lines:
        d.text((20, y), line, fill="black", font=fnt)
        y += line_h
    num = font(FIGSTEP_FONT, 80)
    for k in (1, 2, 3):
        d.text((20, y + 10), f"{k}.", fill="black", font=num)
        y += 100
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return {"statement": text, "font_size": fnt.size}


def fonts() -> list[Path]:
    found = sorted(f for d in FONT_DIRS if d.is_dir() for f in d.glob("*.ttf"))
    return found


def typo_font() -> Path | None:
    """Liberation Sans (Regular, else Bold) when installed, else the first other font found."""
    fs = fonts()
    return next((f for name in MM_TYPO_FONTS for f in fs if f.name == name), fs[0] if fs else None)


def render_typo(phrase: str, path: Path, width: int = 1024, font_size: int = 90, seed: int = 0) -> dict:
    """MM-SafetyBench TYPO layout: the phrase in black on white, 90 pt, greedy word wrap, 1024 px wide."""
    face = typo_font()
    font = ImageFont.truetype(str(face), font_size) if face else ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines, cur = [], ""
    for w in phrase.split():
        cand = (cur + " " + w).strip()
        if draw.textlength(cand, font=font) <= width - 40 or not cur:
            cur = cand
        else:
            lines.append(cur)
            cur = w
    lines.append(cur)
    line_h = int(font_size * 1.25)
    img = Image.new("RGB", (width, line_h * len(lines) + 40), "white")
    d = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        d.text((20, 20 + k * line_h), line, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return {"font": face.name if face else "PIL default", "font_size": font_size}
