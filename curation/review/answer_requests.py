"""Answer requests: prompts that still need a good answer, written by a person.

Whoever finds such prompts (rating, when both answers were bad and nobody corrected them) asks
for answers here, naming itself as the ``origin``; a reviewer or the admin answers them; an
answered request becomes an SFT record (the prompt plus the answer, with the request's provenance)
the next time its origin's records are merged into a version. Curation owns the queue, so nothing
here knows who the origin is beyond its name.

Example::

    request_answers(ws, "evaluation 3", [Record("fb3-p12", prompt_messages, {"prompt_id": "r7"})],
                    provenance={"source": "feedback", "evaluation": 3})
    (req,) = open_requests(ws, "evaluation 3")
    answer_request(ws, req.id, "Order LM-1003 ships Monday.", answered_by="lead")
    answered_records(ws, "evaluation 3")          # SFT records ready to merge
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import Record


@dataclass(frozen=True)
class AnswerRequest:
    id: int
    origin: str
    record_id: str
    prompt_id: str | None
    messages: list[dict[str, str]]
    meta: dict[str, Any]
    answer: str | None
    answered_by: str | None

    @property
    def prompt(self) -> str:
        return self.messages[-1]["content"]

    @property
    def raters(self) -> list[str]:
        return list(self.meta.get("raters") or [])


def request_answers(ws: Workspace, origin: str, items: Iterable[Record], provenance: dict[str, Any]) -> int:
    """Ask for answers to ``items`` (a record per prompt: the id its answer will get, the prompt messages
    ending with the user turn, per-item meta with ``prompt_id``); ``provenance`` is added to every meta.

    The open requests of ``origin`` become exactly these: ones no longer asked for are withdrawn,
    answered ones are kept as they are. Returns how many are open now."""
    items = list(items)
    for item in items:
        if not item.messages or item.messages[-1]["role"] != "user":
            raise TuneloopError(f"answer request '{item.id}': the prompt must end with the user turn to answer")
    wanted = [r.id for r in items]
    with ws.transaction() as db:
        db.execute(f"delete from answer_requests where origin=? and answer is null and record_id not in "
                   f"({','.join('?' * len(wanted))})", (origin, *wanted))
        db.executemany(
            "insert into answer_requests (origin, record_id, prompt_id, messages, meta) values (?,?,?,?,?)"
            " on conflict(record_id) do update set meta=excluded.meta where answer is null",
            [(origin, r.id, r.meta.get("prompt_id"), json.dumps(r.messages, ensure_ascii=False),
              json.dumps({**r.meta, **provenance}, ensure_ascii=False)) for r in items])
        return db.execute("select count(*) from answer_requests where origin=? and answer is null",
                          (origin,)).fetchone()[0]


def answer_requests(ws: Workspace, origin: str | None = None, *, answered: bool | None = False) -> list[AnswerRequest]:
    """Requests oldest first: open ones (default), answered ones (``answered=True``) or all (``None``)."""
    sql, args = "select * from answer_requests where 1=1", []
    if origin is not None:
        sql += " and origin=?"
        args.append(origin)
    if answered is not None:
        sql += " and answer is not null" if answered else " and answer is null"
    return [_request(r) for r in ws.db.execute(sql + " order by id", args)]


def open_requests(ws: Workspace, origin: str | None = None) -> list[AnswerRequest]:
    """Prompts still waiting for an answer, oldest first."""
    return answer_requests(ws, origin)


def open_prompt_ids(ws: Workspace) -> set[str]:
    """Ids of the dataset records whose prompts wait for an answer (the Review tab's filter)."""
    return {r[0] for r in ws.db.execute("select prompt_id from answer_requests where answer is null"
                                        " and prompt_id is not null")}


def answer_request(ws: Workspace, request_id: int, answer: str, *, answered_by: str | None = None) -> None:
    """Give a request its answer; it becomes an SFT record at its origin's next merge."""
    text = (answer or "").strip()
    if not text:
        raise TuneloopError("the answer is empty; write the answer the model should have given")
    with ws.transaction() as db:
        updated = db.execute("update answer_requests set answer=?, answered_by=?,"
                             " answered_at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now') where id=?",
                             (text, answered_by, int(request_id))).rowcount
    if not updated:
        raise TuneloopError(f"there is no answer request #{request_id}; the queue lists the open ones")


def answered_records(ws: Workspace, origin: str) -> list[Record]:
    """The answered requests of ``origin`` as SFT records: the prompt, the answer, the provenance."""
    return [Record(id=r.record_id, messages=r.messages + [{"role": "assistant", "content": r.answer}],
                   meta={**r.meta, "answered_by": r.answered_by})
            for r in answer_requests(ws, origin, answered=True)]


def _request(row) -> AnswerRequest:
    return AnswerRequest(id=row["id"], origin=row["origin"], record_id=row["record_id"], prompt_id=row["prompt_id"],
                         messages=json.loads(row["messages"]), meta=json.loads(row["meta"]), answer=row["answer"],
                         answered_by=row["answered_by"])
