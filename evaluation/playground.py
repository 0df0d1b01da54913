"""The playground: the base model and a fine-tuned run answer the same conversation side by side, streamed.

Both sides come from the process's one warm copy of the base model (``training.inference``, shared with
rating generation and the automatic metrics), answered together by the fastest engine that gives the same
answers: llama.cpp on the base's GGUF file with each side's adapter as a GGUF LoRA (one context per side,
taking turns token by token), else transformers in ONE ``generate`` call, a batch of two rows in which peft's
``adapter_names`` runs one row with the adapter off and the other with it on (or with a second run's
adapter). Both answers therefore stream at the same time, token by token, under literally the same
decoding settings, and memory holds one model however many runs are compared; each update names the
engine that answered. Requests for one model
take turns, first come first served, and a waiting request learns its place in the line, so two people
cannot run the machine out of memory; a ``threading.Event`` stops a long answer. A good answer, after
edits, becomes a new SFT record with provenance in a new dataset version made by the step "playground".

Example::

    matchup = matchup_for(ws, "3")                      # base vs run #3; against="5" compares two runs
    for update in stream_pair(ws, matchup, [{"role": "user", "content": "Where is my order?"}],
                              DecodingSettings(max_new_tokens=64)):
        print(update.message, update.texts)
    version, record = send_to_dataset(ws, conversation, answer, side=matchup.right, author="ana")

CLI::

    python -m evaluation.playground ask --run RUN [--against RUN2] "Where is my order?" [--max-new-tokens 64]
    python -m evaluation.playground send --run RUN --side right --prompt "..." --answer "..." [--author NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from core.access import AccessDenied
from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import ROLES, Record, new_record_id
from curation.data.versions import Version, create_version, get_version, load_records, require_current
from evaluation.generate import resolve_adapter
from training.inference import (ENGINE_ENV, ENGINES, THREADS_ENV, BasePool, DecodingSettings, RowStats, WarmBase,
                                default_pool)

SIDES = ("left", "right")
Conversation = list[dict[str, str]]


# -- what is compared -------------------------------------------------------------------------

@dataclass(frozen=True)
class Side:
    """One column: the base model alone (``adapter`` None), or the base model with a run's adapter on."""
    label: str
    base_model: str
    adapter: str | None = None
    run_id: str | None = None

    @property
    def kind(self) -> str:
        return "base" if self.adapter is None else "fine-tuned"


@dataclass(frozen=True)
class Matchup:
    """The two columns, left and right; both build on the same base model."""
    left: Side
    right: Side

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.left, self.right


def matchup_for(ws: Workspace, run: str | Path, *, against: str | Path | None = None,
                folders: bool = True) -> Matchup:
    """Base model (left) vs ``run`` (right); with ``against``, that run's adapter replaces the base on the left.

    ``run`` and ``against`` are run ids from the registry, run folders holding ``adapter/``, or adapter folders.
    ``folders=False`` (a viewer's or a rater's request) takes only the registry's run ids: anything else is
    refused before a path on the server is looked at.
    """
    if not str(run or "").strip():
        raise TuneloopError("pick a fine-tuned run, or give the folder of an adapter, to compare with its base model")
    side = _run_side if folders else _workspace_run_side
    right = side(ws, str(run).strip())
    if against is None or str(against).strip().lower() in ("", "base"):
        return Matchup(Side(f"Base model · {base_model_name(right.base_model)}", right.base_model), right)
    left = side(ws, str(against).strip())
    if Path(left.adapter).resolve() == Path(right.adapter).resolve():
        raise TuneloopError("both sides are the same run; pick a different run to compare against, or the base model")
    return Matchup(left, right)


def _run_side(ws: Workspace, run: str) -> Side:
    models = resolve_adapter(ws, run)
    if models.run_id is not None:
        from training import registry
        label = f"Fine-tuned · run {registry.get_run(ws, models.run_id).label}"
    else:
        folder = Path(models.adapter)
        label = f"Fine-tuned · {folder.parent.name if folder.name == 'adapter' else folder.name}"
    return Side(label, models.base_model, models.adapter, models.run_id)


