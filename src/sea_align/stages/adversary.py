"""SEA with attack embeddings in its mix (`align.experimental.adversarial`, stage 3).

At each training step a share of the batch's harmful embedding examples is attacked before the loss: the
example's embedding (in the LLM's input space, P(E)) is pushed by projected gradient steps toward an
affirmative answer start ("Sure, here is how to {phrase}:") against the adapter as it is at that step, inside
an linf ball of `adversarial_eps` x the embedding's RMS. The attacked example keeps its refusal target, so the
model learns to refuse the embeddings an attacker would move toward compliance: continuous adversarial
training (Xhonneux et al., NeurIPS 2024) on SEA's synthetic embeddings. `sea attack` measures what it buys.

The choice of examples is drawn from the step number (a resumed run attacks the same ones); the attack
computes gradients for the perturbation only, never for the LoRA weights.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import torch

from sea_align.models.base import ModelAdapter
from sea_align.stages.records import Example

ATTACKED_KINDS = ("sea", "sea_template")  # the harmful examples that carry an embedding
STEP_SIZE = 2.5  # each step moves each value by STEP_SIZE / steps of the budget (Madry et al.'s rule)


def attack_goal(cfg: Any, row: dict[str, Any]) -> str | None:
    """A harmful row's affirmative answer start under align config `cfg`; None when the lever is off."""
    ex = cfg.experimental
    if ex.adversarial <= 0:
        return None
    return ex.adversarial_target.replace("{phrase}", str(row.get("key_phrase") or row["instruction"]).strip())


class Adversary:
    """Replaces a share of a batch's harmful embedding examples by attacked copies (`__call__`); `last`
    holds the latest step's numbers for the metrics log."""

    def __init__(self, adapter: ModelAdapter, cfg: Any, seed: int = 0):
        ex = cfg.experimental
        self.adapter, self.share, self.seed = adapter, ex.adversarial, seed
        self.eps, self.steps = ex.adversarial_eps, ex.adversarial_steps
        self.last: dict[str, Any] = {}

    def chosen(self, batch: list[Example], step: int) -> list[int]:
        """The examples of `batch` attacked at `step`: each harmful embedding example with a goal, with
        probability `share`, drawn from (seed, step)."""
        rng = random.Random(self.seed * 1_000_003 + step)
        return [i for i, e in enumerate(batch) if e.kind in ATTACKED_KINDS and e.goal and rng.random() < self.share]

    def __call__(self, batch: list[Example], step: int) -> list[Example]:
        idx = self.chosen(batch, step)
        self.last = {}
        if not idx:
            return batch
        moved, before, after = self.attack([batch[i] for i in idx])
        out = list(batch)
        for i, e in zip(idx, moved):
            out[i] = e
        self.last = {"adv_n": len(idx), "adv_ce_start": round(before, 5), "adv_ce": round(after, 5)}
        return out

    def attack(self, examples: list[Example]) -> tuple[list[Example], float, float]:
        """The examples with their embeddings attacked -> (them, mean goal CE at the start, at the end).
        Each embedding keeps its own shape and budget (the RMS of its own values)."""
        x0 = [e.item.mm.detach().float() for e in examples]  # type: ignore[union-attr]
        radius = [self.eps * float(x.pow(2).mean().sqrt()) for x in x0]
        delta = [torch.zeros_like(x, requires_grad=True) for x in x0]
        first = last = float("nan")
        for k in range(self.steps + 1):
            with torch.set_grad_enabled(k < self.steps):  # the last pass only measures
                items = [replace(e.item, mm=_cast(x0[j] + delta[j], e), target=e.goal) for j, e in enumerate(examples)]
                loss = self.adapter.target_loss(items)
            if k == 0:
                first = float(loss.detach().mean())
            last = float(loss.detach().mean())
            if k == self.steps:
                break
            grads = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                for d, g, r in zip(delta, grads, radius):
                    d -= STEP_SIZE / self.steps * r * g.sign()
                    d.clamp_(-r, r)
        moved = [replace(e.item, mm=_cast(x0[j] + delta[j].detach(), e)) for j, e in enumerate(examples)]
        return [replace(e, item=it) for e, it in zip(examples, moved)], first, last


def _cast(x: torch.Tensor, e: Example) -> torch.Tensor:
    return x.to(e.item.mm.dtype)  # type: ignore[union-attr]
