"""Serve a run on an OpenAI-compatible endpoint: versions with a rollback, a request log, feedback from use.

``python -m training serve 3`` (or the Serve panel in the Train tab) answers ``POST /v1/chat/completions``
on 127.0.0.1 with run #3; ``serve --live`` answers with whatever run is live and follows ``live`` and
``rollback`` without a restart. The app is small and ours (starlette + uvicorn, already installed with
gradio) so that every request is logged and every response can be rated:

- ``GET /v1/models``, ``POST /v1/chat/completions`` (messages, temperature, top_p, max_tokens, stop, seed,
  stream as server-sent ``data: {...}`` chunks ending with ``data: [DONE]``; the extension field
  ``repetition_penalty``), errors in OpenAI's ``{"error": {message, type, param, code}}`` shape. A request without a system
  message gets the run's trained system prompt first (the rule of evaluation and the exported Modelfile,
  ``training.export.run_system_prompt``; ``/v1/models`` shows it); a request's own system message wins.
- ``POST /v1/feedback`` ``{response_id, rating: up|down, comment?, correction?, messages?, completion?,
  metadata?}``: ``metadata`` is the extension field for the client's own keys (its user, app, screen); it is
  stored as given. ``messages`` and ``completion`` are the conversation and answer as the client saw them:
  needed by ``python -m evaluation merge-served-feedback`` when the server does not log text.
- Every response names the run and version that answered it: ``model`` is ``run-3`` (``run-3@live-v2`` when
  serving the live run) and the headers ``X-Tuneloop-Run`` / ``X-Tuneloop-Version`` say the same.
- Each request is a row of ``serve_requests`` (time, run, live version, engine, latency, tokens, finish
  reason, HTTP status, error); the request and response texts only when the server runs with ``--log-text``.
  The log keeps ``Retention`` (30 days by default, and/or a number of rows), pruned on start and hourly;
  a request that feedback names is kept, since the feedback reaches the next dataset through it.
- Login: with ``--api-key-env NAME`` every request needs ``Authorization: Bearer <$NAME>`` (else 401 in
  OpenAI's shape); the key is read from the environment, never stored or logged. A host other than loopback
  (``--host 0.0.0.0``) is refused without one.

Engines, behind one small interface (``Engine.stream``): ``llamacpp`` (llama-cpp-python on the run's merged
GGUF from ``training.gguf.run_gguf``; chat template from the GGUF), ``transformers`` (the shared
``WarmBase`` with the run's adapter, the same answers as the Playground) and ``vllm`` (the base model with
the LoRA adapter, for a CUDA machine with vLLM installed; it answers in one piece when streaming; this
code path is not exercised by the test suite, which runs on CPUs). ``auto`` takes vllm where CUDA and vllm
are present, else llama.cpp where llama-cpp-python and llama.cpp's converter (``make setup``) are installed,
else transformers.

Decoding defaults to greedy (temperature 0: the same answer every time) with the house repetition penalty
1.1, like the Playground; a request's ``temperature`` > 0 samples.

Example::

    promote(ws, 3)                                  # run #3 is live-v1
    serve(ws, live=True, port=8000)                 # blocks; or start_server(ws, live=True) in the background
    rollback(ws)                                    # the run live before #3 answers the next request
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from core.errors import TuneloopError
from core.workspace import Workspace
from training import registry as R

ENGINES = ("auto", "llamacpp", "transformers", "vllm")
ENGINE_ALIASES = {"llama.cpp": "llamacpp", "llama-cpp": "llamacpp", "llama_cpp": "llamacpp"}
HOST = "127.0.0.1"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
RETENTION_DAYS = 30
PRUNE_EVERY_S = 3600
DEFAULT_PORT = 8000
MAX_ENGINES = 2              # loaded at once in a --live server: the live run and the one before it
READY_TIMEOUT_S = 300
ROLES = ("system", "user", "assistant")


class RequestError(Exception):
    """A request the endpoint refuses, with the HTTP status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None, kind: str = "invalid_request_error",
                 code: str | int | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind
        self.code = status if code is None else code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# -- what a request asks for ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatParams:
    """The decoding a chat request asks for, validated (OpenAI's names; greedy unless temperature > 0)."""
    temperature: float = 0.0
    top_p: float = 0.95
    max_tokens: int = 200
    stop: tuple[str, ...] = ()
    seed: int = 0
    repetition_penalty: float = 1.1

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "ChatParams":
        def number(name, kind, low, high, default):
            value = body.get(name)
            if value is None:
                return default
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                raise RequestError(400, f"'{name}' must be a number{' (whole)' if kind is int else ''}", param=name)
            if not low <= value <= high:
                raise RequestError(400, f"'{name}' must be between {low} and {high}; got {value}", param=name)
            return kind(value)

        if body.get("n", 1) != 1:
            raise RequestError(400, "'n' must be 1: this endpoint gives one answer per request", param="n")
        stop = body.get("stop")
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        if len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
            raise RequestError(400, "'stop' must be a string or a list of up to 4 non-empty strings", param="stop")
        return cls(temperature=number("temperature", float, 0.0, 2.0, 0.0),
                   top_p=number("top_p", float, 0.01, 1.0, cls.top_p),
                   max_tokens=number("max_tokens", int, 1, 8192,
                                     number("max_completion_tokens", int, 1, 8192, cls.max_tokens)),
                   stop=stops, seed=number("seed", int, 0, 2 ** 31 - 1, 0),
                   repetition_penalty=number("repetition_penalty", float, 0.01, 10.0, cls.repetition_penalty))


