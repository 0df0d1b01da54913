"""The Playground CLI's --engine and --threads: they override $TUNELOOP_ENGINE / $TUNELOOP_THREADS for the
answers, and the JSON names the engine that answered."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.test_playground import ROOT, models  # noqa: F401  (fixture)


def _ask(tmp_path, run, *flags, env=None):
    return subprocess.run([sys.executable, "-m", "evaluation.playground", "ask", "--workspace", str(tmp_path / "ws"),
                           "--run", str(run), "Where is my order?", "--max-new-tokens", "3", "--json", *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_engine_and_threads_flags_override_the_environment(tmp_path, models):
    asked = _ask(tmp_path, models["run"].parent, "--engine", "transformers", "--threads", "1",
                 env={"TUNELOOP_ENGINE": "llama.cpp", "TUNELOOP_THREADS": "not-a-number"})
    assert asked.returncode == 0, asked.stderr
    result = json.loads(asked.stdout)
    assert result["status"] == "done" and result["engine"] == "transformers"
    refused = _ask(tmp_path, models["run"].parent, "--threads", "0")
    assert refused.returncode == 2 and "--threads 0" in refused.stderr
    helped = subprocess.run([sys.executable, "-m", "evaluation.playground", "ask", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert "--engine {auto,llama.cpp,transformers}" in helped.stdout and "--threads N" in helped.stdout
