"""Tuneloop: the dashboard. Composes each package's tabs; flags, logins and launch. No logic here.

    python app.py [--workspace DIR] [--host 127.0.0.1] [--port 7860] [--no-demo] [--rater-only] [--allowed-host NAME]
                  [--session-idle-hours H] [--session-max-days D] [--login-failures-per-user N] [--upload-limit-mb M]
    python app.py [--workspace DIR] users add NAME --role admin|rater|viewer [--password-file F]
    python app.py [--workspace DIR] users list | users remove NAME | users passwd NAME [--password-file F]

A workspace without users runs in local mode: no logins, on 127.0.0.1 only. Once it has users,
every page needs a login: admins get the whole dashboard at /, raters the Rate tab at /rate/,
viewers the playground at /playground/ (logging in at / sends each to their page); each of those is a
separate app, so a rater's login reaches no admin function at all, and every handler checks the caller's
role again on the server. Every page says who is logged in, with a logout link. In full mode a background
thread runs the general-skills guard on each run once it has finished (``evaluation.guard``).
"""
from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import logging
import os
import sys
import threading
import traceback

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TITLE = "Tuneloop"
# How long an idle keep-alive connection stays open. Longer than any client keeps one (httpx 5 s, aiohttp 15 s,
# a proxy such as a load balancer 60 s): at uvicorn's 5 s, equal to httpx's, a request sent on a connection
# idle for just under 5 s met the server closing it and was lost unanswered ("Server disconnected without
# sending a response", issue #20). The client gives up on an idle connection first, and nothing is lost.
KEEP_ALIVE_S = 75
CSS = """
.gradio-container {max-width: 1500px !important}
#tuneloop-header h1 {margin-bottom: 0}
"""
HEADER = """# Tuneloop
**Curate → Tune → Rate → Feed back.** Turn a general model into *your* model: clean your data, fine-tune,
compare blind with colleagues, and feed what you learn into the next round."""
VIEWER_HEADER = """# Tuneloop · playground
Ask a question and see what the original model and the fine-tuned one answer, side by side."""
RATER_HEADER = """# Tuneloop · blind rating
Compare two answers to the same question and pick the better one. You are not told which model wrote which
answer until you have voted."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="Run the Tuneloop dashboard, or manage its users.")
    p.add_argument("--workspace", help="workspace folder (default $TUNELOOP_WORKSPACE or ./workspace)")
    p.add_argument("--host", default=os.environ.get("TUNELOOP_HOST", "127.0.0.1"),
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 needs users)")
    p.add_argument("--port", type=int, default=int(os.environ.get("TUNELOOP_PORT", 7860)))
    p.add_argument("--no-demo", action="store_true", help="do not load the demo dataset into an empty workspace")
    p.add_argument("--rater-only", action="store_true",
                   help="serve only the Rate tab: no curation, training or export function exists in the API")
    from core.options import add_arguments
    from core.sessions import ServingOptions
    add_arguments(p, ServingOptions)
    sub = p.add_subparsers(dest="command")
    users = sub.add_parser("users", help="manage logins: add, list, remove")
    usub = users.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help="add a user (the password is prompted, or read from --password-file)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("admin", "rater", "viewer"))
    add.add_argument("--password-file", help="a file whose first line is the password")
    usub.add_parser("list", help="list users and roles")
    rm = usub.add_parser("remove", help="remove a user (their sessions end at once)")
    rm.add_argument("name")
    pw = usub.add_parser("passwd", help="change a user's password (prompted, or --password-file); ends their sessions")
    pw.add_argument("name")
    pw.add_argument("--password-file", help="a file whose first line is the password")
    return p.parse_args(argv)


def serving_options(args: argparse.Namespace):
    """The serving options the command line asks for; $TUNELOOP_ALLOWED_HOSTS when no --allowed-host is given."""
    from core.options import from_args
    from core.sessions import ServingOptions
    options = from_args(ServingOptions, args)
    named = os.environ.get("TUNELOOP_ALLOWED_HOSTS", "")
    if not options.allowed_host and named.strip():
        options = options.replace(allowed_host=[h.strip() for h in named.split(",") if h.strip()])
    return options


# -- composition ----------------------------------------------------------------------------------

def build_admin_app(ws):
    """Every tab, for admins (and for local mode)."""
    import gradio as gr

    from curation.ui import data, dedup, pii, review, splits
    from evaluation.playground_ui import build_playground_tab
    from evaluation.ui import build_rate_tab, build_results_tab
    from training.ui import build_train_tab
    from ui import api, users
    from ui.access import login_line

    with gr.Blocks(title=TITLE) as blocks:
        api.register(ws)  # first, so that the API's names are not taken by a tab's handler
        gr.Markdown(HEADER, elem_id="tuneloop-header")
        login_line(blocks, ws)
        with gr.Tabs():
            data.build(ws)
            review.build(ws)
            pii.build(ws)
            dedup.build(ws)
            splits.build(ws)
            build_train_tab(ws)
            build_playground_tab(ws)
            build_rate_tab(ws, prepare=True)
            build_results_tab(ws)
            users.build(ws)
    return blocks


def build_viewer_app(ws):
    """Only the Playground, read-only: what viewers (stakeholders) get."""
    import gradio as gr

    from evaluation.playground_ui import build_playground_tab
    from ui.access import login_line

    with gr.Blocks(title=f"{TITLE} · playground") as blocks:
        gr.Markdown(VIEWER_HEADER, elem_id="tuneloop-header")
        login_line(blocks, ws)
        with gr.Tabs():
            build_playground_tab(ws, allow_send=False)
    return blocks


def build_rate_app(ws):
    """Only the Rate tab: what raters (and a --rater-only server) get."""
    import gradio as gr

    from evaluation.ui import build_rate_tab
    from ui.access import login_line

    with gr.Blocks(title=f"{TITLE} · rating") as blocks:
        gr.Markdown(RATER_HEADER, elem_id="tuneloop-header")
        login_line(blocks, ws)
        with gr.Tabs():
            build_rate_tab(ws)
    return blocks


def page_head() -> str:
    """Keyboard shortcuts and overlays the tabs ask for in the page head."""
    from ui.kit import static_css, static_head
    return static_head("review") + "\n" + static_css("pii")


def create_server(ws, *, rater_only: bool = False, serving=None, host: str = "127.0.0.1"):
    """A FastAPI app with the Gradio apps mounted for the workspace's mode, served as ``host`` under the
    limits of ``serving`` (``core.sessions.ServingOptions``; its defaults when None)."""
    import gradio as gr
    from fastapi import FastAPI

    from core.sessions import LoginThrottle, ServingOptions, Sessions
    from core.users import has_users
    from ui.access import (FORM_OVERHEAD, LOOPBACK_NAMES, MAX_EVENT_BODY, LoginPageWithoutApi, MountRule,
                           SessionGuard, guard_handlers, password_check)
    from ui.api import hide_unnamed

    serving = serving or ServingOptions()
    upload_limit = int(serving.upload_limit_mb * 1024 * 1024)

    server = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    head = page_head()
    hosted = has_users(ws)
    mounts = []  # (path, blocks, roles); the root last so that it does not shadow the others
    if rater_only:
        mounts.append(("/", build_rate_app(ws), ("rater", "admin")))
    else:
        if hosted:
            mounts.append(("/rate", build_rate_app(ws), ("rater", "admin")))
            mounts.append(("/playground", build_viewer_app(ws), ("viewer", "admin")))
        mounts.append(("/", build_admin_app(ws), ("admin",)))
    for path, blocks, roles in mounts:
        hide_unnamed(blocks)  # a script sees the automation API, not the widgets' events
        guard_handlers(blocks, ws, roles)
        message = (f"Tuneloop · log in ({' or '.join(roles)})."
                   + (" Raters: open /rate/ instead; viewers: /playground/." if path == "/" and not rater_only else ""))
        gr.mount_gradio_app(server, blocks.queue(default_concurrency_limit=8, api_open=False), path=path,
                            auth=password_check(ws, roles) if hosted else None,
                            auth_message=message if hosted else None, css=CSS, head=head, show_error=True,
                            footer_links=["settings"], ssr_mode=False,
                            max_file_size=upload_limit)
    if hosted:
        server.add_middleware(LoginPageWithoutApi)
    named = {h.lower() for h in serving.allowed_host}
    hosts = set(LOOPBACK_NAMES) | ({host.lower().strip("[]"), *named} if hosted else set())
    rules = []
    for path, _, roles in mounts:
        files = "admin" in roles and path == "/" and not rater_only
        rules.append(MountRule(path, roles, files=files,
                               max_body=max(MAX_EVENT_BODY, upload_limit + FORM_OVERHEAD) if files else MAX_EVENT_BODY))
    sessions = Sessions(ws, idle_s=serving.session_idle_hours * 3600, max_s=serving.session_max_days * 86400)
    throttle = LoginThrottle(per_user=serving.login_failures_per_user, per_address=serving.login_failures_per_address)
    server.add_middleware(SessionGuard, mounts=rules, hosts=hosts, named_hosts=named,
                          sessions=sessions if hosted else None, throttle=throttle if hosted else None)
    return server


# -- commands --------------------------------------------------------------------------------------

class JsonLogLines(logging.Formatter):
    """One JSON object per line, so that every entry of the server log parses. An unexpected exception keeps
    its traceback (``exc``); a refusal the caller was shown (a TuneloopError or gr.Error: a bad value, a wrong
    file) is one entry naming its kind and where it was raised, without its message, which quotes what the
    caller sent."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"at": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_refusal(exc):
            site = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            entry["refusal"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            entry["raised_at"] = f"{site[0].filename}:{site[0].lineno} in {site[0].name}" if site else ""
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def is_refusal(exc: BaseException) -> bool:
    """An ordinary refusal shown to the caller, not a failure of the server: a TuneloopError, a gr.Error, or
    Gradio's own check of what the caller sent (too few input values for an event), whose message lists the
    values sent."""
    from core.errors import TuneloopError
    gradio_errors = sys.modules.get("gradio.exceptions")
    if isinstance(exc, TuneloopError) or (gradio_errors is not None and isinstance(exc, gradio_errors.Error)):
        return True
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    return bool(frames) and frames[-1].name == "validate_inputs" \
        and os.path.basename(os.path.dirname(frames[-1].filename)) == "gradio"


class StderrLines:
    """The server's sys.stderr: each line something prints there itself (a library's message, a traceback
    printed by hand) becomes a log entry, so that the log stays one JSON object per line."""

    def __init__(self, log: logging.Logger, real):
        self.log, self.real, self.pending = log, real, ""
        self.inside = threading.local()

    def write(self, text: str) -> int:
        if getattr(self.inside, "busy", False):   # logging reporting its own failure: straight out
            return self.real.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        self.inside.busy = True
        try:
            for line in lines:
                if line.strip():
                    self.log.warning(line)
        finally:
            self.inside.busy = False
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.real.fileno()


PRINT_EXC = traceback.print_exc


def log_instead_of_printing(limit=None, file=None, chain=True) -> None:
    """Stands in for ``traceback.print_exc`` in the server, where Gradio prints the traceback of every failed
    request, a rejected value included: a refusal is one INFO line, a failure one ERROR entry with its trace.
    A caller printing into a file of its own still gets the traceback there."""
    if file is not None:
        return PRINT_EXC(limit=limit, file=file, chain=chain)
    exc_info = sys.exc_info()
    refused = exc_info[1] is not None and is_refusal(exc_info[1])
    logging.getLogger("tuneloop.requests").log(logging.INFO if refused else logging.ERROR,
                                                "a request was refused" if refused else "a request failed",
                                                exc_info=exc_info)


def log_as_json_lines() -> None:
    """Once the server is about to run: every line on stderr one JSON object, not only the root logger's
    (ours, and uvicorn's, which propagates there) but Python warnings, Gradio's printed tracebacks, a failing
    thread and anything else printed there. The root logger's handler keeps the real stderr."""
    logging.captureWarnings(True)
    traceback.print_exc = log_instead_of_printing
    threading.excepthook = lambda hook: logging.getLogger("tuneloop.threads").error(
        "a thread failed", exc_info=(hook.exc_type, hook.exc_value, hook.exc_traceback))
    sys.stderr = StderrLines(logging.getLogger("tuneloop.stderr"), sys.stderr)


def users_command(ws, args) -> int:
    from core.errors import TuneloopError
    from core.users import add_user, list_users, remove_user, set_password
    try:
        if args.users_command in ("add", "passwd"):
            if args.password_file:
                with open(args.password_file, encoding="utf-8") as fh:
                    password = fh.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"Password for {args.name}: ")
                if password != getpass.getpass("Again: "):
                    print("error: the passwords differ; nothing changed", file=sys.stderr)
                    return 1
            if args.users_command == "add":
                user = add_user(ws, args.name, args.role, password)
                print(f"added {user.name} ({user.role})")
            else:
                set_password(ws, args.name, password)
                print(f"changed the password of {args.name}; their sessions have ended")
        elif args.users_command == "list":
            users = list_users(ws)
            if not users:
                print("no users: the app runs in local mode (no logins, 127.0.0.1 only)")
            for u in users:
                print(f"{u.name}\t{u.role}\t{u.created_at}")
        else:
            remove_user(ws, args.name)
            print(f"removed {args.name}")
    except (TuneloopError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def bootstrap_admin(ws) -> None:
    """On a host with no shell (a Space), $TUNELOOP_ADMIN_USER/$TUNELOOP_ADMIN_PASSWORD make the first admin."""
    from core.users import add_user, has_users
    name, password = os.environ.get("TUNELOOP_ADMIN_USER"), os.environ.get("TUNELOOP_ADMIN_PASSWORD")
    if name and password and not has_users(ws):
        add_user(ws, name, "admin", password)
        logging.getLogger("tuneloop").info("created the first admin from TUNELOOP_ADMIN_USER")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    from core.users import has_users
    from core.workspace import Workspace, served_files_folder
    ws = Workspace.open(args.workspace)
    if args.command == "users":
        return users_command(ws, args)
    # Before Gradio is imported (it reads this then): uploads and their copies stay in the workspace, swept
    # on the next start once this server has ended.
    os.environ["GRADIO_TEMP_DIR"] = str(served_files_folder(ws))
    from core.errors import TuneloopError
    try:
        serving = serving_options(args)
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bootstrap_admin(ws)
    if not has_users(ws) and not _is_loopback(args.host):
        print(f"error: this workspace has no users, so it runs without logins and only on 127.0.0.1. "
              f"Add an admin first (python app.py --workspace {ws.root} users add NAME --role admin), "
              f"then serve on {args.host}.", file=sys.stderr)
        return 2
    if not args.no_demo and not args.rater_only:
        from curation.data.versions import list_versions
        if not list_versions(ws):
            from curation.data.demo import load_demo
            load_demo(ws)
    import uvicorn
    log_as_json_lines()
    server = create_server(ws, rater_only=args.rater_only, serving=serving, host=args.host)
    if not args.rater_only:
        from evaluation.guard import GuardWatcher
        GuardWatcher(ws).start()
    mode = "rater-only" if args.rater_only else ("hosted, logins on" if has_users(ws) else "local, no logins")
    print(f"Tuneloop ({mode}): workspace {ws.root}; serving on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(server, host=args.host, port=args.port, log_level="warning", log_config=None,  # our JSON lines
                timeout_keep_alive=KEEP_ALIVE_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