def parse_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """The request's conversation as [{role, content}], text parts joined; a clear error for anything else."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content}", param="messages")
    out = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ROLES:
            raise RequestError(400, f"messages[{i}].role must be one of {', '.join(ROLES)}; got {role!r}",
                               param=f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(parts) != len(content) or not all(isinstance(p, str) for p in parts):
                raise RequestError(400, f"messages[{i}].content: only text parts are understood by this model",
                                   param=f"messages[{i}].content")
            content = "".join(parts)
        if not isinstance(content, str):
            raise RequestError(400, f"messages[{i}].content must be a string", param=f"messages[{i}].content")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise RequestError(400, "the last message must be the user's turn the model answers", param="messages")
    return out


@dataclass
class Usage:
    """An answer's figures, kept up to date by the engine while it answers (so an answer cut short by a stop
    string or a client that went away still has its counts)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"     # stop (ended by itself or at a stop string) or length (hit max_tokens)


# -- engines -------------------------------------------------------------------------------------------

class Engine:
    """One run's model, answering chat requests. ``stream`` yields the answer's text pieces and keeps ``usage``
    up to date as it goes; closing the iterator early stops the generation."""
    kind = ""

    def __init__(self, run: R.Run):
        self.run = run

    def stream(self, messages: list[dict[str, str]], params: ChatParams, usage: Usage) -> Iterator[str]:
        raise NotImplementedError


def run_adapter(run: R.Run) -> Path:
    """The run's adapter folder, or an error saying the run has not produced one."""
    folder = Path(run.artefacts.get("adapter") or run.adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise TuneloopError(f"run #{run.id} ({run.status}) has no adapter yet in {folder}; serve a finished run")
    return folder


class TransformersEngine(Engine):
    """The shared warm base model (fp32/bf16, not 4-bit) with the run's adapter: the Playground's answers."""
    kind = "transformers"

    def __init__(self, ws: Workspace, run: R.Run):
        from training.inference import default_pool
        super().__init__(run)
        self.warm = default_pool().get(ws, run.base_model, engine="transformers")
        self.adapter = self.warm.add_adapter(run_adapter(run))
        self.warm.prompt_lengths([[{"role": "user", "content": "hi"}]])     # load the weights now, not on a request

    def stream(self, messages, params, usage):
        from training.inference import DecodingSettings
        settings = DecodingSettings.from_knobs(temperature=params.temperature, top_p=params.top_p,
                                               max_new_tokens=params.max_tokens, seed=params.seed,
                                               repetition_penalty=params.repetition_penalty)
        usage.prompt_tokens = self.warm.prompt_lengths([messages])[0]
        for event in self.warm.stream([messages], adapters=[self.adapter], settings=settings):
            stats = event.stats[0]
            usage.completion_tokens = stats.tokens
            usage.finish_reason = "stop" if stats.finished or stats.tokens < params.max_tokens else "length"
            if event.text:
                yield event.text


class LlamaCppEngine(Engine):
    """llama-cpp-python on the run's merged model as GGUF (converted once, cached by ``training.gguf``); the
    chat template is the one stored in the GGUF, rendered as llama-cpp-python renders it."""
    kind = "llamacpp"

    def __init__(self, ws: Workspace, run: R.Run, *, quant: str = "f16", n_ctx: int = 2048):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        from training.gguf import run_gguf
        super().__init__(run)
        self.path = Path(run_gguf(ws, run, quant=quant))
        from training.inference import inference_threads
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=inference_threads() or os.cpu_count() or 1,
                         verbose=False)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise TuneloopError(f"{self.path} has no chat template (tokenizer.chat_template); re-export the run "
                                f"with `python -m training export {run.id} --kind gguf`")
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        text = lambda token: self.llm.detokenize([token], special=True).decode("utf-8", "replace")  # noqa: E731
        self.formatter = Jinja2ChatFormatter(template, eos_token=text(eos), bos_token=text(bos),
                                             stop_token_ids=[eos])
        self.lock = threading.Lock()        # one llama context answers one request at a time

    def stream(self, messages, params, usage):
        with self.lock:
            formatted = self.formatter(messages=messages)
            prompt = self.llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=False, special=True)
            stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop]
            usage.prompt_tokens = len(prompt)
            answer = ""
            for chunk in self.llm.create_completion(
                    prompt, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                    seed=params.seed, repeat_penalty=params.repetition_penalty, stop=[s for s in stops if s],
                    stream=True):
                choice = chunk["choices"][0]
                usage.finish_reason = choice.get("finish_reason") or usage.finish_reason
                if choice.get("text"):
                    answer += choice["text"]
                    usage.completion_tokens += 1
                    yield choice["text"]
            # a chunk can hold several tokens (held back at a possible stop string); count the answer's own
            usage.completion_tokens = len(self.llm.tokenize(answer.encode("utf-8"), add_bos=False, special=True))


