"""Low-precision copies of frozen Linear weights, for synthesis under autocast.

Under autocast to bf16 every Linear casts its float32 weight at every call; swapping in a bf16 copy made
once gives identical results without the repeated casts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


class LowPrecisionWeights:
    """`dtype` copies of frozen Linear weights, made once and remade only when a weight is replaced or
    edited in place (its tensor version changes)."""

    def __init__(self) -> None:
        # (id(weight), dtype) -> (weight, its version when copied, the copy)
        self._store: dict[tuple[int, torch.dtype], tuple[torch.Tensor, int, torch.nn.Parameter]] = {}

    @contextmanager
    def swap(self, modules: Iterable[torch.nn.Module], dtype: torch.dtype) -> Iterator[None]:
        """Inside, each frozen `torch.nn.Linear` of `modules` whose weight is not `dtype` holds the copy;
        outside, the original weight. Autograd keeps the tensors it saved, so a backward pass may run
        after the block."""
        mods = [
            m
            for m in dict.fromkeys(modules)
            if isinstance(m, torch.nn.Linear) and m.weight.dtype != dtype and not m.weight.requires_grad
        ]
        old = []
        try:
            for m in mods:
                w = m.weight
                key = (id(w), dtype)
                entry = self._store.get(key)
                if entry is None or entry[0] is not w or entry[1] != w._version:  # new or edited
                    self._store[key] = (w, w._version, torch.nn.Parameter(w.detach().to(dtype), requires_grad=False))
                m._parameters["weight"] = self._store[key][2]
                old.append((m, w))
            yield
        finally:
            for m, w in old:
                m._parameters["weight"] = w
