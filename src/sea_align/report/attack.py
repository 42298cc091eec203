"""The report's attack section: `sea attack` results kept under RUN/attack/<arm>/ (summary.json each), as
ASR-against-budget curves (one chart per space and norm, one line per arm) and a table with intervals and
the budget to 50% ASR. Nothing is shown when a run has no attack results."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from sea_align.report import charts
from sea_align.report.tables import cell, read_json


def load_attacks(run: Path) -> dict[str, dict[str, Any]]:
    """{folder name: summary.json} of every attack result under RUN/attack/."""
    found = sorted((run / "attack").glob("*/summary.json"))
    return {p.parent.name: s for p in found if isinstance((s := read_json(p)).get("per_eps"), list)}


def _row(name: str, s: dict[str, Any], budgets: list[float]) -> list[Any]:
    by = {p["eps"]: p for p in s["per_eps"]}
    cells = [cell(by[e].get("asr"), by[e].get("ci95"), by[e].get("n_scored")) if e in by else "-" for e in budgets]
    return [
        f"{s.get('arm', name)} (`{name}/`)",
        *cells,
        budget_cell(s.get("budget_50"), s.get("budget_50_ci95")),
        budget_cell(s.get("budget_50_within"), s.get("budget_50_within_ci95")) if "budget_50_within" in s else "-",
    ]


def budget_cell(b50: float | None, ci: dict[str, Any] | None) -> str:
    """The budget cell, "0.92 [0.61-1.4]": the budget to 50% and its bootstrap interval; an end past the largest budget
    measured reads "not reached"."""

    def show(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.3g}"

    if not ci or ci.get("n_boot", 0) == 0:
        return show(b50)
    return f"{show(b50)} [{show(ci.get('lo'))}-{show(ci.get('hi'))}]"


def attack_blocks(run: Path, cdir: Path) -> list[tuple]:
    """The section's blocks: per (space, norm), a chart and a table (rows = arms, columns = budgets)."""
    sums = load_attacks(run)
    if not sums:
        return []
    blocks: list[tuple] = [
        ("h2", "White-box attack budget"),
        (
            "p",
            "`sea attack` results under `attack/`: attack success (judged unsafe, scored items only) at each "
            "budget, with its 95% Wilson interval; the budget to 50% ASR is interpolated between budgets, with a "
            "95% bootstrap interval over the items (an upper end past the largest budget reads 'not reached'); "
            "'within' counts an item broken at a budget or any smaller one (the balls are nested, so an attacker "
            "with a budget holds the smaller budgets' inputs too): that curve never falls.",
        ),
    ]
    groups: dict[tuple[str, str, str], dict[str, dict]] = defaultdict(dict)
    for name, s in sums.items():
        groups[(s.get("space", "?"), s.get("norm", "?"), s.get("eps_unit", ""))][name] = s
    for (space, norm, unit), group in sorted(groups.items()):
        budgets = sorted({p["eps"] for s in group.values() for p in s["per_eps"]})
        header = ["arm", *[f"eps {e:g}" for e in budgets], "budget to 50%", "budget to 50%, within"]
        arms = [s.get("arm", n) for n, s in group.items()]
        curves = {(a if arms.count(a) == 1 else f"{a} ({n})"): s["per_eps"] for a, (n, s) in zip(arms, group.items())}
        name = f"attack_{space}_{norm}.png"
        blocks += [("h3", f"Space `{space}`, norm `{norm}` (eps {unit})")]
        blocks += [("table", header, [_row(n, s, budgets) for n, s in sorted(group.items())])]
        blocks += charts.block(
            charts.attack_curves, cdir, name, f"ASR against the {norm} budget ({space} space)", curves, f"eps ({unit})"
        )
    return blocks
