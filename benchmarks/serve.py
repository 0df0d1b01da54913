"""Serving speed by engine, over HTTP as a client sees it: time to the first streamed token, the whole answer's
latency and tokens per second, on the default model with a LoRA adapter.

    python benchmarks/serve.py [--run RUN --workspace DIR] [--requests 6] [--max-tokens 48]

Side by side in one run, on the same prompts, each engine behind the same endpoint (``training.serve``, in this
process on a free port), streamed requests one after another after one warm-up request:
- transformers: the shared warm base (fp32) with the adapter, the fallback engine (the baseline);
- llama.cpp:    the run's merged model as an f16 GGUF (``training.gguf.run_gguf``; its conversion is timed apart).
Medians over the requests. Without --run, a fresh LoRA adapter with random weights is made on the default model
in a temporary workspace (speed does not depend on what the adapter learned).
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.random_adapter import random_adapter  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from curation.data.records import Record  # noqa: E402
from curation.data.versions import create_version  # noqa: E402
from training import registry as R  # noqa: E402
from training import serve as S  # noqa: E402
from training.config import RunConfig  # noqa: E402

# Questions written for this benchmark (not from any fixture, template or other benchmark).
PROMPTS = ["My parcel shows as returned to sender. What now?", "How can I download last month's invoice?",
           "The blender makes a burning smell. Is it safe to use?", "Can two people share one account?",
           "What time does customer support open on Saturdays?", "How do I turn off the email newsletter?",
           "The tracking page has not updated in four days.", "Can I pay in three instalments?"]


def fresh_run(root: Path) -> tuple[Workspace, R.Run]:
    ws = Workspace.open(root / "ws")
    records = [Record(f"b{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": "Thanks!"}],
                      {"split": "train" if i < 6 else "val"}) for i, q in enumerate(PROMPTS)]
    create_version(ws, records, parent=None, step="split")
    run = R.create_run(ws, RunConfig(base_model="default", datasets="v1"), name="benchmark adapter")
    random_adapter(run.adapter_dir)
    R.update_run(ws, run.id, status="finished")
    return ws, R.get_run(ws, run.id)


def measure(endpoint: S.Endpoint, prompts: list[str], max_tokens: int) -> list[dict]:
    """One streamed request per prompt (after a warm-up): first token, latency, tokens and tokens/s, per request."""
    import httpx
    import uvicorn
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(S.make_app(endpoint), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    out = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=600) as client:
            for i, prompt in enumerate([prompts[-1]] + prompts):
                body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": True}
                start = time.perf_counter()
                first, usage = None, None
                with client.stream("POST", "/chat/completions", json=body) as response:
                    for line in response.iter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if first is None and chunk["choices"][0]["delta"].get("content"):
                            first = time.perf_counter() - start
                        usage = chunk.get("usage") or usage
                total = time.perf_counter() - start
                if i == 0:
                    continue            # the warm-up
                tokens = usage["completion_tokens"]
                out.append({"first_s": first, "latency_s": total, "tokens": tokens,
                            "tokens_per_s": (tokens - 1) / (total - first) if first and total > first else 0.0})
    finally:
        server.should_exit = True
        thread.join()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a finished run to serve (default: a fresh random adapter on the default model)")
    p.add_argument("--workspace", help="the run's workspace")
    p.add_argument("--requests", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=48)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            ws = Workspace.open(args.workspace)
            run = R.get_run(ws, args.run)
        else:
            ws, run = fresh_run(Path(tmp))
        prompts = PROMPTS[:args.requests]
        rows = {}
        for kind in ("transformers", "llamacpp"):
            endpoint = S.Endpoint(ws, run_id=run.id, engine=kind)
            started = time.perf_counter()
            endpoint.engine(run.id)
            load = time.perf_counter() - started
            rows[kind] = (load, measure(endpoint, prompts, args.max_tokens))
    print(f"serving run #{run.id} ({run.base_model}), {len(prompts)} streamed requests of up to {args.max_tokens} "
          f"tokens, medians")
    print(f"{'engine':<26} {'load s':>8} {'first token s':>14} {'latency s':>10} {'tokens':>7} {'tokens/s':>9}")
    for kind, label in (("transformers", "transformers (baseline)"), ("llamacpp", "llama.cpp f16 GGUF")):
        load, results = rows[kind]
        med = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"{label:<26} {load:>8.1f} {med['first_s']:>14.2f} {med['latency_s']:>10.2f} {med['tokens']:>7.0f} "
              f"{med['tokens_per_s']:>9.1f}")
    base = statistics.median(r["tokens_per_s"] for r in rows["transformers"][1])
    fast = statistics.median(r["tokens_per_s"] for r in rows["llamacpp"][1])
    print(f"llama.cpp / transformers tokens/s: {fast / base:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
