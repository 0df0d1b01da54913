"""Small pieces the curation tabs share: version pickers, record rendering, error display."""
from __future__ import annotations

import functools
import html

from core.errors import TuneloopError
from curation.data import versions as V
from curation.data.records import Record


def user_errors(fn):
    """A handler decorator: TuneloopError becomes a message in the page instead of a stack trace."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TuneloopError as exc:
            raise gr.Error(str(exc)) from None
    return wrapper


def version_choices(ws) -> list[tuple[str, str]]:
    """(label, value) pairs for a version dropdown, newest first, the current one marked."""
    current = V.current_version(ws)
    out = []
    for v in reversed(V.list_versions(ws)):
        mark = " (current)" if current and v.id == current.id else ""
        out.append((f"{v.name}{mark} · {v.step} · {v.num_records} records", v.name))
    return out


def current_name(ws) -> str | None:
    v = V.current_version(ws)
    return v.name if v else None


def error_markdown(exc: Exception) -> str:
    """A TuneloopError as a readable block; anything else as a short, honest sentence."""
    if isinstance(exc, TuneloopError):
        lines = str(exc).splitlines()
        head, rest = lines[0], lines[1:]
        body = "\n".join(f"- {html.escape(line.strip())}" for line in rest if line.strip())
        return f"**⚠️ {html.escape(head)}**\n\n{body}" if body else f"**⚠️ {html.escape(head)}**"
    return f"**⚠️ Something went wrong: {html.escape(type(exc).__name__)}: {html.escape(str(exc))}**"


def chat_messages(record: Record | None) -> list[dict]:
    """A record's turns for gr.Chatbot (system prompts shown as a note from the system)."""
    if record is None:
        return []
    out = []
    for m in record.messages:
        if m["role"] == "system":
            out.append({"role": "assistant", "content": f"*System prompt:* {m['content']}"})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def record_rows(records: list[Record]) -> list[list]:
    """Rows for a records table: id, turns, first question, answer, label, other meta."""
    rows = []
    for r in records:
        meta = {k: v for k, v in r.meta.items() if k not in ("label",)}
        rows.append([r.id, len(r.messages), short(r.prompt if len(r.messages) < 3 else
                                                  next((m["content"] for m in r.messages if m["role"] == "user"), "")),
                     short(r.answer), str(r.meta.get("label", "")), short(", ".join(f"{k}={v}" for k, v in meta.items()), 60)])
    return rows


RECORD_HEADERS = ["id", "turns", "question", "answer", "label", "meta"]
