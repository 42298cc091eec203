"""The alignment loss, one class per term (stage 3, docs/stages.md "Loss terms").

A step's loss per example is an *objective* (`ce` for SFT, `dpo`) plus any *added* terms (`retain`,
`consistency`), each a `LossTerm` registered by name. A term builds itself from the align config
(`from_config`: None when it is off) and scores the examples it `select`s; one aligned forward pass
(`StepPass`) is shared by the objective and every added term, and a frozen reference pass runs without
gradient. Adding a term is one class plus its config key: docs/stages.md shows one in 20 lines.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sea_align.models.base import Item, ModelAdapter
from sea_align.stages.records import RETAIN_KINDS, Example

log = logging.getLogger(__name__)


class StepPass:
    """One batch of one training step: the aligned model's pass over the batch's items, made once on first
    use and shared by every term (`logits`, `token_ce`), and the frozen reference (`answer_kl`)."""

    def __init__(self, adapter: ModelAdapter, peft_model: Any, batch: list[Example]):
        self.adapter, self.peft_model, self.batch = adapter, peft_model, batch
        self.items = [b.item for b in batch]
        self._pass: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._ce: torch.Tensor | None = None
        self.shared = False  # whether an added term scores this batch (then the objective reads `logits`)

    def logits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The aligned pass: (answer-token logits [t, V], labels [t], owning item of each token [t])."""
        if self._pass is None:
            self._pass = self.adapter.target_logits(self.items)
        return self._pass

    def token_ce(self) -> torch.Tensor:
        """Cross-entropy of every answer token [t]."""
        if self._ce is None:
            logits, labels, _ = self.logits()
            self._ce = F.cross_entropy(logits, labels, reduction="none")
        return self._ce

    def item_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Per-token `values` [t] averaged over each item's tokens [k]."""
        return per_item_mean(values, self.logits()[2], len(self.items))

    def answer_kl(self, idx: list[int], refs: list[Item]) -> torch.Tensor:
        """KL(frozen model on `refs` || aligned model) per item of `idx` [len(idx)], mean over its answer
        tokens; `refs[j]` carries item `idx[j]`'s target."""
        logits, _, rows = self.logits()
        return answer_kl(self.adapter, self.peft_model, logits, rows, idx, refs)


