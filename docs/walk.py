"""Retake the README's walk of both rounds: ``python docs/walk.py``.

Runs the browser walk (tests/test_walk_rounds.py: import → review → PII → dedup → split → round 1 → rate to
improve → merge → round 2 → rate to measure → rounds view) with its screenshots and step times written to
docs/screenshots/ (``walk-<step>.png``, ``walk-times.json``), and prints each step's wall time.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    env = {**os.environ, "TUNELOOP_WALK_DIR": str(ROOT / "docs" / "screenshots")}
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                            "tests/test_walk_rounds.py"], cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
