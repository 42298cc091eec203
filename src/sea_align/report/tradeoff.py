"""`sea tradeoff RUN [RUN ...] --out chart.png`: attack success against harmless refusal across runs, one
point per setting (a run's base, text-only and SEA arms), one colour per model (or per `--group`), the
95% intervals as bars: where each setting sits on the safety / over-refusal trade-off, across model sizes.

Reads each run's `manifest.json` (the model) and `eval/<arm>/summary.json` (`asr`, `asr_ci95`,
`refusal_rate_harmless`, `refusal_rate_harmless_ci95`); writes the PNG and, beside it, the points as JSON
(`<out>.json`). `--attack NAME` plots one attack form's ASR (a summary's `per_attack`) instead of the macro ASR,
against the refusal of harmless requests in that same form where the run has them (else all harmless requests).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sea_align.report import charts
from sea_align.report.tables import ARMS, LABEL, read_json
from sea_align.runtime.io import DataError, atomic_path, atomic_write_json

MARKERS = {"base": "o", "text_only": "s", "aligned": "^"}


@dataclass
class Point:
    run: str
    arm: str
    group: str  # the colour: the run's model, or what --group says
    asr: float
    asr_ci95: list[float] | None
    refusal: float
    refusal_ci95: list[float] | None
    n_harmless: int | None


def collect(runs: list[Path], groups: dict[str, str] | None = None, attack: str = "") -> list[Point]:
    """Every arm of every run that has both rates; a run with none is an error naming it."""
    out: list[Point] = []
    seen: set[tuple] = set()
    for run in runs:
        if not run.is_dir():
            raise DataError(f"{run}: no such run directory")
        group = (groups or {}).get(run.name) or read_json(run / "manifest.json").get("model") or run.name
        found = 0
        for arm in ARMS:
            s = read_json(run / "eval" / arm / "summary.json")
            src = (s.get("per_attack") or {}).get(attack, {}) if attack else s
            # the refusal of harmless requests in the same form, where the run has such items
            ref = src if src.get("refusal_rate_harmless") is not None else s
            if src.get("asr") is None or ref.get("refusal_rate_harmless") is None:
                continue
            found += 1
            # a sweep run that copied another run's evaluation (its base arm) measured nothing new: one point
            key = (group, arm, src["asr"], ref["refusal_rate_harmless"], ref.get("n_harmless_scored"))
            if key in seen:
                continue
            seen.add(key)
            out.append(
                Point(
                    run.name,
                    arm,
                    group,
                    src["asr"],
                    src.get("asr_ci95"),
                    ref["refusal_rate_harmless"],
                    ref.get("refusal_rate_harmless_ci95"),
                    ref.get("n_harmless_scored"),
                )
            )
        if not found:
            what = f"attack '{attack}' ASR" if attack else "ASR"
            raise DataError(f"{run}: no arm with both {what} and harmless refusal (eval/<arm>/summary.json)")
    return out


def _err(v: float, ci: list[float] | None) -> list[float]:
    """[below, above] in percentage points, 0 where the interval is unknown."""
    if not ci or None in ci:
        return [0.0, 0.0]
    return [100 * (v - ci[0]), 100 * (ci[1] - v)]


def _label_offsets(points: list[Point]) -> list[int]:
    """Vertical label offsets (points), so that labels of nearby points do not overprint: each label takes
    the first of 3, 11, -5, 19, -13, ... points above its marker whose line is clear (3 percentage points) of
    every earlier label that starts within 30 points of x (a 6-point font is ~2.5 points of the axis)."""
    per_pt = 110 / 280  # axis percentage points per typographic point at the chart's size
    placed: list[tuple[float, float]] = []  # (x, y of the label's line), in axis units
    out = []
    for p in points:
        x, y = 100 * p.refusal, 100 * p.asr
        near = [b for a, b in placed if abs(x - a) < 30]
        for k in range(12):
            off = 3 + 8 * ((k + 1) // 2) * (1 if k % 2 else -1)  # 3, 11, -5, 19, -13, ...
            if all(abs(y + off * per_pt - b) >= 3 for b in near):
                break
        out.append(off)
        placed.append((x, y + off * per_pt))
    return out


def chart(path: Path, points: list[Point], title: str) -> Path:
    plt = charts._plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    palette = plt.get_cmap("tab10")
    colours = {g: palette(k % 10) for k, g in enumerate(dict.fromkeys(p.group for p in points))}
    for p in points:
        ax.errorbar(
            [100 * p.refusal],
            [100 * p.asr],
            xerr=[[e] for e in _err(p.refusal, p.refusal_ci95)],
            yerr=[[e] for e in _err(p.asr, p.asr_ci95)],
            fmt=MARKERS.get(p.arm, "o"),
            color=colours[p.group],
            ecolor=colours[p.group],
            elinewidth=0.8,
            capsize=2,
            markersize=7,
        )
    for p, dy in zip(points, _label_offsets(points)):
        ax.annotate(f"{p.run} {LABEL.get(p.arm, p.arm)}", (100 * p.refusal, 100 * p.asr), fontsize=6, xytext=(4, dy),
                    textcoords="offset points")  # fmt: skip
    for g, c in colours.items():  # legend: one entry per colour, one per marker
        ax.plot([], [], "o", color=c, label=g)
    for arm, m in MARKERS.items():
        ax.plot([], [], m, color="#444", label=LABEL[arm], fillstyle="none")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("harmless requests refused (%)")
    ax.set_ylabel("attack success (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # the chart appears whole or not at all
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def run_tradeoff(
    runs: list[str | Path], out: str | Path, groups: dict[str, str] | None = None, attack: str = ""
) -> Path:
    """The chart of `runs` at `out` (PNG) and its points at `<out>.json`."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise DataError(f"--out {out}: the chart is a PNG (name it *.png)")
    points = collect([Path(r) for r in runs], groups, attack)
    if not charts.available():
        raise DataError("tradeoff: the chart needs matplotlib (pip install matplotlib)")
    what = f"{attack} ASR" if attack else "ASR (macro over scenarios)"
    chart(out, points, f"{what} vs harmless refusal, 95% intervals (lower-left is better)")
    atomic_write_json(out.with_suffix(".json"), {"attack": attack or "macro", "points": [asdict(p) for p in points]})
    return out
