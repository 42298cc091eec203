"""Prefix caching: the KV of token runs that many rows share, computed once.

Two kinds of sharing, both exact: the chat template's opening tokens common to every item (kept across
calls in a `PrefixCache` while the language model's weights are frozen), and, within one call, the
tokens up to the end of the media of items that carry the same media (one group per sample)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from transformers import DynamicCache

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [1, heads, prefix, d_head]


class PrefixCache:
    """The KV of one shared prefix. One is kept: prompts share their template, so a new key means
    the template (or the model's precision) changed."""

    def __init__(self) -> None:
        self._store: dict[Hashable, KV] = {}

    def clear(self) -> None:
        """Forget the stored KV (the weights it was computed with changed)."""
        self._store = {}

    def get(self, key: Hashable, compute: Callable[[], DynamicCache], batch: int) -> DynamicCache:
        """A fresh cache holding the prefix's KV expanded to `batch` rows; `compute()` runs the prefix
        once (one row) when `key` is not the stored one."""
        kv = self._store.get(key)
        if kv is None:
            kv = [(layer.keys, layer.values) for layer in compute().layers]
            self._store = {key: kv}
        cache = DynamicCache()
        for i, (k, v) in enumerate(kv):
            cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
        return cache


def group_index(groups: Sequence[Any]) -> tuple[list[int], list[int]]:
    """(first row of each group in order of appearance, each row's group number)."""
    first: dict[Any, int] = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    number = {g: k for k, g in enumerate(first)}
    return list(first.values()), [number[g] for g in groups]


def rows_agree(ids: torch.Tensor, mm: list[torch.Tensor], first: list[int], inv: list[int]) -> bool:
    """Every row has the token ids and media embedding of the first row of its group."""
    lead = [first[k] for k in inv]
    return bool((ids == ids[lead]).all()) and all(torch.equal(mm[i], mm[j]) for i, j in enumerate(lead))


def share_rows(cache: DynamicCache, rows: torch.Tensor) -> DynamicCache:
    """A cache whose row i is row `rows[i]` of `cache` (each item reads its group's KV)."""
    shared = DynamicCache()
    for i, layer in enumerate(cache.layers):
        shared.update(layer.keys[rows], layer.values[rows], i)
    return shared
