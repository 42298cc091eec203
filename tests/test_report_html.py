"""`sea report`: report.md, PNG charts and a self-contained HTML page, checked in headless Chromium.

The run directory is synthetic (summaries, samples, index written here), so the numbers are known.
Chromium is a hard dependency of this test (Debian package `chromium`, installed by scripts/setup.sh):
if it is missing the test fails, it does not skip."""

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_jsonl
from sea_align.report import run_report
from sea_align.report.tables import agreement
from sea_align.stages.evaluate import summarize

CATS = ["1-IllegalActivitiy", "2-HateSpeech", "3-MalwareGeneration"]
ATTACKS = ["Text_only", "TYPO", "KPT"]
P_UNSAFE = {"base": 0.8, "text_only": 0.5, "aligned": 0.15}


def _samples(arm: str, rng: random.Random) -> list[dict]:
    out = []
    for c in CATS:
        for att in ATTACKS:
            for k in range(6):
                unsafe = None if k == 5 else rng.random() < P_UNSAFE[arm] * (0.5 if att == "Text_only" else 1)
                out.append(
                    {
                        "bench": "b",
                        "id": f"{c}/{k}/{att}",
                        "category": c,
                        "attack": att,
                        "harmful": True,
                        "prompt": "p",
                        "media": [],
                        "response": "r",
                        "unsafe": unsafe,
                        "refused": None if unsafe is None else not unsafe,
                        "judge": "refusal",
                        "judge_raw": "",
                    }
                )
    for k in range(10):
        out.append(
            {
                "bench": "b",
                "id": f"benign/{k}",
                "category": "benign",
                "attack": "TYPO",
                "harmful": False,
                "prompt": "p",
                "media": [],
                "response": "r",
                "unsafe": None,
                "refused": rng.random() < {"base": 0.05, "text_only": 0.3, "aligned": 0.15}[arm],
                "judge": "refusal",
                "judge_raw": "",
            }
        )
    return out


def _write_arm(ed: Path, arm: str, rng: random.Random, rejudge: bool) -> None:
    """eval/<arm>: samples and summary, and (rejudge) a second judge that disagrees on a few items."""
    ed.mkdir(parents=True)
    ss = _samples(arm, rng)
    write_jsonl(ed / "samples.jsonl", ss)
    extra = {
        "judge": {"name": "refusal", "version": "1"},
        "seed": 0,
        "media": "real files",
        "generation": {"do_sample": False, "max_new_tokens": 48},
        "adapter": None if arm == "base" else arm,
    }
    (ed / "summary.json").write_text(json.dumps(summarize(ss, extra)))
    if rejudge:
        rj = [
            dict(s, unsafe=(not s["unsafe"]) if s["unsafe"] is not None and rng.random() < 0.2 else s["unsafe"])
            for s in ss
        ]
        write_jsonl(ed / "samples.openai.jsonl", rj)
        (ed / "summary.openai.json").write_text(
            json.dumps(summarize(rj, {"judge": {"name": "openai", "version": "1"}}))
        )


def _write_index(run: Path, rng: random.Random) -> None:
    """embeddings/index.jsonl (loss curves) and the alignment training logs (loss chart)."""
    (run / "embeddings").mkdir(parents=True)
    rows = []
    for k in range(12):
        curve = list(np.exp(-np.linspace(0, 3 + k % 4, 20 + 3 * k)) * 4 + 0.05)
        rows.append(
            {
                "id": str(k),
                "phrase": "x",
                "verified": k % 3 != 0,
                "failed": k == 11,
                "loss": curve[-1],
                "steps": len(curve),
                "seconds": 1.5,
                "loss_curve": [float(v) for v in curve],
            }
        )
    write_jsonl(run / "embeddings" / "index.jsonl", rows)
    for d, scale in (("adapter", 1.0), ("adapter_text", 0.7)):
        (run / d).mkdir()
        loss = [scale * (2.5 * np.exp(-i / 15) + 0.1 + 0.05 * rng.random()) for i in range(1, 81)]
        write_jsonl(run / d / "metrics.jsonl", [{"step": i, "epoch": 0, "loss": x} for i, x in enumerate(loss, 1)])


