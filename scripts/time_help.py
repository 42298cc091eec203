"""Time `sea --help` and `sea evaluate --help` against `python -c "import torch"` in one run, the three
interleaved so machine load hits them alike (docs/cli.md). Usage: python scripts/time_help.py [RUNS]"""

import statistics
import subprocess
import sys
import time

COMMANDS = {
    "sea --help": ["sea", "--help"],
    "sea evaluate --help": ["sea", "evaluate", "--help"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
}


def main(runs: int = 5) -> None:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, cmd in COMMANDS.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t)
    torch_median = statistics.median(times['python -c "import torch"'])
    print("| command | median s | min s | max s | vs import torch |\n|---|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| `{name}` | {med:.2f} | {min(ts):.2f} | {max(ts):.2f} | {med / torch_median:.2f}x |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
