"""Tuneloop: the dashboard. Composes each package's tabs; flags and launch. No logic lives here.

    python app.py [--workspace DIR] [--host 127.0.0.1] [--port 7860] [--no-demo]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TITLE = "Tuneloop"
CSS = """
.gradio-container {max-width: 1500px !important}
#tuneloop-header h1 {margin-bottom: 0}
"""
HEADER = """# Tuneloop
**Curate → Tune → Rate → Feed back.** Turn a general model into *your* model: clean your data, fine-tune,
compare blind with colleagues, and feed what you learn into the next round."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="Run the Tuneloop dashboard.")
    p.add_argument("--workspace", help="workspace folder (default $TUNELOOP_WORKSPACE or ./workspace)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("TUNELOOP_PORT", 7860)))
    p.add_argument("--no-demo", action="store_true", help="do not load the demo dataset into an empty workspace")
    return p.parse_args(argv)


def build_app(ws):
    import gradio as gr

    from curation.ui import data

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(HEADER, elem_id="tuneloop-header")
        with gr.Tabs():
            data.build(ws)
    return demo


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.workspace import Workspace
    ws = Workspace.open(args.workspace)
    if not args.no_demo:
        from curation.versions import list_versions
        if not list_versions(ws):
            from curation.demo import load_demo
            load_demo(ws)
    demo = build_app(ws)
    print(f"Tuneloop: workspace {ws.root}; serving on http://{args.host}:{args.port}/", flush=True)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=args.host, server_port=args.port, css=CSS, show_error=True, footer_links=["settings"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
