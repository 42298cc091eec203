"""Judges (docs/judges.md): the registry (registry.py) and the judges `refusal` (refusal.py), `harm` (harm.py), `openai`
(openai.py) and `hf-classifier` (hf.py), each registered when its module is imported."""

from sea_align.judges.harm import HarmJudge
from sea_align.judges.hf import HFClassifierJudge
from sea_align.judges.openai import OpenAIJudge, parse_label
from sea_align.judges.refusal import RefusalJudge, is_refusal
from sea_align.judges.registry import JUDGES, Judge, Verdict, get_judge, judge_kwargs, register_judge

__all__ = [
    "JUDGES",
    "HFClassifierJudge",
    "HarmJudge",
    "Judge",
    "OpenAIJudge",
    "RefusalJudge",
    "Verdict",
    "get_judge",
    "is_refusal",
    "judge_kwargs",
    "parse_label",
    "register_judge",
]