class VLLMEngine(Engine):
    """vLLM on a CUDA machine: the base model with the run's LoRA adapter (``enable_lora``). It answers a
    streamed request in one piece. Not run by the test suite (no GPU there)."""
    kind = "vllm"

    def __init__(self, ws: Workspace, run: R.Run):
        from vllm import LLM
        from vllm.lora.request import LoRARequest
        from training.models import resolve_base_model
        super().__init__(run)
        base = resolve_base_model(run.base_model, ws)
        self.llm = LLM(model=base.path, enable_lora=True, max_lora_rank=vllm_lora_rank(int(run.config.lora_r)))
        self.lora = LoRARequest(f"run-{run.id}", 1, str(run_adapter(run)))

    def stream(self, messages, params, usage):
        from vllm import SamplingParams
        sampling = SamplingParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                                  stop=list(params.stop) or None, seed=params.seed,
                                  repetition_penalty=params.repetition_penalty)
        (out,) = self.llm.chat([messages], sampling, lora_request=self.lora, use_tqdm=False)
        answer = out.outputs[0]
        usage.prompt_tokens, usage.completion_tokens = len(out.prompt_token_ids), len(answer.token_ids)
        usage.finish_reason = "length" if answer.finish_reason == "length" else "stop"
        yield answer.text


