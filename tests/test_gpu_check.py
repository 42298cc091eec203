"""scripts/gpu_check.sh: without a GPU it says so and exits 0; with one, each check is one line and the exit
status counts the failures (checked with a stand-in Python that reports a GPU and fails every command)."""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def _run(env_extra, timeout=300):
    env = {**os.environ, **env_extra}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=timeout)


def test_without_a_gpu_it_says_so_and_exits_0():
    r = _run({"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "gpu_check: no CUDA GPU on this machine (torch sees none): nothing to check"


def test_every_check_is_one_line_and_failures_are_counted(tmp_path):
    for name in ("python", "accelerate"):  # two GPUs reported; every command fails
        fake = tmp_path / name
        fake.write_text('#!/usr/bin/env bash\nif [ "$1" = -c ]; then echo 2; exit 0; fi\necho "boom: $*" >&2\nexit 1\n')
        fake.chmod(0o755)
    r = _run({"PYTHON": str(tmp_path / "python"), "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    lines = r.stdout.strip().splitlines()
    checks, last = lines[:-1], lines[-1]
    assert all(line.startswith("FAIL ") and line.count("\n") == 0 and ": boom" in line for line in checks), lines
    assert len(checks) == 4 + 6 * 4 + 1 + 3  # prepare + 3 benches, 6 family/modality pairs x 4 stages, spread, 2 procs
    assert last == f"gpu_check: 0 passed, {len(checks)} failed, 0 skipped on cuda (bfloat16)"
    assert r.returncode == len(checks)
