"""The Serve panel of the Train tab: start and stop an OpenAI-compatible endpoint for a run (or for whatever run
is live), promote a run to live and roll back, and watch the requests: latency, tokens and errors over time,
and the feedback users sent.

House pattern: ``layout`` creates the widgets (a ``ServeWidgets``) inside the Train tab, the module-level
handlers take the workspace, the widgets and the page's values and return a dict keyed by component, and
``wire`` binds them with ``ui.kit.bind``. The work is ``training.serve``; a server is a background process
whose pid is stored, so the panel finds it again after a page reload or an app restart.
"""
from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from training import serve as S
from ui.kit import bind, caller_name, clear_on_input, error_markdown, picker_updates, run_picker

POLL_SECONDS = 5.0
INTRO = """Answer on **127.0.0.1** with the OpenAI API (`/v1/chat/completions`, streaming too): any OpenAI client
works with `base_url` set to the URL below. **Serve the live run** follows **Make live** and **Roll back** without
a restart. Each request is logged (time, run, latency, tokens, errors); its text only with **Log request text**;
the log is pruned on start and hourly (30 days by default; requests with feedback stay). Another host than
127.0.0.1 needs an API key (clients send `Authorization: Bearer <key>`).
Users rate answers with `POST /v1/feedback`; **Merge feedback from use** in the Results tab's rounds view turns it
into the next dataset version."""
HISTORY_HEADERS = ["version", "run", "action", "by", "at"]


class ServeWidgets(SimpleNamespace):
    """The Serve panel's components by name (``layout`` fills it)."""

    @property
    def shown(self) -> list:
        """What a refresh fills."""
        return [self.status, self.server, self.history, self.latency, self.tokens, self.errors, self.feedback]


def layout(ws) -> ServeWidgets:
    """The Serve panel's widgets, inside the caller's layout (the Train tab); nothing is wired yet."""
    w = ServeWidgets()
    with gr.Accordion("Serve: an OpenAI-compatible endpoint", open=False, elem_id="serve-panel"):
        gr.Markdown(INTRO)
        with gr.Row():
            w.run = run_picker(ws, "Run", with_adapter=True, elem_id="serve-run", scale=3)
            w.live = gr.Checkbox(False, label="Serve the live run instead", elem_id="serve-live", scale=1)
            w.port = gr.Number(S.DEFAULT_PORT, precision=0, minimum=1024, maximum=65535, label="Port",
                               elem_id="serve-port", scale=1)
            w.engine = gr.Dropdown(list(S.ENGINES), value="auto", label="Engine", elem_id="serve-engine", scale=1,
                                   info="auto: vLLM on a GPU, else llama.cpp, else transformers")
            w.log_text = gr.Checkbox(False, label="Log request text", elem_id="serve-log-text", scale=1)
        with gr.Row():
            w.host = gr.Textbox(S.HOST, label="Host", elem_id="serve-host", scale=1,
                                info="127.0.0.1: this machine only; any other (0.0.0.0) needs an API key")
            w.api_key_env = gr.Textbox("", label="API key from environment variable", elem_id="serve-api-key-env",
                                       scale=1, placeholder="e.g. TUNELOOP_API_KEY",
                                       info="the app's environment must hold it; the key is never stored")
            w.keep_days = gr.Number(S.RETENTION_DAYS, precision=0, minimum=0, label="Keep requests (days)",
                                    elem_id="serve-keep-days", scale=1, info="0: no age limit")
            w.keep_rows = gr.Number(0, precision=0, minimum=0, label="Keep at most (rows)",
                                    elem_id="serve-keep-rows", scale=1, info="0: no row limit")
        with gr.Row():
            w.start_btn = gr.Button("Start serving", variant="primary", elem_id="serve-start")
            w.live_btn = gr.Button("Make the run live", elem_id="serve-make-live")
            w.rollback_btn = gr.Button("Roll back to the previous live run", elem_id="serve-rollback")
        w.message = gr.Markdown(elem_id="serve-message")
        w.status = gr.Markdown(elem_id="serve-status")
        with gr.Row():
            w.server = gr.Dropdown([], label="Running server", elem_id="serve-server", scale=3)
            w.stop_btn = gr.Button("Stop it", elem_id="serve-stop", scale=1)
            w.refresh_btn = gr.Button("↻", elem_id="serve-refresh", scale=0, size="sm")
        w.history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, label="Live versions (newest first)",
                                 elem_id="serve-history")
        with gr.Row():
            w.latency = gr.LinePlot(x="time", y="latency (ms)", color="run", title="Latency per request",
                                    elem_id="serve-latency")
            w.tokens = gr.LinePlot(x="time", y="tokens", color="part", title="Tokens per request",
                                   elem_id="serve-tokens")
            w.errors = gr.LinePlot(x="minute", y="error rate", title="Errors per minute (share of requests)",
                                   y_lim=[0, 1], elem_id="serve-errors")
        w.feedback = gr.Markdown(elem_id="serve-feedback")
        w.timer = gr.Timer(POLL_SECONDS)
    return w


