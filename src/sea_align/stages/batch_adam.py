"""Adam for the active batch of the synthesis stage: one E per sample, each with its own moments, step
count, warm-up and step-size control, so a sample's trajectory does not depend on who shares the batch
or when it joined."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class BatchAdam:
    """Per-sample Adam state of the active batch: E [B, n, d], moments m, v, own step counts t [B], and
    the per-sample step-size multiplier `mult` with the loss `prev` it was last judged on."""

    E: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    t: torch.Tensor
    mult: torch.Tensor
    prev: torch.Tensor

    @classmethod
    def empty(cls, like: torch.Tensor) -> BatchAdam:
        z = like.new_zeros((0, *like.shape))
        return cls(z, z.clone(), z.clone(), like.new_zeros(0), like.new_zeros(0), like.new_zeros(0))

    def join(self, E: torch.Tensor) -> None:
        k = len(E)
        self.E = torch.cat([self.E.detach(), E.to(self.E)])
        self.m, self.v = torch.cat([self.m, torch.zeros_like(E)]), torch.cat([self.v, torch.zeros_like(E)])
        self.t = torch.cat([self.t, self.t.new_zeros(k)])
        self.mult = torch.cat([self.mult, self.mult.new_ones(k)])
        self.prev = torch.cat([self.prev, self.prev.new_full((k,), math.inf)])

    def drop(self, i: int) -> None:
        rest = [j for j in range(len(self.t)) if j != i]
        for name in ("E", "m", "v", "t", "mult", "prev"):
            setattr(self, name, getattr(self, name)[rest])

    def restart(self, i: int, E: torch.Tensor) -> None:
        self.E[i] = E
        self.m[i].zero_(), self.v[i].zero_()
        self.t[i], self.mult[i], self.prev[i] = 0, 1.0, math.inf

    @torch.no_grad()
    def step(
        self,
        loss: torch.Tensor,
        keep: torch.Tensor,
        lr: float,
        warmup: int = 0,
        adapt: list[float] | None = None,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        """One Adam step per sample from E.grad; rows where `keep` is set stay unchanged. Non-finite
        gradients count as zero. `warmup`: linear ramp of each sample's rate over its first steps;
        `adapt` [up, down, cap]: its rate x up after a step that lowered its loss, x down otherwise."""
        if adapt:
            up, down, cap = adapt
            self.mult = torch.where(loss < self.prev, (self.mult * up).clamp(max=cap), self.mult * down)
            self.prev = loss.clone()
        g = torch.nan_to_num(self.E.grad.float(), nan=0.0, posinf=0.0, neginf=0.0)
        t = self.t.add_(1)
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        rate = lr * self.mult * ((t / warmup).clamp(max=1.0) if warmup > 0 else 1.0)
        step = (
            rate[:, None, None]
            * (self.m / (1 - b1**t)[:, None, None])
            / ((self.v / (1 - b2**t)[:, None, None]).sqrt() + eps)
        )
        E = self.E.detach()
        self.E = torch.where(keep[:, None, None], E, E - step)
