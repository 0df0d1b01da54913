"""Record rendering the curation tabs share (tables, chat turns). Errors, pickers and caller identity are
the UI kit's (``ui.kit``)."""
from __future__ import annotations

from curation.data.records import Record


def chat_messages(record: Record | None) -> list[dict]:
    """A record's turns for gr.Chatbot (system prompts shown as a note from the system)."""
    if record is None:
        return []
    out = []
    for m in record.messages:
        if m["role"] == "system":
            out.append({"role": "assistant", "content": f"*System prompt:* {m['content']}"})
        elif m["role"] == "tool":   # a tool's answer, folded under a title in the assistant's column
            out.append({"role": "assistant", "content": m["content"],
                        "metadata": {"title": f"Tool answer{' from ' + m['name'] if m.get('name') else ''}"}})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def record_rows(records: list[Record], label_field: str | None = "label") -> list[list]:
    """Rows for a records table: id, turns, first question, answer, label (the meta ``label_field``: the
    version's label field, ``curation.review.labels.label_field``), other meta."""
    rows = []
    for r in records:
        meta = {k: v for k, v in r.meta.items() if k != label_field}
        label = r.meta.get(label_field, "") if label_field else ""
        rows.append([r.id, len(r.messages), short(r.prompt if len(r.messages) < 3 else
                                                  next((m["content"] for m in r.messages if m["role"] == "user"), "")),
                     short(r.answer), str(label), short(", ".join(f"{k}={v}" for k, v in meta.items()), 60)])
    return rows


RECORD_HEADERS = ["id", "turns", "question", "answer", "label", "meta"]