# The ranks vLLM sizes its LoRA kernels for (its ``max_lora_rank`` takes only these).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_lora_rank(rank: int) -> int:
    """The ``max_lora_rank`` vLLM needs for an adapter of ``rank``: the smallest of its sizes that holds it."""
    fits = [size for size in VLLM_LORA_RANKS if size >= rank]
    if not fits:
        raise TuneloopError(f"the run's LoRA rank {rank} is above the {VLLM_LORA_RANKS[-1]} vLLM serves; serve it "
                            f"with --engine llamacpp or transformers, or merge it (export --kind merged)")
    return fits[0]


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def _importable(module: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _gguf_converter_present() -> bool:
    from training.gguf import converter_dir
    return (converter_dir() / "convert_hf_to_gguf.py").is_file()


def choose_engine(kind: str = "auto") -> str:
    """The engine ``kind`` stands for: ``auto`` is vllm with CUDA and vllm, else llamacpp with llama-cpp-python
    and llama.cpp's GGUF converter, else transformers. A named engine that is missing is an error saying what to
    install. ``llama.cpp`` is another name for llamacpp (the Playground's)."""
    kind = ENGINE_ALIASES.get(kind, kind)
    if kind not in ENGINES:
        raise TuneloopError(f"unknown engine '{kind}'; choose one of {', '.join(ENGINES)}")
    llamacpp = _importable("llama_cpp") and _gguf_converter_present()
    if kind == "auto":
        if _importable("vllm") and _cuda():
            return "vllm"
        return "llamacpp" if llamacpp else "transformers"
    if kind == "llamacpp" and not llamacpp:
        raise TuneloopError("the llamacpp engine needs llama-cpp-python (pip install llama-cpp-python==0.3.36) "
                            "and llama.cpp's GGUF converter (`make setup`); or serve with --engine transformers")
    if kind == "vllm" and not (_importable("vllm") and _cuda()):
        missing = "vLLM (pip install vllm)" if not _importable("vllm") else "a CUDA GPU (torch sees none here)"
        raise TuneloopError(f"the vllm engine needs vLLM on a CUDA machine and this one lacks {missing}; serve with "
                            f"--engine llamacpp or transformers")
    return kind


def open_engine(ws: Workspace, run: R.Run, kind: str) -> Engine:
    """The run's model loaded in engine ``kind`` (already resolved by ``choose_engine``)."""
    run_adapter(run)
    if kind == "llamacpp":
        return LlamaCppEngine(ws, run)
    if kind == "vllm":
        return VLLMEngine(ws, run)
    return TransformersEngine(ws, run)


# -- live versions -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveVersion:
    """One row of the live history: ``run_id`` became live as version ``live-v{id}``."""
    id: int
    run_id: int
    action: str
    previous_id: int | None
    actor: str | None
    created_at: str

    @property
    def name(self) -> str:
        return f"live-v{self.id}"


def live_history(ws: Workspace) -> list[LiveVersion]:
    """Every promotion and rollback, newest first."""
    return [LiveVersion(**dict(r)) for r in ws.db.execute("select * from serve_live order by id desc")]


def live_version(ws: Workspace) -> LiveVersion | None:
    """The live version now (None before any run was promoted)."""
    row = ws.db.execute("select * from serve_live order by id desc limit 1").fetchone()
    return LiveVersion(**dict(row)) if row else None


def promote(ws: Workspace, run_id: int | str, *, actor: str | None = None) -> LiveVersion:
    """Make the run live (a server started with --live answers with it from its next request)."""
    run = R.get_run(ws, run_id)
    run_adapter(run)
    with ws.transaction() as db:
        row = db.execute("select id, run_id from serve_live order by id desc limit 1").fetchone()
        if row is not None and row["run_id"] == run.id:
            raise TuneloopError(f"run #{run.id} is live already (live-v{row['id']})")
        db.execute("insert into serve_live (run_id, action, previous_id, actor) values (?, 'promote', ?, ?)",
                   (run.id, row["id"] if row else None, actor))
    return live_version(ws)


def rollback(ws: Workspace, *, actor: str | None = None) -> LiveVersion:
    """Make the run that was live before the live one live again (repeat to go further back)."""
    with ws.transaction() as db:
        current = db.execute("select * from serve_live order by id desc limit 1").fetchone()
        if current is None:
            raise TuneloopError("no run is live yet; `python -m training live RUN` promotes one")
        if current["previous_id"] is None:
            raise TuneloopError(f"run #{current['run_id']} (live-v{current['id']}) was the first live run; there "
                                f"is nothing before it to roll back to")
        back = db.execute("select * from serve_live where id=?", (current["previous_id"],)).fetchone()
        db.execute("insert into serve_live (run_id, action, previous_id, actor) values (?, 'rollback', ?, ?)",
                   (back["run_id"], back["previous_id"], actor))
    return live_version(ws)


# -- the request log -----------------------------------------------------------------------------------

def request_log(ws: Workspace, *, limit: int = 1000) -> list[dict[str, Any]]:
    """The latest requests (oldest first, at most ``limit``), as dicts of ``serve_requests`` columns."""
    rows = ws.db.execute("select * from serve_requests order by created_at desc, rowid desc limit ?", (limit,))
    return [dict(r) for r in rows][::-1]


@dataclass(frozen=True)
class Retention:
    """How much of the request log a server keeps: rows younger than ``days`` and/or the newest ``rows``
    (None: no limit of that kind). Rows that feedback names are kept whatever their age."""
    days: int | None = RETENTION_DAYS
    rows: int | None = None

    def __post_init__(self):
        for name in ("days", "rows"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise TuneloopError(f"request log retention: {name} must be a whole number, 1 or more (or none); "
                                    f"got {value!r}")

    def describe(self) -> str:
        limits = ([f"{self.days} days"] if self.days else []) + ([f"{self.rows} rows"] if self.rows else [])
        return "request log kept " + (" and at most ".join(limits) if limits else "forever")


def prune_request_log(ws: Workspace, retention: Retention) -> int:
    """Delete the request-log rows ``retention`` no longer keeps (not those feedback names); how many went."""
    keep_feedback = "id not in (select request_id from serve_feedback)"
    removed = 0
    with ws.transaction() as db:
        if retention.days:
            removed += db.execute(f"delete from serve_requests where {keep_feedback} and created_at < "
                                  f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)", (f"-{retention.days} days",)).rowcount
        if retention.rows:
            removed += db.execute(f"delete from serve_requests where {keep_feedback} and rowid not in (select rowid"
                                  f" from serve_requests order by created_at desc, rowid desc limit ?)",
                                  (retention.rows,)).rowcount
    return removed


def keep_pruning(ws: Workspace, retention: Retention, *, every_s: float = PRUNE_EVERY_S) -> threading.Event:
    """Prune the request log now and then every ``every_s`` seconds in a daemon thread, until the returned
    event is set."""
    stop = threading.Event()
    prune_request_log(ws, retention)

    def loop():
        own = Workspace.open(ws.root)         # SQLite connections stay in their own thread
        while not stop.wait(every_s):
            prune_request_log(own, retention)

    threading.Thread(target=loop, name="prune-request-log", daemon=True).start()
    return stop


# -- login ---------------------------------------------------------------------------------------------

def api_key_from_env(name: str | None) -> str | None:
    """The API key held in environment variable ``name`` (None when no name is given); an unset or empty
    variable is an error, so a server never starts open by mistake."""
    if not name:
        return None
    key = os.environ.get(name, "")
    if not key.strip():
        raise TuneloopError(f"--api-key-env {name}: the environment variable {name} is not set (or empty); "
                            f"export {name}=<a long random key> in the shell that starts the server")
    return key.strip()


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def check_host(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not is_loopback(host) and not api_key:
        raise TuneloopError(f"--host {host} lets other machines reach the endpoint; give it an API key with "
                            f"--api-key-env NAME (the key in environment variable NAME), or serve on {HOST}")


def _authorized(scope, api_key: str) -> bool:
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), api_key.encode())


def feedback_counts(ws: Workspace) -> dict[str, int]:
    """Thumbs up, thumbs down, corrections and comments received so far."""
    row = ws.db.execute("select coalesce(sum(rating='up'),0) up, coalesce(sum(rating='down'),0) down,"
                        " coalesce(sum(correction is not null),0) corrections,"
                        " coalesce(sum(comment is not null),0) comments from serve_feedback").fetchone()
    return dict(row)


def record_feedback(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """Store a thumbs up/down, comment or correction for a served response; returns the stored feedback."""
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object with response_id and rating")
    response_id = body.get("response_id")
    if not isinstance(response_id, str) or not response_id:
        raise RequestError(400, "'response_id' is required: the id of the chat completion rated", param="response_id")
    rating = body.get("rating")
    if rating not in (None, "up", "down"):
        raise RequestError(400, f"'rating' must be 'up' or 'down'; got {rating!r}", param="rating")
    texts = {}
    for key in ("comment", "correction", "completion"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise RequestError(400, f"'{key}' must be a string", param=key)
        texts[key] = value.strip() if value and value.strip() else None
    if rating is None and not texts["correction"] and not texts["comment"]:
        raise RequestError(400, "give a rating (up or down), a comment or a correction", param="rating")
    messages = parse_messages(body) if body.get("messages") is not None else None
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RequestError(400, "'metadata' must be a JSON object (your own keys)", param="metadata")
    with ws.transaction() as db:
        served = db.execute("select run_id, request_text from serve_requests where id=? and status=200",
                            (response_id,)).fetchone()
        if served is None:
            raise RequestError(404, f"no response '{response_id}' was served here; rate the id a chat completion "
                                    f"returned", param="response_id", kind="not_found_error")
        if texts["correction"] and messages is None and served["request_text"] is None:
            raise RequestError(400, "this server does not log request text (started without --log-text): send the "
                                    "conversation back in 'messages' with the correction", param="messages")
        fid = db.execute("insert into serve_feedback (request_id, run_id, rating, comment, correction, messages,"
                         " completion, metadata) values (?,?,?,?,?,?,?,?)",
                         (response_id, served["run_id"], rating, texts["comment"], texts["correction"],
                          json.dumps(messages, ensure_ascii=False) if messages else None, texts["completion"],
                          json.dumps(metadata, ensure_ascii=False))).lastrowid
    return {"id": f"fb-{fid}", "object": "feedback", "response_id": response_id, "run": served["run_id"],
            "rating": rating}


# -- the endpoint --------------------------------------------------------------------------------------

class Endpoint:
    """What one server answers with: a fixed run, or whatever run is live (looked up on each request), in one
    engine kind; engines load once and stay (at most ``MAX_ENGINES``)."""

    def __init__(self, ws: Workspace, *, run_id: int | None = None, live: bool = False, engine: str = "auto",
                 log_text: bool = False, api_key: str | None = None):
        if (run_id is None) == (not live):
            raise TuneloopError("serve either a run (serve N) or the live run (serve --live), not both or neither")
        self.ws, self.live, self.log_text, self.api_key = ws, live, log_text, api_key
        self.run_id = R.get_run(ws, run_id).id if run_id is not None else None
        self.kind = choose_engine(engine)
        self._engines: OrderedDict[int, Engine] = OrderedDict()
        self._systems: dict[int, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def target(self) -> tuple[int, LiveVersion | None]:
        """The run that answers now, and the live version it is (None for a fixed run)."""
        if not self.live:
            return self.run_id, None
        version = live_version(self.ws)
        if version is None:
            raise RequestError(503, "no run is live yet: `python -m training live RUN` (or Live in the Train tab) "
                                    "promotes one", kind="server_error")
        return version.run_id, version

    def engine(self, run_id: int) -> Engine:
        with self._lock:
            engine = self._engines.get(run_id)
            if engine is None:
                engine = self._engines[run_id] = open_engine(self.ws, R.get_run(self.ws, run_id), self.kind)
                while len(self._engines) > MAX_ENGINES:
                    self._engines.popitem(last=False)
            self._engines.move_to_end(run_id)
            return engine

    def system_prompt(self, run_id: int) -> tuple[str, str]:
        """(the system prompt the run trained with, "" for none; where it came from): the rule the evaluation
        path and the exported Modelfile use (``training.export.run_system_prompt``), worked out once per run."""
        with self._lock:
            known = self._systems.get(run_id)
        if known is None:
            from training.export import run_system_prompt
            from training.models import load_tokenizer, resolve_base_model
            run = R.get_run(self.ws, run_id)
            known = run_system_prompt(self.ws, run, load_tokenizer(resolve_base_model(run.base_model, self.ws)))
            with self._lock:
                self._systems[run_id] = known
        return known

    def with_system(self, run_id: int, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """``messages`` with the run's trained system prompt first when they bring no system message of their
        own (a request's own system message wins)."""
        if any(m["role"] == "system" for m in messages):
            return messages
        system = self.system_prompt(run_id)[0]
        return [{"role": "system", "content": system}, *messages] if system else messages

    def model_name(self, run_id: int, version: LiveVersion | None) -> str:
        return f"run-{run_id}" + (f"@{version.name}" if version else "")


class _Exchange:
    """One chat request on its way: timing, the answer so far, and its row in the log when it ends."""

    def __init__(self, endpoint: Endpoint, *, stream: bool):
        self.endpoint, self.stream = endpoint, stream
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.started = time.perf_counter()
        self.first_token_ms: float | None = None
        self.run_id: int | None = None
        self.version: LiveVersion | None = None
        self.messages: list[dict[str, str]] | None = None
        self.text = ""
        self.usage = Usage()

    def pieces(self, engine: Engine, params: ChatParams) -> Iterator[str]:
        """The answer's text as it grows, cut before a stop string (the generation stops there)."""
        held = max((len(s) for s in params.stop), default=1) - 1     # a stop string may arrive in pieces
        pending = ""
        source = engine.stream(self.messages, params, self.usage)
        try:
            for piece in source:
                if self.first_token_ms is None:
                    self.first_token_ms = round((time.perf_counter() - self.started) * 1000, 1)
                pending += piece
                cut = min((i for i in (pending.find(s) for s in params.stop) if i >= 0), default=-1)
                if cut >= 0:
                    self.usage.finish_reason = "stop"
                    pending = pending[:cut]
                    break
                ready, pending = (pending[:-held], pending[-held:]) if held else (pending, "")
                if ready:
                    self.text += ready
                    yield ready
            if pending:
                self.text += pending
                yield pending
        finally:
            source.close()

    def log(self, status: int, error: str | None = None) -> None:
        endpoint = self.endpoint
        texts = (json.dumps(self.messages, ensure_ascii=False) if self.messages else None, self.text or None) \
            if endpoint.log_text else (None, None)
        with endpoint.ws.transaction() as db:
            db.execute("insert into serve_requests (id, run_id, live_id, engine, stream, latency_ms, first_token_ms,"
                       " prompt_tokens, completion_tokens, finish_reason, status, error, request_text, response_text)"
                       " values (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (self.id, self.run_id, self.version.id if self.version else None, endpoint.kind,
                        int(self.stream), round((time.perf_counter() - self.started) * 1000, 1), self.first_token_ms,
                        self.usage.prompt_tokens, self.usage.completion_tokens,
                        self.usage.finish_reason if status == 200 else None, status, error, *texts))

    @property
    def model(self) -> str:
        return self.endpoint.model_name(self.run_id, self.version) if self.run_id else ""

    def headers(self) -> dict[str, str]:
        if self.run_id is None:
            return {}
        return {"X-Tuneloop-Run": str(self.run_id), "X-Tuneloop-Version": self.version.name if self.version
                else f"run-{self.run_id}", "X-Request-Id": self.id}

    def chunk(self, delta: dict[str, str], finish: str | None = None) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if finish:
            body["usage"] = self.usage_body()
        return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"

    def usage_body(self) -> dict[str, int]:
        return {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.prompt_tokens + self.usage.completion_tokens}


def make_app(endpoint: Endpoint):
    """The starlette app answering for ``endpoint``."""
    from starlette.applications import Starlette
    from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    def refused(exc: RequestError, exchange: _Exchange | None = None) -> JSONResponse:
        headers = exchange.headers() if exchange else {}
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    async def body_of(request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise RequestError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        return body

    async def models(request):
        try:
            run_id, version = endpoint.target()
        except RequestError as exc:
            return refused(exc)
        run = R.get_run(endpoint.ws, run_id)
        try:
            system, origin = await run_in_threadpool(endpoint.system_prompt, run_id)
        except TuneloopError as exc:
            return refused(RequestError(500, str(exc), kind="server_error"))
        return JSONResponse({"object": "list", "data": [{
            "id": endpoint.model_name(run_id, version), "object": "model", "owned_by": "tuneloop",
            "created": int(time.time()), "run": run_id, "run_name": run.name, "base_model": run.base_model,
            "version": version.name if version else None, "engine": endpoint.kind,
            "system_prompt": system, "system_prompt_origin": origin + "; a request without a system message gets "
            "it first, a request's own system message wins"}]})

    async def chat(request):
        exchange = None
        try:
            body = await body_of(request)
            exchange = _Exchange(endpoint, stream=bool(body.get("stream")))
            exchange.messages = parse_messages(body)
            params = ChatParams.from_body(body)
            exchange.run_id, exchange.version = endpoint.target()
            engine = await run_in_threadpool(endpoint.engine, exchange.run_id)
            exchange.messages = await run_in_threadpool(endpoint.with_system, exchange.run_id, exchange.messages)
        except (RequestError, TuneloopError) as exc:
            error = exc if isinstance(exc, RequestError) else RequestError(500, str(exc), kind="server_error")
            exchange = exchange or _Exchange(endpoint, stream=False)
            await run_in_threadpool(exchange.log, error.status, error.message)
            return refused(error, exchange)
        if exchange.stream:
            return StreamingResponse(iterate_in_threadpool(_sse(exchange, engine, params)),
                                     media_type="text/event-stream", headers=exchange.headers())
        try:
            await run_in_threadpool(lambda: list(exchange.pieces(engine, params)))
        except Exception as exc:    # the model failed: the client gets a 500 with the reason, the log a row
            await run_in_threadpool(exchange.log, 500, _reason(exc))
            return refused(RequestError(500, _reason(exc), kind="server_error"), exchange)
        await run_in_threadpool(exchange.log, 200)
        return JSONResponse({"id": exchange.id, "object": "chat.completion", "created": exchange.created,
                             "model": exchange.model, "system_fingerprint": endpoint.kind,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": exchange.text},
                                          "finish_reason": exchange.usage.finish_reason}],
                             "usage": exchange.usage_body()}, headers=exchange.headers())

    async def feedback(request):
        try:
            body = await body_of(request)
            stored = await run_in_threadpool(record_feedback, endpoint.ws, body)
        except RequestError as exc:
            return refused(exc)
        return JSONResponse(stored)

    async def not_found(request, exc):
        return refused(RequestError(404, f"there is no {request.method} {request.url.path} here; this endpoint "
                                         f"answers GET /v1/models, POST /v1/chat/completions and POST /v1/feedback",
                                    kind="not_found_error"))

    app = Starlette(routes=[Route("/v1/models", models, methods=["GET"]),
                            Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/v1/feedback", feedback, methods=["POST"])],
                    exception_handlers={404: not_found, 405: not_found})
    if not endpoint.api_key:
        return app
    locked = RequestError(401, "this endpoint needs an API key: send the header 'Authorization: Bearer <key>' "
                               "(the OpenAI client's api_key) with the key the server was started with",
                          code="invalid_api_key")

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and not _authorized(scope, endpoint.api_key):
            response = JSONResponse(locked.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        return await app(scope, receive, send)

    return guarded


def _sse(exchange: _Exchange, engine: Engine, params: ChatParams) -> Iterator[str]:
    """The streamed answer as server-sent events; the request is logged when the stream ends, however it ends."""
    status, error = 200, None
    try:
        yield exchange.chunk({"role": "assistant", "content": ""})
        for piece in exchange.pieces(engine, params):
            yield exchange.chunk({"content": piece})
        yield exchange.chunk({}, exchange.usage.finish_reason)
    except Exception as exc:        # the model failed mid-answer: the stream ends with an error event
        status, error = 500, _reason(exc)
        yield "data: " + json.dumps(RequestError(500, error, kind="server_error").body()) + "\n\n"
    except BaseException:
        status, error = 499, "the client went away before the answer was complete"
        raise
    finally:
        exchange.log(status, error)
    yield "data: [DONE]\n\n"


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, TuneloopError) else f"the model could not answer: {type(exc).__name__}: {exc}"


# -- running a server ----------------------------------------------------------------------------------

def serve(ws: Workspace, *, run_id: int | str | None = None, live: bool = False, port: int = DEFAULT_PORT,
          engine: str = "auto", log_text: bool = False, host: str = HOST, api_key_env: str | None = None,
          retention: Retention = Retention(), on_ready=None) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM): load the model, register this process, answer on ``host``
    (loopback unless an API key is named by ``api_key_env``), prune the request log on start and hourly."""
    import uvicorn
    api_key = api_key_from_env(api_key_env)
    check_host(host, api_key)
    endpoint = Endpoint(ws, run_id=run_id, live=live, engine=engine, log_text=log_text, api_key=api_key)
    _check_port(port, host)
    if not live or live_version(ws) is not None:
        endpoint.engine(endpoint.target()[0])         # load before listening: answering means ready
    pruning = keep_pruning(ws, retention)
    process_id = _register_process(ws, endpoint, port, host=host, api_key_env=api_key_env, retention=retention)
    server = uvicorn.Server(uvicorn.Config(make_app(endpoint), host=host, port=port, log_level="warning",
                                           access_log=False))
    if on_ready is not None:
        on_ready(f"http://{host}:{port}/v1")
    try:
        server.run()
    finally:
        pruning.set()
        with ws.transaction() as db:
            db.execute("update serve_processes set stopped_at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now') where id=?",
                       (process_id,))


def _check_port(port: int, host: str = HOST) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            raise TuneloopError(f"port {port} on {host} is in use (another server?) or {host} is not an address of "
                                f"this machine; choose another with --port/--host, or stop the other one") from None


def _register_process(ws: Workspace, endpoint: Endpoint, port: int, *, host: str, api_key_env: str | None,
                      retention: Retention) -> int:
    pid = os.getpid()
    with ws.transaction() as db:
        return db.execute("insert into serve_processes (run_id, live, host, port, engine, log_text, pid, pid_started,"
                          " log_path, api_key_env, keep_days, keep_rows) values (?,?,?,?,?,?,?,?,?,?,?,?)",
                          (endpoint.run_id, int(endpoint.live), host, port, endpoint.kind, int(endpoint.log_text),
                           pid, R._process_start_time(pid), os.environ.get("TUNELOOP_SERVE_LOG"), api_key_env,
                           retention.days, retention.rows)).lastrowid


@dataclass(frozen=True)
class ServerProcess:
    """An endpoint process as registered: what it serves, where, and whether it still runs."""
    id: int
    run_id: int | None
    live: bool
    port: int
    engine: str
    log_text: bool
    pid: int
    started_at: str
    running: bool
    log_path: str | None
    host: str = HOST
    api_key_env: str | None = None
    retention: Retention = Retention()

    @property
    def url(self) -> str:
        host = HOST if self.host in WILDCARD_HOSTS else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/v1"

    def describe(self) -> str:
        what = "the live run" if self.live else f"run #{self.run_id}"
        text = ", request text logged" if self.log_text else ""
        login = f", API key from ${self.api_key_env}" if self.api_key_env else ", no API key"
        where = f" (listening on {self.host})" if self.host in WILDCARD_HOSTS else ""
        return (f"{what} at {self.url}{where} ({self.engine}{text}{login}; {self.retention.describe()}; "
                f"pid {self.pid}, since {self.started_at})")


def server_processes(ws: Workspace, *, running_only: bool = True) -> list[ServerProcess]:
    """The endpoint processes this workspace knows, newest first; one whose process is gone is marked stopped."""
    out = []
    for row in ws.db.execute("select * from serve_processes order by id desc").fetchall():
        alive = row["stopped_at"] is None and _alive(row["pid"], row["pid_started"])
        if row["stopped_at"] is None and not alive:
            with ws.transaction() as db:
                db.execute("update serve_processes set stopped_at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now') where id=?",
                           (row["id"],))
        if alive or not running_only:
            out.append(ServerProcess(id=row["id"], run_id=row["run_id"], live=bool(row["live"]), port=row["port"],
                                     engine=row["engine"], log_text=bool(row["log_text"]), pid=row["pid"],
                                     started_at=row["started_at"], running=alive, log_path=row["log_path"],
                                     host=row["host"], api_key_env=row["api_key_env"],
                                     retention=Retention(row["keep_days"], row["keep_rows"])))
    return out


def _alive(pid: int, started: float | None) -> bool:
    held = _children.get(pid)
    if held is not None and held.poll() is not None:
        return False
    now = R._process_start_time(pid)
    return now is not None and (started is None or abs(now - started) < 1.0)


_children: dict[int, subprocess.Popen] = {}


def start_server(ws: Workspace, *, run_id: int | str | None = None, live: bool = False, port: int = DEFAULT_PORT,
                 engine: str = "auto", log_text: bool = False, host: str = HOST, api_key_env: str | None = None,
                 retention: Retention = Retention(), threads: int | None = None,
                 timeout: float = READY_TIMEOUT_S) -> ServerProcess:
    """Start ``python -m training serve`` in the background and wait until it answers; returns its process.
    The key named by ``api_key_env`` reaches it through the environment, never the command line.

    The process outlives the caller (a page reload, an app restart); ``stop_server`` ends it."""
    kind = choose_engine(engine)
    check_host(host, api_key_from_env(api_key_env))
    if run_id is not None:
        run_adapter(R.get_run(ws, run_id))
    _check_port(port, host)
    log = ws.path("serving", f"serve-{port}-{int(time.time())}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "training", "serve", *([str(R.parse_run_id(run_id))] if run_id is not None else []),
           *(["--live"] if live else []), "--port", str(port), "--engine", kind, "--workspace", str(ws.root),
           *(["--log-text"] if log_text else []), "--host", host,
           *(["--api-key-env", api_key_env] if api_key_env else []), "--keep-days", str(retention.days or 0),
           "--keep-rows", str(retention.rows or 0), *(["--threads", str(threads)] if threads else [])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNELOOP_SERVE_LOG": str(log)}
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=R.ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    _children[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
            raise TuneloopError(f"the server stopped before it answered (exit {proc.returncode}):\n{tail}")
        mine = [p for p in server_processes(ws) if p.pid == proc.pid]
        if mine and _answers(mine[0]):
            return mine[0]
        time.sleep(0.3)
    stop_pid(proc.pid)
    raise TuneloopError(f"the server did not answer within {timeout:.0f} s; its log is {log}")


def _answers(process: ServerProcess) -> bool:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"{process.url}/models", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True          # it answers (503: no live run yet; 401: it needs its API key)
    except OSError:
        return False


def stop_server(ws: Workspace, process_id: int) -> ServerProcess:
    """Stop an endpoint process (SIGTERM: it finishes the answers in flight, then exits)."""
    found = [p for p in server_processes(ws) if p.id == int(process_id)]
    if not found:
        raise TuneloopError(f"server #{process_id} is not running (it stopped, or its process is gone)")
    stop_pid(found[0].pid)
    with ws.transaction() as db:
        db.execute("update serve_processes set stopped_at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now') where id=?",
                   (found[0].id,))
    return found[0]


def stop_pid(pid: int, *, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    held = _children.get(pid)
    while time.monotonic() < deadline:
        if (held.poll() is not None) if held is not None else R._process_start_time(pid) is None:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