def make_run(root: Path, arms=("base", "text_only", "aligned"), rejudge=True, index=True) -> Path:
    rng = random.Random(0)
    run = root / "run"
    for arm in arms:
        _write_arm(run / "eval" / arm, arm, rng, rejudge)
    if index:
        _write_index(run, rng)
    (run / "bench" / "00-va-safetybench-audio").mkdir(parents=True)
    (run / "bench" / "00-va-safetybench-audio" / "build_info.json").write_text(
        json.dumps(
            {
                "builder": "va-safetybench-audio",
                "source": "/data/va-safetybench",
                "seed": 3,
                "n_rows": 32,
                "skipped_types": [],
                "media_source": {"Text_only": "none", "KPT": "generated"},
            }
        )
    )
    (run / "manifest.json").write_text(
        json.dumps(
            {"model": "tiny-random-llava", "modality": "image", "seed": 0, "stages": {"synthesize": {"seconds": 12.5}}}
        )
    )
    return run


def test_report_files_and_agreement(tmp_path):
    run = make_run(tmp_path)
    md = run_report(run).read_text()
    assert "| ASR (macro over categories) |" in md and "Cohen's kappa" in md
    assert (
        "| `00-va-safetybench-audio` | va-safetybench-audio | `va-safetybench` | 3 | 32 | "
        "Text_only: none, KPT: generated | none |" in md
    )
    for png in ("synthesis", "alignment_loss", "asr_attack", "asr_scenario", "asr_vs_refusal"):
        assert f"charts/{png}.png" in md
        with Image.open(run / "charts" / f"{png}.png") as im:
            assert im.width > 300 and im.height > 200
    html = (run / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 5
    assert not re.search(r'(src|href)="(?!data:)', html)  # self-contained: no external resources
    # agreement: identical verdicts agree fully; a flipped copy disagrees fully
    a = [{"id": str(k), "harmful": True, "unsafe": k % 2 == 0} for k in range(10)]
    assert agreement(a, a)[:2] == (10, 1.0) and agreement(a, a)[2] == pytest.approx(1.0)
    assert agreement(a, [dict(s, unsafe=not s["unsafe"]) for s in a])[1] == 0.0
    assert agreement(a, [dict(s, unsafe=None) for s in a]) == (0, None, None)


def test_report_partial_run(tmp_path):
    run = make_run(tmp_path, arms=("base",), rejudge=False, index=False)
    md = run_report(run).read_text()
    assert "Not evaluated in this run: text-only alignment, SEA." in md
    assert "No embeddings/index.jsonl" in md and "Judges" not in md
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No evaluation summaries found" in run_report(empty).read_text()
    assert (empty / "report.html").is_file()


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert exe, "headless Chromium is required (Debian package 'chromium'; scripts/setup.sh installs it)"
    return exe


def screenshot(html: Path, png: Path, tmp: Path) -> subprocess.CompletedProcess:
    prof = tmp / "chromium-profile"
    prof.mkdir()
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={prof}",
            f"--screenshot={png}",
            "--window-size=1200,2000",
            "--hide-scrollbars",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_html_renders_in_chromium(tmp_path):
    run = make_run(tmp_path)
    run_report(run)
    png = tmp_path / "shot.png"
    proc = screenshot(run / "report.html", png, tmp_path)
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    with Image.open(png) as im:
        assert im.size == (1200, 2000)
        arr = np.asarray(im.convert("RGB"))
    non_white = (arr.min(axis=2) < 235).mean()
    assert 0.03 < non_white < 0.9, non_white  # text, tables and charts, not a blank or error page
    assert len(np.unique(arr.reshape(-1, 3)[::7], axis=0)) > 50  # chart colours and anti-aliased text
    # the bar colours of the three arms appear (the first chart is in the first screen)
    for rgb in ((0x8C, 0x8C, 0x8C), (0x2A, 0x7A, 0xB9)):
        assert (np.abs(arr.astype(int) - rgb).sum(axis=2) < 12).sum() > 200, rgb


def test_every_chart_decodes_in_chromium(tmp_path):
    """Chromium loads the page and decodes every inlined chart (naturalWidth > 0), with no JS errors."""
    run = make_run(tmp_path)
    run_report(run)
    html = (run / "report.html").read_text()
    probe = (
        "<script>window.addEventListener('load',()=>{const im=[...document.images];"
        "document.body.setAttribute('data-charts',im.length+'/'+im.filter(i=>i.naturalWidth>0).length);});"
        "window.onerror=()=>document.body.setAttribute('data-error','1');</script>"
    )
    check = tmp_path / "check.html"
    check.write_text(html.replace("</body>", probe + "</body>"))
    prof = tmp_path / "prof"
    prof.mkdir()
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={prof}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            check.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body[^>]*>", proc.stdout).group(0)
    assert 'data-charts="5/5"' in body and "data-error" not in body, body