def _workspace_run_side(ws: Workspace, run: str) -> Side:
    """A run of the registry by its id, never a folder: what a viewer may choose."""
    from training import registry
    try:
        run_id = registry.parse_run_id(run)
    except TuneloopError:
        raise AccessDenied(f"'{run}' is not one of this workspace's runs: choose a run from the list (only an admin "
                           f"can load an adapter from a folder)") from None
    found = registry.get_run(ws, run_id)
    if not (found.adapter_dir / "adapter_config.json").is_file():
        raise TuneloopError(f"run {found.label} has no adapter yet (status: {found.status}); try it once it has finished")
    return Side(f"Fine-tuned · run {found.label}", found.base_model, str(found.adapter_dir), str(found.id))


def base_model_name(base_model: str) -> str:
    """A short name for a base model without loading or converting it."""
    from training.models import DEFAULT_GGUF_FILE, DEFAULT_MODEL
    if str(base_model).strip().lower() == DEFAULT_MODEL:
        return DEFAULT_GGUF_FILE.split(".")[0]
    return Path(str(base_model)).name or str(base_model)


def playground_runs(ws: Workspace) -> list[tuple[str, str]]:
    """(label, run id) of the registry's runs that have an adapter to try, newest first."""
    try:
        from training import registry
    except ImportError:
        return []
    runs = [r for r in registry.list_runs(ws) if (Path(r.output_dir) / "adapter" / "adapter_config.json").is_file()]
    return [(f"{r.label} · {r.status} · {base_model_name(r.config.base_model)}", str(r.id))
            for r in sorted(runs, key=lambda r: r.id, reverse=True)]


def split_examples(ws: Workspace, version: int | str | None = None, *, split: str = "test") -> list[Record]:
    """Records of a split (the test split of the current version by default) to start a conversation from."""
    v = get_version(ws, version) if version is not None else require_current(ws)
    records = [r for r in load_records(ws, v.id) if r.meta.get("split") == split
               and any(m["role"] == "user" for m in r.messages)]
    if not records:
        raise TuneloopError(f"{v.name} has no '{split}' records; build a split first (Splits tab), or type a question")
    return records


def example_conversation(record: Record) -> tuple[str, Conversation, str, str]:
    """(system prompt, earlier turns, last question, reference answer) of an example record."""
    last_user = max(i for i, m in enumerate(record.messages) if m["role"] == "user")
    system = "\n".join(m["content"] for m in record.messages[:last_user] if m["role"] == "system")
    earlier = [m for m in record.messages[:last_user] if m["role"] != "system"]
    reference = next((m["content"] for m in record.messages[last_user + 1:] if m["role"] == "assistant"), "")
    return system, earlier, record.messages[last_user]["content"], reference


def example_origin(record: Record) -> dict[str, Any]:
    """What an answer to an example keeps from it: its id, label and split (a test prompt stays in test)."""
    origin: dict[str, Any] = {"prompt_id": record.id}
    for key in ("label", "split"):
        if record.meta.get(key) is not None:
            origin[key] = record.meta[key]
    return origin


def with_system_prompt(conversation: Conversation, system_prompt: str = "") -> Conversation:
    """The conversation with ``system_prompt`` as its only system turn (unchanged when the prompt is blank)."""
    if not (system_prompt or "").strip():
        return list(conversation)
    return [{"role": "system", "content": system_prompt.strip()}] + [m for m in conversation if m["role"] != "system"]


def check_conversation(conversation: Conversation) -> Conversation:
    """A list of {role, content} ending with a question; raises TuneloopError saying what is wrong."""
    if not conversation:
        raise TuneloopError("type a question first")
    for n, m in enumerate(conversation, 1):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise TuneloopError(f"turn {n} must be {{role, content}} with role system, user or assistant")
    if conversation[-1]["role"] != "user" or not conversation[-1]["content"].strip():
        raise TuneloopError("the conversation must end with a question (a user turn) for the models to answer")
    return conversation


# -- taking turns -------------------------------------------------------------------------------

class TurnQueue:
    """First come, first served: one holder at a time; everyone else can ask how many are ahead of them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._line: list[object] = []

    def join(self) -> object:
        ticket = object()
        with self._cond:
            self._line.append(ticket)
        return ticket

    def ahead(self, ticket: object) -> int:
        with self._cond:
            return self._line.index(ticket)

    def wait(self, ticket: object, timeout: float) -> int:
        """Wait until it is ``ticket``'s turn or ``timeout`` passes; returns how many are still ahead."""
        with self._cond:
            self._cond.wait_for(lambda: self._line.index(ticket) == 0, timeout)
            return self._line.index(ticket)

    def leave(self, ticket: object) -> None:
        with self._cond:
            if ticket in self._line:
                self._line.remove(ticket)
            self._cond.notify_all()