class LossTerm:
    """A term of the alignment loss. `methods`: the objectives it works with; `objective`: it is the
    objective (every example, exactly one per step) rather than a term added on the examples it selects."""

    name: ClassVar[str]
    methods: ClassVar[tuple[str, ...]] = ("sft",)
    objective: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    @classmethod
    def from_config(cls, cfg: Any, method: str) -> LossTerm | None:
        """The term for align config `cfg` and objective `method`; None when it is off."""
        raise NotImplementedError

    def select(self, batch: list[Example]) -> list[int]:
        """The examples of `batch` this term scores (default: all)."""
        return list(range(len(batch)))

    def per_item(self, step: StepPass, idx: list[int]) -> torch.Tensor:
        """The term's value for each selected example [len(idx)], before its weight."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.name}({self.weight:g})"


TERMS: dict[str, type[LossTerm]] = {}


def register_term(cls: type[LossTerm]) -> type[LossTerm]:
    """Class decorator: the term is built, when its config turns it on, by `build_terms` under its name."""
    if cls.name in TERMS and TERMS[cls.name] is not cls:
        raise ValueError(f"loss term '{cls.name}' is registered twice")
    TERMS[cls.name] = cls
    return cls


@register_term
class CrossEntropy(LossTerm):
    """SFT's objective: mean cross-entropy of each example's target answer."""

    name, objective = "ce", True

    @classmethod
    def from_config(cls, cfg: Any, method: str) -> LossTerm | None:
        return cls() if method == "sft" else None

    def per_item(self, step: StepPass, idx: list[int]) -> torch.Tensor:
        if not step.shared:  # nothing else reads the logits: the adapter's own (lighter) loss pass
            return step.adapter.target_loss(step.items)
        return step.item_mean(step.token_ce())


@register_term
class DPO(LossTerm):
    """DPO's objective: -log sigmoid(beta x the chosen-over-rejected log-ratio margin against the frozen
    model), chosen and rejected scored in one forward pass (its own, not `StepPass.logits`)."""

    name, methods, objective = "dpo", ("dpo",), True

    @classmethod
    def from_config(cls, cfg: Any, method: str) -> LossTerm | None:
        return cls(cfg.dpo_beta) if method == "dpo" else None

    def per_item(self, step: StepPass, idx: list[int]) -> torch.Tensor:
        batch = step.batch
        rejected = [Item(b.item.prompt, b.item.modality, b.item.mm, b.item.meta, target=b.rejected) for b in batch]
        lp = step.adapter.target_loss(step.items + rejected, reduction="sum").neg()
        pc, pr = lp[: len(batch)], lp[len(batch) :]
        rc = torch.tensor([b.ref_logps[0] for b in batch], device=pc.device)
        rr = torch.tensor([b.ref_logps[1] for b in batch], device=pc.device)
        return -F.logsigmoid(self.weight * ((pc - rc) - (pr - rr)))


@register_term
class RetainKL(LossTerm):
    """`align.retain` x KL(base || aligned) on the answer tokens of the benign examples: keep answering."""

    name = "retain"

    @classmethod
    def from_config(cls, cfg: Any, method: str) -> LossTerm | None:
        return cls(cfg.retain) if cfg.retain > 0 else None

    def select(self, batch: list[Example]) -> list[int]:
        return [i for i, b in enumerate(batch) if b.kind in RETAIN_KINDS]

    def per_item(self, step: StepPass, idx: list[int]) -> torch.Tensor:
        return step.answer_kl(idx, [step.items[i] for i in idx])


@register_term
class ConsistencyKL(LossTerm):
    """`align.experimental.consistency` x KL(frozen model on the typed request || aligned model on the media
    form) on every embedding example with a typed form: read the media as its text."""

    name = "consistency"

    @classmethod
    def from_config(cls, cfg: Any, method: str) -> LossTerm | None:
        w = cfg.experimental.consistency
        return cls(w) if w > 0 else None

    def select(self, batch: list[Example]) -> list[int]:
        return [i for i, b in enumerate(batch) if b.typed is not None]

    def per_item(self, step: StepPass, idx: list[int]) -> torch.Tensor:
        return step.answer_kl(idx, [step.batch[i].typed for i in idx])  # type: ignore[misc]


def build_terms(cfg: Any, method: str) -> list[LossTerm]:
    """The terms the align config turns on for objective `method` (sft | dpo), the objective first, then
    the added terms in registration order. An added term that does not work with `method` is left out, with
    a warning."""
    terms = [t for cls in TERMS.values() if (t := cls.from_config(cfg, method)) is not None]
    for t in [t for t in terms if method not in t.methods]:
        log.warning(
            "align: the %s term works with %s only; ignored with method %s", t.name, "/".join(t.methods), method
        )
        terms.remove(t)
    objectives = [t for t in terms if t.objective]
    if len(objectives) != 1:
        raise ValueError(f"align: method {method} needs exactly one objective term, got {objectives}")
    return objectives + [t for t in terms if not t.objective]


def item_losses(
    adapter: ModelAdapter, batch: list[Example], terms: list[LossTerm], peft_model: Any = None
) -> torch.Tensor:
    """Per-example loss [k]: the objective (`terms[0]`) plus each added term's weight x its value on the
    examples it selects. Added terms need `peft_model` (their frozen reference is it with the LoRA off)."""
    step = StepPass(adapter, peft_model, batch)
    objective, added = terms[0], terms[1:]
    chosen = [(t, t.select(batch)) for t in added if peft_model is not None]
    chosen = [(t, idx) for t, idx in chosen if idx]
    step.shared = bool(chosen)
    losses = objective.per_item(step, list(range(len(batch))))
    for term, idx in chosen:
        value = term.per_item(step, idx)
        losses = losses.index_add(0, torch.tensor(idx, device=losses.device), term.weight * value.to(losses.dtype))
    return losses


class StepLoss(torch.nn.Module):
    """A training step's per-example losses as ONE module forward (embedding lookup, decoder, lm_head at
    the target positions, loss). FSDP gathers the weights it shards only inside the forward of a module
    it wraps, and the adapter calls those three parts separately; sharding this module covers them all.
    Without FSDP, calling it is calling `item_losses`."""

    def __init__(self, adapter: ModelAdapter, peft_model: torch.nn.Module, terms: list[LossTerm]):
        super().__init__()
        self.peft_model = peft_model  # the only submodule: the whole (LoRA-injected) model
        present = {type(m).__name__ for m in peft_model.modules()}  # HF lists classes a model may not have
        self._no_split_modules = sorted(present & set(getattr(adapter.model, "_no_split_modules", None) or ()))
        self.__dict__["adapter"] = adapter  # plain attribute, not registered
        self.terms = terms

    def forward(self, batch: list[Example]) -> torch.Tensor:
        return item_losses(self.adapter, batch, self.terms, self.peft_model)


def retain_kl(
    adapter: ModelAdapter, peft_model: Any, items: list[Item], ref_items: list[Item] | None = None
) -> torch.Tensor:
    """Per-item KL(base || aligned) over the answer tokens, mean over each item's tokens [k]: the base
    distribution comes from the same model with the LoRA switched off (no gradient), on `ref_items`
    when given (each with the same target as its item), else on the items themselves. A pass of its own
    (a training step shares one: `StepPass`)."""
    logits, _, rows = adapter.target_logits(items)
    idx = list(range(len(items)))
    return answer_kl(adapter, peft_model, logits, rows, idx, ref_items if ref_items is not None else items)


def consistency_kl(adapter: ModelAdapter, peft_model: Any, items: list[Item], typed: list[Item]) -> torch.Tensor:
    """Per-item KL(frozen model on the typed request || aligned model on the media item) over the shared
    answer tokens, mean over each item's tokens [k]: the aligned model should answer the media as the
    frozen model answers its text, whatever that answer is (refusal or help)."""
    return retain_kl(adapter, peft_model, items, ref_items=typed)


def answer_kl(
    adapter: ModelAdapter, peft_model: Any, logits: torch.Tensor, rows: torch.Tensor, idx: list[int], refs: list[Item]
) -> torch.Tensor:
    """KL(frozen model on `refs` || the aligned `logits`) per item of `idx` [len(idx)], mean over its answer
    tokens. `logits`/`rows` are an aligned `target_logits` pass over a batch that holds the items `idx`;
    `refs[j]` carries item `idx[j]`'s target (so both passes score the same answer tokens)."""
    with torch.no_grad(), peft_model.disable_adapter():
        ref, _, ref_rows = adapter.target_logits(refs)
    pos = torch.cat([torch.nonzero(rows == i, as_tuple=True)[0] for i in idx])
    owner = torch.tensor(idx, device=rows.device)[ref_rows] if len(ref_rows) else ref_rows
    if pos.numel() != ref.shape[0] or not torch.equal(rows[pos], owner):
        raise ValueError("align: an item's answer tokens differ in number between the aligned and reference passes")
    mine = F.log_softmax(logits[pos], -1)
    kl = F.kl_div(mine, F.log_softmax(ref, -1), log_target=True, reduction="none").sum(-1)
    return per_item_mean(kl, ref_rows, len(idx))


def per_item_mean(values: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of per-token `values` over each item's tokens (`rows[t]` = token t's item) [k]."""
    zeros = values.new_zeros(k)
    return zeros.index_add(0, rows, values) / zeros.index_add(0, rows, torch.ones_like(values)).clamp(min=1)