# -- presenters ---------------------------------------------------------------------------------------

def status_markdown(processes: list[S.ServerProcess], live: S.LiveVersion | None) -> str:
    """The running servers with their URL, a curl example for the first, and which run is live."""
    lines = [f"**Live:** run #{live.run_id} ({live.name})" if live else "**Live:** no run promoted yet"]
    if not processes:
        return "\n\n".join(lines + ["No server is running; choose a run and **Start serving**."])
    lines += [f"- serving {html.escape(p.describe())}" for p in processes]
    url, env = processes[0].url, processes[0].api_key_env
    login = f" -H \"Authorization: Bearer ${env}\"" if env else ""
    lines.append(f"```\ncurl {url}/chat/completions{login} -H 'Content-Type: application/json' \\\n"
                 f"  -d '{{\"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}], \"stream\": false}}'\n"
                 f"curl {url}/feedback{login} -H 'Content-Type: application/json' \\\n"
                 f"  -d '{{\"response_id\": \"chatcmpl-…\", \"rating\": \"down\", \"correction\": \"…\", "
                 f"\"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'\n```")
    return "\n\n".join(lines)


def request_frames(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Latency per request (by run), prompt and completion tokens per request, and the error share per minute."""
    log = pd.DataFrame([{**r, "run": f"run #{r['run_id']}" if r["run_id"] is not None else "no run"} for r in rows],
                       columns=["created_at", "run", "latency_ms", "prompt_tokens", "completion_tokens", "status"])
    log["time"] = pd.to_datetime(log["created_at"], utc=True)
    answered = log[log["status"] == 200]
    latency = answered.rename(columns={"latency_ms": "latency (ms)"})[["time", "latency (ms)", "run"]]
    tokens = pd.concat([answered.assign(part=part, tokens=answered[column])[["time", "tokens", "part"]]
                        for part, column in (("prompt", "prompt_tokens"), ("completion", "completion_tokens"))])
    log["minute"] = log["time"].dt.floor("min")
    errors = (log.assign(failed=log["status"] != 200).groupby("minute", as_index=False)["failed"].mean()
              .rename(columns={"failed": "error rate"}))
    return latency, tokens, errors


def feedback_markdown(counts: dict[str, int], requests: int) -> str:
    return (f"**Feedback from use:** 👍 {counts['up']} · 👎 {counts['down']} · {counts['corrections']} corrected "
            f"answers · {counts['comments']} comments, over {requests} logged requests")


# -- handlers -----------------------------------------------------------------------------------------

def refresh(ws, w: ServeWidgets, data: dict) -> dict:
    """The servers, the live history, the request plots and the feedback counts as they stand."""
    processes = S.server_processes(ws)
    rows = S.request_log(ws)
    latency, tokens, errors = request_frames(rows)
    chosen = data.get(w.server)
    choices = [(p.describe(), str(p.id)) for p in processes]
    history = [[v.name, f"#{v.run_id}", v.action, v.actor or "", v.created_at] for v in S.live_history(ws)]
    return {w.status: status_markdown(processes, S.live_version(ws)),
            w.server: gr.update(choices=choices, value=chosen if chosen in dict(choices).values()
                                else (choices[0][1] if choices else None)),
            w.history: pd.DataFrame(history, columns=HISTORY_HEADERS), w.latency: latency, w.tokens: tokens,
            w.errors: errors, w.feedback: feedback_markdown(S.feedback_counts(ws), len(rows))}


def start(ws, w: ServeWidgets, data: dict) -> dict:
    """Start a server for the chosen run (or the live run) and wait until it answers."""
    live = bool(data[w.live])
    try:
        if not live and not data[w.run]:
            raise TuneloopError("choose a run with an adapter to serve, or tick 'Serve the live run instead'")
        retention = S.Retention(int(data[w.keep_days] or 0) or None, int(data[w.keep_rows] or 0) or None)
        process = S.start_server(ws, run_id=None if live else data[w.run], live=live, port=int(data[w.port] or 0),
                                 engine=data[w.engine] or "auto", log_text=bool(data[w.log_text]),
                                 host=(data[w.host] or S.HOST).strip(), api_key_env=(data[w.api_key_env] or "").strip()
                                 or None, retention=retention)
    except TuneloopError as exc:
        return {w.message: error_markdown(exc), **refresh(ws, w, data)}
    return {w.message: f"Serving at `{process.url}`.", **refresh(ws, w, {**data, w.server: str(process.id)})}


def stop(ws, w: ServeWidgets, data: dict) -> dict:
    """Stop the chosen server."""
    try:
        if not data[w.server]:
            raise TuneloopError("no server is chosen; the list shows the running ones")
        process = S.stop_server(ws, data[w.server])
    except TuneloopError as exc:
        return {w.message: error_markdown(exc), **refresh(ws, w, data)}
    return {w.message: f"Stopped the server at `{process.url}`.", **refresh(ws, w, data)}


def make_live(ws, w: ServeWidgets, data: dict, request: gr.Request = None) -> dict:
    """Promote the chosen run to live."""
    try:
        version = S.promote(ws, data[w.run] or "", actor=caller_name(ws, request))
    except TuneloopError as exc:
        return {w.message: error_markdown(exc), **refresh(ws, w, data)}
    return {w.message: f"Run #{version.run_id} is live ({version.name}); a server of the live run answers with it "
                       f"from its next request.", **refresh(ws, w, data)}


def roll_back(ws, w: ServeWidgets, data: dict, request: gr.Request = None) -> dict:
    """Make the run live before the live one live again."""
    try:
        version = S.rollback(ws, actor=caller_name(ws, request))
    except TuneloopError as exc:
        return {w.message: error_markdown(exc), **refresh(ws, w, data)}
    return {w.message: f"Rolled back: run #{version.run_id} is live again ({version.name}).", **refresh(ws, w, data)}


def run_choices(ws, w: ServeWidgets, data: dict) -> dict:
    """The run picker on the runs as they stand."""
    return {w.run: picker_updates([w.run], [data[w.run]])[0]}


def wire(ws, w: ServeWidgets, tab) -> None:
    """Bind the panel's buttons, its poll and ``tab``'s opening to the handlers."""
    def on(event, handler, inputs, outputs, **kw):
        return event(bind(handler, ws, w), inputs, outputs, api_name=False, **kw)

    form = {w.run, w.live, w.port, w.engine, w.log_text, w.host, w.api_key_env, w.keep_days, w.keep_rows, w.server}
    on(w.start_btn.click, start, form, [w.message, *w.shown])
    on(w.stop_btn.click, stop, {w.server}, [w.message, *w.shown])
    on(w.live_btn.click, make_live, {w.run, w.server}, [w.message, *w.shown])
    on(w.rollback_btn.click, roll_back, {w.server}, [w.message, *w.shown])
    for event in (w.refresh_btn.click, w.timer.tick, tab.select):
        on(event, refresh, {w.server}, w.shown, show_progress="hidden")
    on(tab.select, run_choices, {w.run}, [w.run], show_progress="hidden")
    clear_on_input([w.run], [w.message])