_turns: "weakref.WeakKeyDictionary[WarmBase, TurnQueue]" = weakref.WeakKeyDictionary()
_turns_lock = threading.Lock()


def turns_for(model: WarmBase) -> TurnQueue:
    """The playground's line for one warm model (its answers take turns on it)."""
    with _turns_lock:
        return _turns.setdefault(model, TurnQueue())


# -- streaming ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairUpdate:
    """What the two columns show now. ``status``: waiting | loading | streaming | done | stopped."""
    texts: tuple[str, str]
    status: str
    message: str
    ahead: int = 0
    stats: tuple[RowStats, RowStats] = field(default_factory=lambda: (RowStats(), RowStats()))
    engine: str = ""                # the engine that answered (llama.cpp | transformers), once it answers

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped")


def stream_pair(ws: Workspace | None, matchup: Matchup, conversation: Conversation | Sequence[Conversation],
                settings: DecodingSettings | None = None, *, system_prompt: str = "",
                cancel: threading.Event | None = None, pool: BasePool | None = None,
                poll_s: float = 0.5, engine: str | None = None, threads: int | None = None) -> Iterator[PairUpdate]:
    """Both sides' answers as they grow: waiting in line, loading, then one update per new piece of text.

    ``conversation`` is one conversation for both sides, or a (left, right) pair when each side continues
    its own earlier answers. Setting ``cancel`` stops waiting or generating; the last update says "stopped".
    Closing the iterator early stops the generation too, and hands the model to the next in line.
    ``engine`` (auto | llama.cpp | transformers; None: $TUNELOOP_ENGINE) picks the engine and ``threads`` the
    CPU threads llama.cpp answers with (None: $TUNELOOP_THREADS, else its own choice).
    """
    settings = (settings or DecodingSettings()).validate()
    if threads is not None and threads < 1:
        raise TuneloopError(f"threads {threads}: give a whole number of CPU threads, 1 or more (or none: the "
                            f"engine's own choice)")
    conversations = _per_side(conversation, system_prompt)
    cancel = cancel or threading.Event()
    with (pool or default_pool()).hold(ws, matchup.left.base_model, engine=engine) as model:
        line = turns_for(model)
        ticket = line.join()
        try:
            ahead = line.ahead(ticket)
            while ahead:
                if cancel.is_set():
                    yield PairUpdate(("", ""), "stopped", "Stopped before it started.")
                    return
                yield PairUpdate(("", ""), "waiting", _waiting_message(ahead), ahead=ahead)
                ahead = line.wait(ticket, poll_s)
            if cancel.is_set():
                yield PairUpdate(("", ""), "stopped", "Stopped before it started.")
                return
            _check_same_base(ws, matchup, model)
            conversations = _as_trained(model, matchup, conversations)
            adapters = [None if side.adapter is None else model.add_adapter(side.adapter) for side in matchup.sides]
            if model.needs_preparing(adapters):
                yield PairUpdate(("", ""), "loading", _loading_message(model, adapters))
            yield from _streamed_pair(model, adapters, conversations, settings, cancel, threads)
        finally:
            line.leave(ticket)


def _per_side(conversation, system_prompt: str) -> tuple[Conversation, Conversation]:
    if conversation and isinstance(conversation, (list, tuple)) and all(isinstance(c, list) for c in conversation):
        if len(conversation) != 2:
            raise TuneloopError("give one conversation for both sides, or exactly two: (left, right)")
        pair = conversation
    else:
        pair = (conversation, conversation)
    return tuple(check_conversation(with_system_prompt(list(c), system_prompt)) for c in pair)  # type: ignore


def _as_trained(model: WarmBase, matchup: Matchup, conversations) -> tuple[Conversation, Conversation]:
    """Each run's side gets its conversation under the run's system-prompt choice, as it trained (a custom prompt
    replaces the typed one, "none" removes it); the base's side is sent as typed."""
    from training.data import adapter_run_config, run_conversations
    return tuple(c if side.adapter is None else
                 run_conversations([c], adapter_run_config(side.adapter), model.chat_tokenizer())[0]
                 for side, c in zip(matchup.sides, conversations))  # type: ignore[return-value]


