"""Security invariants: no pickle, torch.load only with weights_only=True, trust_remote_code off by
default, and an API key from the environment never reaches a file, log or report."""

import ast
import http.server
import inspect
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sea_align
from sea_align.models import ModelError, load_adapter

PKG = Path(sea_align.__file__).parent
SOURCES = sorted(p for p in PKG.rglob("*.py"))
CANARY = "sk-canary-7f3a9c1e5b2d4068a1b2c3d4e5f60718"


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(func) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


PICKLERS = ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle")


def scan(source: str, path: str) -> list[str]:
    """Every unsafe pattern in one source file: a pickle-family import, torch.save (checkpoints are
    safetensors), torch.load without weights_only=True, np.load with allow_pickle, trust_remote_code=True."""
    tree = ast.parse(source, path)
    bad = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        bad += [f"{path}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in PICKLERS]
    for call in _calls(tree):
        name = _dotted(call.func)
        kw = {k.arg: k.value for k in call.keywords}
        if name.endswith("torch.save"):
            bad.append(f"{path}:{call.lineno}: torch.save (pickle); use safetensors")
        if name.endswith("torch.load") or name == "load" and isinstance(call.func, ast.Name):
            wo = kw.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                bad.append(f"{path}:{call.lineno}: {name} without weights_only=True")
        if name.endswith("np.load") or name.endswith("numpy.load"):
            ap = kw.get("allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                bad.append(f"{path}:{call.lineno}: {name} with allow_pickle")
        trc = kw.get("trust_remote_code")
        if isinstance(trc, ast.Constant) and trc.value is True:
            bad.append(f"{path}:{call.lineno}: trust_remote_code=True hard-coded")
    return bad


def test_no_pickle_and_safe_torch_load():
    bad = [b for path in SOURCES for b in scan(path.read_text(encoding="utf-8"), str(path))]
    assert not bad, "\n".join(bad)
    assert len(SOURCES) > 20  # the scan did look at the package


def test_the_scan_catches_every_unsafe_pattern():
    """The scan the package test runs is not vacuous: each pattern it is meant to catch is flagged, and
    the safe forms are not."""
    unsafe = {
        "import pickle": "imports pickle",
        "from joblib import dump": "imports joblib",
        "torch.save(x, 'a.pt')": "torch.save",
        "torch.load('a.pt')": "without weights_only",
        "torch.load('b', weights_only=False)": "without weights_only",
        "np.load('c.npy', allow_pickle=True)": "allow_pickle",
        "M.from_pretrained('d', trust_remote_code=True)": "trust_remote_code",
    }
    for line, what in unsafe.items():
        found = scan(line + "\n", "x.py")
        assert len(found) == 1 and what in found[0], (line, found)
    safe = "torch.load('a', weights_only=True)\nnp.load('c.npy')\nsave_file(t, 'a.safetensors')\n"
    assert scan(safe, "x.py") == []


def test_trust_remote_code_off_unless_asked(monkeypatch):
    assert inspect.signature(load_adapter).parameters["trust_remote_code"].default is False
    seen = []
    import transformers

    def fake(spec, **kw):
        seen.append(kw.get("trust_remote_code"))
        raise OSError("no such model")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake)
    for flag in (None, True):
        with pytest.raises(ModelError):
            load_adapter("/nonexistent/model", **({} if flag is None else {"trust_remote_code": flag}))
    assert seen == [False, True]


class _Endpoint(http.server.BaseHTTPRequestHandler):
    """A stand-in OpenAI-compatible endpoint: records the key it was sent, answers an extraction."""

    keys: list = []

    def do_POST(self):
        self.keys.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        content = json.dumps({"key_phrase": "steal a parked car", "phrase_type": "activity"})
        body = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_api_key_never_written_or_logged(tmp_path):
    """`sea -v run --config tiny` with the openai extractor: the key is sent to the endpoint (so it
    was really read from the environment and used) but appears in no file written and no log line."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": CANARY}
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "sea_align.cli",
                "-v",
                "run",
                "--config",
                "tiny",
                "--out",
                str(out),
                "--quiet",
                "prepare.extractor=openai",
                "synthesize.max_steps=3",
                "align_text_baseline=false",
                f"prepare.openai_base_url=http://127.0.0.1:{server.server_address[1]}/v1",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr[-3000:]
    assert _Endpoint.keys and all(k == f"Bearer {CANARY}" for k in _Endpoint.keys)
    prepared = [json.loads(x) for x in (out / "prepared.jsonl").read_text().splitlines()]
    assert any(p["extraction"] == "extractor" for p in prepared)
    assert "INFO" in r.stderr  # logs were captured, not silenced
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"manifest.json", "config.yaml", "report.md"} <= {p.name for p in files}
    leaks = [str(p) for p in files if CANARY.encode() in p.read_bytes()]
    assert not leaks, leaks
    assert CANARY not in r.stdout and CANARY not in r.stderr
    assert CANARY[3:15] not in r.stderr  # not even a fragment
