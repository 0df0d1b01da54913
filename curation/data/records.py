"""The record: one chat example, the unit every curation step reads and writes.

A record is ``id`` (stable across versions), ``messages`` (a list of ``{"role", "content"}`` with
roles system/user/assistant/tool; a tool call is assistant text, see ``curation.data.schemas``) and ``meta`` (source, label, group ids, provenance, tags; free-form
JSON). A split version puts ``meta["split"]`` in ``train``/``val``/``test``.

A *preference* record (what rating produces, what DPO trains on) also has ``chosen`` and
``rejected``, each a list of assistant turns; its ``messages`` is the prompt, ending with the user
turn both answers reply to. A *KTO* record (one answer judged on its own: a thumb, or one side of a
vote; what KTO trains on) has ``completion`` (a list of assistant turns) and ``desirable`` (True for a
good answer, False for a bad one); its ``messages`` is the prompt too. A version holds one kind only
(``Version.kind``: sft, preference or kto).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

ROLES = ("system", "user", "assistant", "tool")
SPLITS = ("train", "val", "test")


@dataclass
class Record:
    id: str
    messages: list[dict[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)
    chosen: list[dict[str, str]] | None = None      # preference records only: the preferred answer
    rejected: list[dict[str, str]] | None = None    # preference records only: the answer it beat
    completion: list[dict[str, str]] | None = None  # KTO records only: the answer that was judged
    desirable: bool | None = None                   # KTO records only: whether that answer was good

    @property
    def is_preference(self) -> bool:
        return self.chosen is not None

    @property
    def is_kto(self) -> bool:
        return self.completion is not None

    @property
    def kind(self) -> str:
        """sft, preference or kto: the kind of version this record belongs in."""
        return "preference" if self.is_preference else "kto" if self.is_kto else "sft"

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "messages": self.messages, "meta": self.meta}
        if self.is_preference:
            d.update(chosen=self.chosen, rejected=self.rejected)
        if self.is_kto:
            d.update(completion=self.completion, desirable=self.desirable)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        chosen, rejected, completion = d.get("chosen"), d.get("rejected"), d.get("completion")
        return cls(id=str(d["id"]), messages=list(d["messages"]), meta=dict(d.get("meta") or {}),
                   chosen=list(chosen) if chosen is not None else None,
                   rejected=list(rejected) if rejected is not None else None,
                   completion=list(completion) if completion is not None else None,
                   desirable=bool(d["desirable"]) if completion is not None else None)

    def content_hash(self) -> str:
        """Hash of messages and meta (and the answers of a preference or KTO record): equal records hash
        equally, whatever their key order."""
        if self.is_preference:
            return record_hash(self.messages, self.meta, [self.chosen, self.rejected])
        if self.is_kto:
            return record_hash(self.messages, self.meta, [self.completion, self.desirable])
        return record_hash(self.messages, self.meta)

    def text(self, roles: Iterable[str] = ROLES) -> str:
        """The contents of the chosen roles' turns, joined by newlines."""
        wanted = set(roles)
        return "\n".join(m["content"] for m in self.messages if m["role"] in wanted)

    @property
    def prompt(self) -> str:
        """The last user turn (what a rater or the playground shows as the question)."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""

    @property
    def answer(self) -> str:
        """The last assistant turn (the reference answer)."""
        answers = [m["content"] for m in self.messages if m["role"] == "assistant"]
        return answers[-1] if answers else ""

    @property
    def split(self) -> str | None:
        return self.meta.get("split")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def record_hash(messages: list[dict[str, str]], meta: dict[str, Any], answers: list | None = None) -> str:
    body = [messages, meta] if answers is None else [messages, meta, answers]
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()[:32]


def new_record_id(messages: list[dict[str, str]], salt: str = "") -> str:
    """A stable id derived from the content, for input that brings none."""
    return "r" + hashlib.sha256((salt + canonical_json(messages)).encode("utf-8")).hexdigest()[:15]