def _waiting_message(ahead: int) -> str:
    who = "1 request is" if ahead == 1 else f"{ahead} requests are"
    return f"Waiting: {who} ahead of you (one answer pair at a time keeps the machine from running out of memory)."


def _loading_message(model: WarmBase, adapters: list[str | None]) -> str:
    engine = model.engine_for(adapters)
    if engine == "llama.cpp" and model.loaded:
        return "Preparing the run for llama.cpp (its adapter is converted once, then it stays warm)…"
    return f"Loading {model.name} with {engine} (first use; it then stays warm)…"


def _check_same_base(ws: Workspace | None, matchup: Matchup, model: WarmBase) -> None:
    if matchup.left.base_model == matchup.right.base_model:
        return
    from training.models import resolve_base_model
    for side in matchup.sides:
        if resolve_base_model(side.base_model, ws).path != model.resolved.path:
            raise TuneloopError(f"'{matchup.left.label}' and '{matchup.right.label}' were trained on different base "
                                f"models; compare each of them with its base model instead")


def _streamed_pair(model: WarmBase, adapters: list[str | None], conversations, settings: DecodingSettings,
                   cancel: threading.Event, threads: int | None) -> Iterator[PairUpdate]:
    shown = ["", ""]
    stats = (RowStats(), RowStats())
    engine = model.engine_for(adapters)
    for event in model.stream(conversations, adapters=adapters, settings=settings, cancel=cancel,
                              threads=threads):
        shown[event.row] += event.text
        stats, engine = event.stats, event.engine
        if event.text:
            yield PairUpdate((shown[0], shown[1]), "streaming", "Answering…", stats=stats, engine=engine)
    if cancel.is_set():
        yield PairUpdate((shown[0], shown[1]), "stopped", "Stopped; the answers so far are shown.", stats=stats,
                         engine=engine)
    else:
        yield PairUpdate((shown[0], shown[1]), "done", "Done.", stats=stats, engine=engine)


def answer_pair(ws: Workspace | None, matchup: Matchup, conversation, settings: DecodingSettings | None = None,
                **kwargs) -> PairUpdate:
    """The last update of ``stream_pair``: both full answers and their figures."""
    last = None
    for last in stream_pair(ws, matchup, conversation, settings, **kwargs):
        pass
    return last


# -- sending an answer to the dataset -------------------------------------------------------------

def send_to_dataset(ws: Workspace, conversation: Conversation, answer: str, *, side: Side, author: str,
                    original_answer: str | None = None, origin: dict[str, Any] | None = None,
                    system_prompt: str = "") -> tuple[Version, Record]:
    """Add ``conversation`` + ``answer`` as a new SFT record to a new version of the current dataset.

    The record's meta says where it came from: source "playground", the run and model side that wrote the
    answer, whether it was edited, who sent it and when; ``origin`` (from ``example_origin``) keeps the
    example's id, label and split, so an answer to a test prompt never lands in train.
    """
    text = (answer or "").strip()
    if not text:
        raise TuneloopError("the answer is empty; write or keep the answer the model should give")
    prompt = check_conversation(with_system_prompt([m for m in conversation], system_prompt))
    messages = [{"role": m["role"], "content": m["content"]} for m in prompt] + [{"role": "assistant", "content": text}]
    meta: dict[str, Any] = {
        "source": "playground", "model": side.kind, "run": side.run_id or side.adapter,
        "base_model": side.base_model, "author": author,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "edited": original_answer is not None and text != (original_answer or "").strip(),
        **(origin or {}),
    }
    record = Record(id=new_record_id(messages, salt="playground"), messages=messages, meta=meta)
    current = require_current(ws)
    existing = load_records(ws, current.id)
    if any(r.id == record.id for r in existing):
        raise TuneloopError(f"this answer to this conversation is already in {current.name} (record {record.id})")
    version = create_version(ws, existing + [record], parent=current.id, step="playground",
                             params={"record": record.id, "run": meta["run"], "model": side.kind},
                             counts={"added": 1}, note=f"answer from the playground ({side.label}), sent by {author}",
                             created_by=author)
    return version, record


