"""PNG charts for `sea report` (matplotlib, Agg backend; no display needed). Each function writes one
file and returns its path, or None when the run has nothing to draw for it. `available()` says whether
matplotlib can be imported; the report skips (and says so) every chart when it cannot (`block`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COLORS = {"base": "#8c8c8c", "text_only": "#e6a23c", "aligned": "#2a7ab9"}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def block(fn, cdir: Path, name: str, caption: str, *args) -> list[tuple]:
    """The report block of chart `fn(cdir / name, *args)`: [img] when drawn, [] when there is nothing to
    draw, a 'skipped' line without matplotlib."""
    if not available():
        return [("p", f"Chart skipped ({caption}): matplotlib is not installed.")]
    return [("img", f"charts/{name}", caption)] if fn(cdir / name, *args) else []


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(
    ax,
    groups: list[str],
    series: dict[str, list[float | None]],
    labels: dict[str, str],
    cis: dict[str, list] | None = None,
) -> None:
    """Grouped bars, one colour per arm; a missing value is drawn as a hatched 'n/a' stub. `cis[arm]`
    (optional) holds a [lo, hi] 95% interval per group, drawn as an error bar."""
    n = max(1, len(series))
    w = 0.8 / n
    x = np.arange(len(groups))
    for k, (arm, vals) in enumerate(series.items()):
        pos = x - 0.4 + w * (k + 0.5)
        ys = [100 * v if v is not None else 0.0 for v in vals]
        ax.bar(pos, ys, w, label=labels[arm], color=COLORS.get(arm, None))
        for p, v in zip(pos, vals):
            if v is None:
                ax.text(p, 1, "n/a", ha="center", va="bottom", fontsize=6, rotation=90, color="#666")
        for p, v, ci in zip(pos, vals, (cis or {}).get(arm) or []):
            if v is not None and ci and None not in ci:
                ax.errorbar(
                    [p],
                    [100 * v],
                    yerr=[[100 * (v - ci[0])], [100 * (ci[1] - v)]],
                    fmt="none",
                    ecolor="#333",
                    elinewidth=0.8,
                    capsize=2,
                )
    ax.set_xticks(x)
    ax.set_xticklabels(
        groups, rotation=30 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center", fontsize=8
    )
    ax.set_ylim(0, 105)
    ax.set_ylabel("ASR (%)")
    ax.grid(axis="y", alpha=0.3)


def asr_by_attack(path: Path, sums: dict[str, dict], labels: dict[str, str]) -> Path | None:
    attacks = sorted({a for s in sums.values() for a, d in s.get("per_attack", {}).items() if d.get("asr") is not None})
    if not attacks:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(attacks) + 2), 3.6))
    _bars(
        ax,
        attacks,
        {a: [s.get("per_attack", {}).get(t, {}).get("asr") for t in attacks] for a, s in sums.items()},
        labels,
        {a: [s.get("per_attack", {}).get(t, {}).get("asr_ci95") for t in attacks] for a, s in sums.items()},
    )
    ax.set_title("ASR per attack type (harmful items, scored only; whiskers: 95% Wilson interval)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def asr_by_scenario(
    path: Path, grid: dict[str, dict[str, dict[str, float | None]]], labels: dict[str, str]
) -> Path | None:
    """grid[arm][attack][scenario] = ASR. One panel per attack type, scenarios on x, arms side by side."""
    attacks = sorted({t for g in grid.values() for t in g})
    if not attacks:
        return None
    cats = sorted({c for g in grid.values() for t in g.values() for c in t})
    plt = _plt()
    fig, axes = plt.subplots(len(attacks), 1, figsize=(max(7, 0.9 * len(cats) + 2), 2.6 * len(attacks)), squeeze=False)
    for ax, att in zip(axes[:, 0], attacks):
        _bars(ax, cats, {a: [grid[a].get(att, {}).get(c) for c in cats] for a in grid}, labels)
        ax.set_title(f"ASR per scenario: {att}", fontsize=10)
    axes[0, 0].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def synthesis(path: Path, idx: list[dict[str, Any]]) -> Path | None:
    curves = [r for r in idx if r.get("loss_curve")]
    if not idx:
        return None
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    for r in curves:
        ax.plot(r["loss_curve"], color="#2a9d4b" if r.get("verified") else "#c0392b", alpha=0.35, lw=0.8)
    if curves:
        n = max(len(r["loss_curve"]) for r in curves)
        padded = np.array([r["loss_curve"] + [r["loss_curve"][-1]] * (n - len(r["loss_curve"])) for r in curves])
        ax.plot(np.median(padded, axis=0), color="black", lw=2, label="median (finished curves held flat)")
        ax.legend(fontsize=8)
        lo, hi = float(padded.min()), float(padded.max())
        if lo > 0 and hi / lo > 10:  # log scale only when the curves span a decade
            ax.set_yscale("log")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("mean CE of the auxiliary targets")
    ax.set_title(f"Synthesis loss curves ({len(curves)} embeddings; green = verified, red = not)")
    ax.grid(alpha=0.3)
    ver = sum(bool(r.get("verified")) for r in idx)
    failed = sum(bool(r.get("failed")) for r in idx)
    bx.bar(
        ["verified", "not verified", "failed"],
        [ver, len(idx) - ver - failed, failed],
        color=["#2a9d4b", "#c0392b", "#555"],
    )
    bx.set_title(f"verification rate {100 * ver / len(idx):.1f}%", fontsize=10)
    bx.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def asr_vs_refusal(path: Path, sums: dict[str, dict], labels: dict[str, str]) -> Path | None:
    pts = {a: (s.get("refusal_rate_harmless"), s.get("asr")) for a, s in sums.items()}
    pts = {a: p for a, p in pts.items() if None not in p}
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for k, (a, (x, y)) in enumerate(pts.items()):
        ax.scatter([100 * x], [100 * y], s=90 - 25 * k, color=COLORS.get(a), label=labels[a], zorder=3 + k)
        # labels stacked by arm so coinciding points stay readable
        ax.annotate(labels[a], (100 * x, 100 * y), textcoords="offset points", xytext=(8, -4 - 11 * k), fontsize=8)
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    return _finish(
        plt,
        fig,
        ax,
        path,
        "over-refusal on harmless items (%)",
        "ASR, macro over scenarios (%)",
        "Safety vs over-refusal (lower-left is better)",
    )


def _finish(plt: Any, fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Labels, grid and legend, then the PNG written and the figure closed."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _smooth(ys: list[float], w: int) -> np.ndarray:
    """Trailing moving average over up to `w` points (the first points average what there is)."""
    c = np.cumsum(np.insert(np.asarray(ys, dtype=float), 0, 0.0))
    idx = np.arange(1, len(ys) + 1)
    lo = np.maximum(0, idx - w)
    return (c[idx] - c[lo]) / (idx - lo)


def alignment_loss(path: Path, logs: dict[str, list[dict[str, Any]]], labels: dict[str, str]) -> Path | None:
    """Training loss against step, one line per adapter (logs[arm] = metrics.jsonl rows with step and loss):
    the raw per-step loss (thin) and a moving average over ~5% of the steps (thick)."""
    series = {}
    for arm, rows in logs.items():
        pts = sorted(
            (r["step"], r["loss"])
            for r in rows
            if isinstance(r.get("step"), (int, float))
            and isinstance(r.get("loss"), (int, float))
            and np.isfinite(r["loss"])
        )
        if pts:
            series[arm] = pts
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    lo, hi = np.inf, -np.inf
    for arm, pts in series.items():
        x, y = [p[0] for p in pts], [p[1] for p in pts]
        col = COLORS.get(arm)
        ax.plot(x, y, color=col, alpha=0.3, lw=0.8)
        w = max(1, len(y) // 20)
        ax.plot(x, _smooth(y, w), color=col, lw=2, label=f"{labels.get(arm, arm)} (moving average of {w})")
        lo, hi = min(lo, min(y)), max(hi, max(y))
    if lo > 0 and hi / lo > 10:  # log scale only when the losses span a decade
        ax.set_yscale("log")
    return _finish(plt, fig, ax, path, "training step", "training loss (per batch)", "Alignment loss (LoRA training)")


def attack_curves(path: Path, curves: dict[str, list[dict[str, Any]]], xlabel: str) -> Path | None:
    """ASR against the attack budget, one line per arm (curves[arm] = summary.json `per_eps`), the 95% Wilson
    interval as a band; budgets with nothing scored are left out of the line."""
    series = {a: [p for p in pts if p.get("asr") is not None] for a, pts in curves.items()}
    series = {a: pts for a, pts in series.items() if pts}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for arm, pts in series.items():
        x = [p["eps"] for p in pts]
        (line,) = ax.plot(x, [100 * p["asr"] for p in pts], marker="o", color=COLORS.get(arm), label=arm)
        lo = [100 * (p["ci95"][0] if p["ci95"][0] is not None else p["asr"]) for p in pts]
        hi = [100 * (p["ci95"][1] if p["ci95"][1] is not None else p["asr"]) for p in pts]
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(50, color="#999", lw=0.8, ls="--")
    ax.set_ylim(-3, 103)
    return _finish(plt, fig, ax, path, xlabel, "attack success (%)", "White-box attack: ASR against the budget")
