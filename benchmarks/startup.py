"""Start-up: seconds from `python app.py` to the page being served, and what is imported by then.

    python benchmarks/startup.py [--runs 5]

Target: the page is served within 5 s on the 2-core dev machine; torch, transformers and presidio
are not imported at start-up (they load on first use). Prints the median of several cold starts
over a fresh workspace (the first of which also writes the demo dataset).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_S = 5.0
HEAVY = ("torch", "transformers", "presidio_analyzer", "spacy", "peft", "trl", "bitsandbytes")


def time_to_serve(workspace: Path, port: int) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--workspace", str(workspace), "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - start
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the app exited during start-up")
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait()


def heavy_imports_at_startup() -> list[str]:
    code = ("import sys, app; from core.workspace import Workspace; import tempfile;"
            "ws = Workspace.open(tempfile.mkdtemp()); app.create_server(ws);"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from tests.browser import free_port
    with tempfile.TemporaryDirectory() as tmp:
        times = [time_to_serve(Path(tmp) / "ws", free_port()) for _ in range(args.runs)]
    heavy = heavy_imports_at_startup()
    print(f"{'':32}{'Tuneloop':>12}{'target':>12}")
    print(f"{'page served after (median s)':32}{statistics.median(times):>12.2f}{TARGET_S:>12.2f}")
    print(f"{'  all runs (s)':32}{'  '.join(f'{t:.2f}' for t in times):>24}")
    print(f"{'heavy modules imported':32}{(', '.join(heavy) or 'none'):>12}{'none':>12}")


if __name__ == "__main__":
    main()
