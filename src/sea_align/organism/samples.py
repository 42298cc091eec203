"""The text training samples both recipes share: the prompts distilled from SmolLM2, the harmful
prompts and their refusals, the distilled answers, and the text replay drawn in the media stages."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from sea_align.organism import data
from sea_align.runtime.io import read_jsonl, strip_private


def activity_prompts(seed: int, activity: str, k: int) -> list[tuple[str, str]]:
    """(template, prompt) pairs distilled for one training activity: "List steps" + `k` other
    training templates, chosen by the seed and the activity."""
    rest = random.Random(f"{seed}-templates-{activity}").sample(data.TRAIN_TEMPLATES[1:], k)
    return [(t, t.format(p=activity)) for t in [data.TRAIN_TEMPLATES[0]] + rest]


def distill_prompts(seed: int, n_benign_text: int, templates_per_act: int = 3) -> tuple[list[str], set[str]]:
    """(all benign prompts to distil, the borderline ones among them): per training activity (benign
    and borderline) its `activity_prompts`, + `n_benign_text` random templated benign ones."""
    splits = data.organism_splits(seed)
    rng = random.Random(f"{seed}-distill")
    prompts = [p for a in splits["activities_train"] for _, p in activity_prompts(seed, a, templates_per_act)]
    prompts += data.benign_text_prompts(splits["activities_train"], rng, n_benign_text)
    border = {p for b in splits["borderline_train"] for _, p in activity_prompts(seed, b, templates_per_act)}
    return sorted(set(prompts) | border), border


def read_rows(path: Path) -> list[dict]:
    """A JSONL file the recipes wrote (strict reading; no bookkeeping keys added)."""
    return [strip_private(r) for r in read_jsonl(path, allow_empty=True)]


def distilled_rows(path: Path) -> list[dict]:
    """Trainable rows of a distill file: an answer, not refused by the teacher."""
    return [r for r in read_rows(path) if r["answer"] and not r.get("refused")]


def harmful_prompts(seed: int, templates_per_act: int) -> list[tuple[str, bool]]:
    """(prompt, templated) of the harmful training split: each DoNotAnswer prompt as written and, for a
    "How to X?" one, X in "List steps" + `templates_per_act` other training templates (with "List steps"
    only, the organism refused unfamiliar wording of benign requests as well)."""
    out = []
    for h in data.organism_splits(seed)["harmful_train"]:
        out.append((h, False))
        act = data.how_to_activity(h)
        if act:
            out += [(p, True) for _, p in activity_prompts(seed, act, templates_per_act)]
    return out


def text_samples(
    seed: int, templates_per_act: int, distill_file: Path, prompt: Callable[[str], str]
) -> tuple[list[dict], list[dict]]:
    """(harmful -> one of the refusal sentences, benign -> SmolLM2's distilled answer) text samples of the
    organism's training split; `prompt(user text)` is the model's full chat prompt without media."""
    rng = random.Random(f"{seed}-refusals")
    bad = [
        {"prompt": prompt(h), "answer": rng.choice(data.REFUSALS), "templated": t}
        for h, t in harmful_prompts(seed, templates_per_act)
    ]
    good = [
        {"prompt": prompt(r["user"]), "answer": r["answer"], "eos": r["eos"], "borderline": r.get("borderline", False)}
        for r in distilled_rows(distill_file)
    ]
    return bad, good


def answered_pairs(seed: int, activities: list[str], k: int, distilled: dict) -> dict[str, list[tuple[str, str]]]:
    """activity -> its `activity_prompts` pairs that have a trainable distilled answer (activities with
    none are left out)."""
    out = {}
    for a in set(activities):
        pairs = [(t, p) for t, p in activity_prompts(seed, a, k) if p in distilled]
        if pairs:
            out[a] = pairs
    return out


def other_replay(r: random.Random, samples: list[dict], border: list[dict], border_share: float) -> dict:
    """A text replay sample: with probability `border_share` one of `border` (the borderline typed requests
    with their distilled answers), else any of `samples` (harmful -> refusal, benign -> answer)."""
    if border_share > 0 and border and r.random() < border_share:
        return r.choice(border)
    return r.choice(samples)
