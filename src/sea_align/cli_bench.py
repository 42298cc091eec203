"""CLI plugin: `sea bench-data` (benchmark builders). Extended by issue 4 (judge, more builders)."""
from __future__ import annotations

import argparse


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-data", help="build a benchmark JSONL + media")
    p.add_argument("name")
    p.add_argument("--data", "--questions", dest="source", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_bench_data)


def _bench_data(args: argparse.Namespace) -> int:
    from .benchdata import build
    print(build(args.name, args.out, args.source, args.limit, args.seed))
    return 0
