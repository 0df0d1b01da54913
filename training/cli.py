"""``python -m training``: configure, launch, watch, stop, resume and export QLoRA runs headless.

Each command does what the Train tab does; errors print the message and exit 1.

    python -m training config --preset "Quick CPU demo" --datasets v4 > run.yaml
    python -m training preflight run.yaml
    python -m training run run.yaml                 # trains in this process (Ctrl-C stops)
    python -m training launch run.yaml              # starts the job in the background
    python -m training list | show 3 | stop 3 | resume 3 | export 3 --kind merged --out ./merged
    python -m training export 3 --kind gguf --quant q4_k_m --out ./gguf     # + Ollama Modelfile
    python -m training create run.yaml && accelerate launch -m training run run.yaml --run-id 3
    python -m training serve 3 --port 8000 | live 3 | rollback | serve --live --log-text
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from core.errors import TuneloopError
from core.workspace import Workspace
from training import registry as R
from training.config import PRESETS, config_to_yaml, load_config, preset_config


def build_parser() -> argparse.ArgumentParser:
    # --workspace may come before or after the sub-command: `run CONFIG.yaml --workspace DIR`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", default=argparse.SUPPRESS,
                        help="workspace folder (default $TUNELOOP_WORKSPACE or ./workspace)")
    p = argparse.ArgumentParser(prog="python -m training", description="Tuneloop training: QLoRA runs.",
                                parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    cfg = sub.add_parser("config", parents=[common], help="print a run config (YAML) from a preset")
    cfg.add_argument("--preset", choices=list(PRESETS), default="Quick CPU demo")
    cfg.add_argument("--datasets", default="", help="split version (v4) or folder with train.jsonl/val.jsonl")
    cfg.add_argument("--base-model", default="default")

    for name, text in (("run", "train in this process (registers the run unless --run-id is given)"),
                       ("launch", "register the run and start its job in the background"),
                       ("create", "register the run without starting it (status created, for accelerate launch)"),
                       ("preflight", "check a config: memory estimate, token statistics, a rendered example")):
        c = sub.add_parser(name, parents=[common], help=text)
        c.add_argument("config", help="run config YAML")
        if name in ("run", "launch", "create"):
            c.add_argument("--name", help="a name for the run")
        if name == "run":
            c.add_argument("--run-id", help="train this registered run (what launch and accelerate use)")
            c.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")

    sub.add_parser("list", parents=[common], help="all runs, newest first")
    for name, text in (("show", "a run's status, metrics summary, error and artefacts"),
                       ("stop", "stop a run gracefully (checkpoint, then stop)"),
                       ("resume", "resume a stopped or failed run from its last checkpoint"),
                       ("wait", "wait until a run is no longer running")):
        c = sub.add_parser(name, parents=[common], help=text)
        c.add_argument("run")
        if name in ("resume", "stop"):
            c.add_argument("--wait", action="store_true", help="wait until the run finishes or stops")
    exp = sub.add_parser("export", parents=[common],
                         help="export a run's adapter, a merged model folder, an archive, or a GGUF + Ollama Modelfile")
    exp.add_argument("run")
    exp.add_argument("--kind", choices=("adapter", "merged", "archive", "gguf"), default="adapter")
    exp.add_argument("--quant", choices=("f16", "q8_0", "q4_k_m"), default="f16",
                     help="gguf only: f16 (the merged weights as they are), q8_0, or q4_k_m (smallest)")
    exp.add_argument("--out", required=True, help="destination folder (adapter, merged, gguf), or file or existing "
                                                  "folder (archive: FILE.tar.gz, or DIR/run-N.tar.gz)")
    srv = sub.add_parser("serve", parents=[common], help="answer on an OpenAI-compatible endpoint on 127.0.0.1 "
                                                          "(/v1/chat/completions, /v1/models, /v1/feedback)")
    srv.add_argument("run", nargs="?", help="the run to serve (or --live)")
    srv.add_argument("--live", action="store_true", help="serve whatever run is live; follows live and rollback")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--engine", choices=("auto", "llama.cpp", "llamacpp", "transformers", "vllm"), default="auto",
                     help="auto: vllm with CUDA and vllm, else llama.cpp with llama-cpp-python, else transformers")
    srv.add_argument("--threads", type=int, default=None, metavar="N",
                     help="CPU threads for answering (default: $TUNELOOP_THREADS, else every core for llama.cpp)")
    srv.add_argument("--log-text", action="store_true",
                     help="also store each request's messages and answer (off: only time, run, latency, tokens, errors)")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1; any other, e.g. 0.0.0.0, needs --api-key-env)")
    srv.add_argument("--api-key-env", metavar="NAME", default=None,
                     help="require 'Authorization: Bearer KEY' with KEY read from environment variable NAME "
                          "(never stored or logged)")
    srv.add_argument("--keep-days", type=int, default=30, metavar="N",
                     help="request log: delete rows older than N days, on start and hourly (0: no age limit)")
    srv.add_argument("--keep-rows", type=int, default=0, metavar="N",
                     help="request log: keep at most the newest N rows (0: no row limit); rows with feedback stay")
    live = sub.add_parser("live", parents=[common], help="promote a run to live (a `serve --live` server answers "
                                                         "with it from its next request); without RUN, the history")
    live.add_argument("run", nargs="?")
    sub.add_parser("rollback", parents=[common], help="make the run live before the live one live again")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ws = Workspace.open(getattr(args, "workspace", None))
        return COMMANDS[args.command](ws, args)
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_config(ws, args) -> int:
    print(config_to_yaml(preset_config(args.preset, datasets=args.datasets, base_model=args.base_model)), end="")
    return 0


def cmd_run(ws, args) -> int:
    from training.job import metrics_summary_line, run_training
    if args.run_id:
        run = R.get_run(ws, args.run_id)
    elif args.resume:
        raise TuneloopError("--resume needs --run-id (or use `python -m training resume RUN`)")
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TuneloopError("under accelerate launch, register the run first (`python -m training create CONFIG`) "
                            "and pass its id with --run-id")
    else:
        run = R.create_run(ws, load_config(args.config), name=args.name)
        print(f"run #{run.id}: {run.name} → {run.output_dir}", flush=True)
    run = run_training(ws, run.id, resume=args.resume)
    print(metrics_summary_line(run))
    if run.status == "failed":
        print(f"error: {run.error}", file=sys.stderr)
        return 1
    return 0


def cmd_create(ws, args) -> int:
    run = R.create_run(ws, load_config(args.config), name=args.name)
    print(run.id)
    return 0


def cmd_launch(ws, args) -> int:
    run = R.launch_run(ws, load_config(args.config), name=args.name)
    if run.waiting:
        print(f"run #{run.id} {run.status_text}: another run is training; it starts when the runs before it end")
    else:
        print(f"run #{run.id} started (pid {run.pid}); log: {run.log_path}")
    return 0


def cmd_preflight(ws, args) -> int:
    from training.preflight import preflight
    report = preflight(ws, load_config(args.config))
    print(report.as_text())
    return 0 if report.ok else 1


def cmd_list(ws, args) -> int:
    runs = R.list_runs(ws)
    if not runs:
        print("no runs yet; `python -m training launch CONFIG.yaml` starts one")
    for run in runs:
        m = run.metrics
        loss = m.get("final_eval_loss", m.get("train_loss"))
        print(f"#{run.id:<4} {run.status:<9} {run.created_at}  {run.name}"
              + (f"  loss {loss:.4f}" if isinstance(loss, (int, float)) else ""))
    return 0


def cmd_show(ws, args) -> int:
    run = R.get_run_status(ws, args.run)
    print(json.dumps({"id": run.id, "name": run.name, "status": run.status, "dataset": run.dataset,
                      "dataset_version": run.dataset_version, "dataset_hash": run.dataset_hash,
                      "parent_run": run.parent_run_id, "preference_version": run.preference_version,
                      "preference_hash": run.preference_hash,
                      "base_model": run.base_model, "base_revision": run.base_revision,
                      "code_version": run.code_version, "packages": run.packages, "metrics": run.metrics,
                      "artefacts": run.artefacts, "error": run.error, "output_dir": run.output_dir,
                      "config": run.config.to_dict()}, indent=2))
    return 0


def _wait(ws, run_id) -> int:
    """Wait for the run to end, printing each phase it enters (and each training step) as a line."""
    from training.run_views import phase_text
    shown = None
    while (run := R.get_run_status(ws, run_id)).active:
        now = phase_text(run)
        if now and now != shown:
            print(f"run #{run.id}: {now}", flush=True)
            shown = now
        time.sleep(1.0)
    print(f"run #{run.id} {run.status}")
    return 1 if run.status == "failed" else 0


def cmd_stop(ws, args) -> int:
    run = R.request_stop(ws, args.run)
    print(f"run #{run.id}: stop requested; it saves a checkpoint and stops at the end of the current step")
    return _wait(ws, run.id) if args.wait else 0


def cmd_resume(ws, args) -> int:
    run = R.resume_run(ws, args.run)
    ckpt = R.last_checkpoint(run)
    print(f"run #{run.id} resumed from {ckpt.name if ckpt else 'the start'} (pid {run.pid})")
    return _wait(ws, run.id) if args.wait else 0


def cmd_wait(ws, args) -> int:
    return _wait(ws, args.run)


def cmd_export(ws, args) -> int:
    from training.export import export_run
    started = time.monotonic()
    said = []

    def progress(fraction: float, text: str) -> None:
        if not said or said[-1] != text:       # a running conversion reports the same phase every quarter second
            said.append(text)
            print(f"{text} …", file=sys.stderr, flush=True)

    try:
        out = export_run(ws, args.run, args.kind, args.out, quant=args.quant, progress=progress)
    except KeyboardInterrupt:
        print(f"\nexport cancelled: {'the conversion under way was stopped and ' if args.kind == 'gguf' else ''}"
              f"no partial file was left", file=sys.stderr)
        return 130
    print(f"{args.kind} written to {out} ({time.monotonic() - started:.0f}s)")
    return 0


def cmd_serve(ws, args) -> int:
    from training.serve import serve
    if bool(args.run) == args.live:
        raise TuneloopError("name the run to serve (serve 3) or serve the live run (serve --live), not both")
    from training.serve import Retention
    from training.inference import THREADS_ENV
    if args.threads is not None:
        if args.threads < 1:
            raise TuneloopError(f"--threads {args.threads}: give a whole number of CPU threads, 1 or more")
        os.environ[THREADS_ENV] = str(args.threads)
    serve(ws, run_id=args.run, live=args.live, port=args.port, engine=args.engine, log_text=args.log_text,
          host=args.host, api_key_env=args.api_key_env,
          retention=Retention(args.keep_days or None, args.keep_rows or None),
          on_ready=lambda url: print(f"serving {'the live run' if args.live else f'run #{args.run}'} at {url} "
                                     f"(Ctrl-C stops)", flush=True))
    return 0


def cmd_live(ws, args) -> int:
    from training.serve import live_history, promote
    if args.run:
        version = promote(ws, args.run, actor=os.environ.get("USER"))
        print(f"run #{version.run_id} is live ({version.name})")
        return 0
    history = live_history(ws)
    if not history:
        print("no run has been live yet; `python -m training live RUN` promotes one")
    for v in history:
        print(f"{v.name:<10} run #{v.run_id:<4} {v.action:<8} {v.created_at}" + (f"  by {v.actor}" if v.actor else ""))
    return 0


def cmd_rollback(ws, args) -> int:
    from training.serve import rollback
    version = rollback(ws, actor=os.environ.get("USER"))
    print(f"rolled back: run #{version.run_id} is live again ({version.name})")
    return 0


COMMANDS = {"config": cmd_config, "run": cmd_run, "create": cmd_create, "launch": cmd_launch,
            "preflight": cmd_preflight, "list": cmd_list, "show": cmd_show, "stop": cmd_stop,
            "resume": cmd_resume, "wait": cmd_wait, "export": cmd_export,
            "serve": cmd_serve, "live": cmd_live, "rollback": cmd_rollback}