# -- CLI -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.playground",
                                description="Ask the base model and a fine-tuned run the same question, side by side.")
    sub = p.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="stream both answers to a question")
    send = sub.add_parser("send", help="add an answer to the current dataset as a new version")
    for c in (ask, send):
        c.add_argument("--workspace", help="workspace folder (default: $TUNELOOP_WORKSPACE or ./workspace)")
        c.add_argument("--run", required=True, help="run id, run folder, or adapter folder (the right side)")
        c.add_argument("--against", help="a second run for the left side instead of the base model")
        c.add_argument("--system", default="", help="system prompt for both sides")
    ask.add_argument("question", help="the question (a conversation as JSON: [{role, content}, ...] also works)")
    defaults = DecodingSettings()
    ask.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    ask.add_argument("--temperature", type=float, default=defaults.knob_temperature,
                     help="0: greedy, the same answer every time (the default)")
    ask.add_argument("--top-p", type=float, default=defaults.top_p)
    ask.add_argument("--seed", type=int, default=defaults.seed)
    ask.add_argument("--json", action="store_true", help="print both answers and their figures as JSON")
    ask.add_argument("--engine", choices=ENGINES, default=None,
                     help=f"auto: llama.cpp where it gives the same answers, else transformers "
                          f"(default: ${ENGINE_ENV}, else auto)")
    ask.add_argument("--threads", type=int, default=None, metavar="N",
                     help=f"CPU threads for answering (default: ${THREADS_ENV}, else each engine's own choice)")
    send.add_argument("--prompt", required=True, help="the question (or a conversation as JSON)")
    send.add_argument("--answer", required=True, help="the answer to add (edited as you like)")
    send.add_argument("--side", choices=SIDES, default="right", help="which side wrote the answer (default right)")
    send.add_argument("--author", default="local")
    args = p.parse_args(argv)
    try:
        ws = Workspace.open(args.workspace)
        matchup = matchup_for(ws, args.run, against=args.against)
        if args.command == "send":
            side = matchup.left if args.side == "left" else matchup.right
            version, record = send_to_dataset(ws, _cli_conversation(args.prompt), args.answer, side=side,
                                              author=args.author, system_prompt=args.system)
            print(f"added record {record.id} as {version.name}")
            return 0
        _engine_flags(args.engine, args.threads)
        settings = DecodingSettings.from_knobs(temperature=args.temperature, top_p=args.top_p,
                                               max_new_tokens=args.max_new_tokens, seed=args.seed)
        last = _cli_stream(ws, matchup, _cli_conversation(args.question), settings, args.system, quiet=args.json)
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"status": last.status, "engine": last.engine, "sides": [
            {"label": s.label, "run": s.run_id or s.adapter, "answer": t.strip(), "tokens": st.tokens,
             "first_token_s": st.first_token_s, "tokens_per_s": st.tokens_per_s}
            for s, t, st in zip(matchup.sides, last.texts, last.stats)]}, ensure_ascii=False, indent=2))
    return 0


def _engine_flags(engine: str | None, threads: int | None) -> None:
    """``--engine`` and ``--threads`` for this process's answers: they stand in for $TUNELOOP_ENGINE and
    $TUNELOOP_THREADS, which the shared inference pool reads."""
    if threads is not None and threads < 1:
        raise TuneloopError(f"--threads {threads}: give a whole number of CPU threads, 1 or more")
    if engine:
        os.environ[ENGINE_ENV] = engine
    if threads:
        os.environ[THREADS_ENV] = str(threads)


def _cli_conversation(text: str) -> Conversation:
    if text.strip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise TuneloopError(f"the conversation is not valid JSON: {exc}") from exc
    return [{"role": "user", "content": text}]


def _cli_stream(ws, matchup: Matchup, conversation, settings, system: str, *, quiet: bool) -> PairUpdate:
    """Streams the left answer to the terminal as it comes; the right one is printed when both are done."""
    last, printed, status = None, 0, ""
    if not quiet:
        print(f"── {matchup.left.label}", flush=True)
    for last in stream_pair(ws, matchup, conversation, settings, system_prompt=system):
        if quiet:
            continue
        if last.status in ("waiting", "loading") and last.message != status:
            print(f"   ({last.message})", file=sys.stderr, flush=True)
            status = last.message
        print(last.texts[0][printed:], end="", flush=True)
        printed = len(last.texts[0])
    if not quiet:
        print(f"\n   [{last.stats[0].describe()}]\n── {matchup.right.label}\n{last.texts[1].strip()}\n"
              f"   [{last.stats[1].describe()}]\n   (answered by {last.engine})"
              + ("\n(stopped)" if last.status == "stopped" else ""))
    return last


if __name__ == "__main__":
    sys.exit(main())
