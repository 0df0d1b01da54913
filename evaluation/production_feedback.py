"""Feedback from use becomes data: what users of a served run said about its answers, into the next version.

A server started with ``python -m training serve`` takes thumbs up/down, comments and corrected answers for
the responses it served (``POST /v1/feedback``, rows of ``serve_feedback`` with the run, the time and the
request id). ``collect_served_feedback`` computes what they amount to and writes nothing;
``merge_served_feedback`` writes it, once, the way rating votes are merged (``evaluation.feedback``):

- a correction → an SFT record (the conversation plus the corrected answer) in a new dataset version made
  from the current one (step ``served feedback``), through curation's ``create_version``;
- a prompt with a thumbs-up answer and a thumbs-down answer → a preference pair, in a preference version
  (step ``served preferences``) that a DPO run names (``stage: dpo``, ``preferences: vN``);
- a thumb with no opposite answer to pair it with → a KTO example (the prompt, the answer, desirable for up),
  in a KTO version (step ``served kto``) that a KTO run names (``stage: kto``, ``kto_data: vN``); exported,
  it is trl's conversational KTO format (``prompt``, ``completion``, ``label``);
- a thumbs-down with no correction, on a prompt nobody liked an answer to → curation's needs-an-answer queue
  (origin ``served``); an answer written there becomes an SFT record at the next merge.

Text: a feedback needs the conversation (and, for a thumb, the answer). The server's log has them when it
runs with ``--log-text``; otherwise the client sends them back with the feedback (``messages``,
``completion``). Feedback with neither is counted (``without_text``) and left out.

Served records carry ``split: train`` when the current version is a split (traffic is not a test prompt).

Example::

    fb = collect_served_feedback(ws)          # nothing written
    merged = merge_served_feedback(ws, created_by="ana")
    merged.sft, merged.preferences, merged.kto
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import Record, canonical_json
from curation.data.versions import Version, content_hash, create_version, get_version, load_records, require_current
from curation.review.answer_requests import answer_requests, answered_records, request_answers

ORIGIN = "served"


@dataclass
class ServedFeedback:
    """What the feedback from use amounts to (computed, not written)."""
    corrections: list[Record] = field(default_factory=list)
    preference_pairs: list[Record] = field(default_factory=list)
    kto: list[Record] = field(default_factory=list)             # unpaired thumbs: the answer, desirable or not
    needs_answer: list[Record] = field(default_factory=list)
    without_text: list[int] = field(default_factory=list)       # feedback ids with no conversation to use

    def counts(self) -> dict[str, int]:
        return {"corrections": len(self.corrections), "preference_pairs": len(self.preference_pairs),
                "kto": len(self.kto), "needs_answer": len(self.needs_answer), "without_text": len(self.without_text)}


@dataclass
class ServedMerge:
    """What ``merge_served_feedback`` made: a new SFT version, a preference version, a KTO version (each None
    when there was nothing new for it), and the counts."""
    sft: Version | None
    preferences: Version | None
    kto: Version | None
    counts: dict[str, int]

    def describe(self) -> str:
        parts = []
        if self.sft:
            parts.append(f"{self.sft.describe()}")
        if self.preferences:
            parts.append(f"preference pairs in {self.preferences.name} (a DPO run names it: preferences: "
                         f"{self.preferences.name})")
        if self.kto:
            parts.append(f"unpaired thumbs as KTO examples in {self.kto.name} ({self.kto.counts.get('desirable', 0)} "
                         f"up, {self.kto.counts.get('undesirable', 0)} down; a KTO run names it: kto_data: "
                         f"{self.kto.name})")
        parts.append(f"{self.counts['needs_answer_open']} prompts wait for an answer in the review queue; "
                     f"{self.counts['without_text']} feedback without text left out")
        return "\n".join(parts)


def collect_served_feedback(ws: Workspace) -> ServedFeedback:
    """Every stored feedback from use, as records and rows with provenance (nothing written)."""
    rows = ws.db.execute("select f.*, r.request_text, r.response_text, r.created_at served_at, r.live_id"
                         " from serve_feedback f join serve_requests r on r.id=f.request_id order by f.id").fetchall()
    fb = ServedFeedback()
    thumbs: dict[str, dict[str, list]] = {}
    prompts: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        prompt = json.loads(row["request_text"] or row["messages"] or "null")
        answer = row["response_text"] or row["completion"]
        meta = _provenance(row)
        if row["correction"]:
            if prompt is None:
                fb.without_text.append(row["id"])
                continue
            fb.corrections.append(Record(f"served-fb{row['id']}", prompt + [_assistant(row["correction"])],
                                         {**meta, "kind": "correction"}))
        elif row["rating"]:
            if prompt is None or (answer is None and row["rating"] == "up"):
                fb.without_text.append(row["id"])
                continue
            key = canonical_json(prompt)
            prompts[key] = prompt
            thumbs.setdefault(key, {"up": [], "down": []})[row["rating"]].append((row["id"], answer, meta))
    for key, by in thumbs.items():
        prompt, ups, downs = prompts[key], by["up"], [d for d in by["down"] if d[1] is not None]
        if ups and downs:
            for up_id, up, up_meta in ups:
                for down_id, down, down_meta in downs:
                    if up != down:
                        fb.preference_pairs.append(Record(
                            f"served-pair{up_id}-{down_id}", prompt, {**up_meta, "kind": "preference",
                                                                      "rejected_feedback": down_meta},
                            chosen=[_assistant(up)], rejected=[_assistant(down)]))
        else:
            fb.kto += [Record(f"served-kto{fid}", prompt, {**meta, "kind": "kto"}, completion=[_assistant(answer)],
                              desirable=rating == "up")
                       for rating, items in (("up", ups), ("down", downs)) for fid, answer, meta in items]
        if by["down"] and not ups:
            first = by["down"][0][2]
            fb.needs_answer.append(Record(f"served-fb{first['feedback']}", prompt,
                                          {**first, "kind": "needs_answer",
                                           "from_feedback": [d[0] for d in by["down"]]}))
    return fb


def merge_served_feedback(ws: Workspace, *, created_by: str | None = None) -> ServedMerge:
    """Write what the feedback from use amounts to: the current version plus corrections and answered prompts
    as a new version, the preference pairs as a preference version, the unpaired thumbs as a KTO version, and
    uncorrected thumbs-down prompts into the needs-an-answer queue. Only what is new is written; with nothing
    new at all, a TuneloopError says so."""
    fb = collect_served_feedback(ws)
    request_answers(ws, ORIGIN, fb.needs_answer, provenance={"source": "served"})
    open_count = len(answer_requests(ws, ORIGIN))
    current = require_current(ws)
    existing = load_records(ws, current.id)
    split = "train" if any(r.meta.get("split") for r in existing) else None
    have = {r.id for r in existing}
    new = [_in_split(r, split) for r in fb.corrections + answered_records(ws, ORIGIN) if r.id not in have]
    preferences = _preference_version(ws, fb, current, created_by) if fb.preference_pairs else None
    kto = _kto_version(ws, fb, current, split, created_by) if fb.kto else None
    counts = {"added": len(new), "corrected": sum(1 for r in new if r.meta.get("kind") == "correction"),
              "answered": sum(1 for r in new if r.meta.get("kind") == "needs_answer"),
              "preference_pairs": len(fb.preference_pairs), "kto": len(fb.kto), "needs_answer_open": open_count,
              "without_text": len(fb.without_text)}
    made_preferences = preferences is not None and preferences[1]
    made_kto = kto is not None and kto[1]
    if not new and not made_preferences and not made_kto:
        raise TuneloopError(f"the feedback from use has nothing new to merge into {current.name}: no new correction, "
                            f"answered prompt, preference pair or thumb ({open_count} prompts wait for an answer in "
                            f"the review queue, {len(fb.without_text)} feedback had no text: start the server with "
                            f"--log-text or send 'messages' with the feedback)")
    sft = None
    if new:
        params = {"source": "served", "preferences": preferences[0].name if preferences else None,
                  "kto": kto[0].name if kto else None}
        sft = create_version(ws, existing + new, parent=current.id, step="served feedback", params=params,
                             counts=counts, note="feedback from use of a served run", created_by=created_by)
    return ServedMerge(sft, preferences[0] if made_preferences else None, kto[0] if made_kto else None, counts)


def _preference_version(ws: Workspace, fb: ServedFeedback, current: Version,
                        created_by: str | None) -> tuple[Version, bool]:
    """The preference version of the pairs (the one made before from the same pairs, or a new one) and whether
    it is new."""
    digest = content_hash(fb.preference_pairs)
    before = ws.db.execute("select id from dataset_versions where step='served preferences' and content_hash=?",
                           (digest,)).fetchone()
    if before is not None:
        return get_version(ws, before[0]), False
    runs = sorted({r.meta["run"] for r in fb.preference_pairs if r.meta.get("run") is not None})
    return create_version(ws, fb.preference_pairs, parent=current.id, step="served preferences",
                          params={"source": "served", "runs": runs}, counts={"pairs": len(fb.preference_pairs)},
                          note="preference pairs from thumbs on served answers", created_by=created_by), True


def _kto_version(ws: Workspace, fb: ServedFeedback, current: Version, split: str | None,
                 created_by: str | None) -> tuple[Version, bool]:
    """The KTO version of the unpaired thumbs (the one made before from the same thumbs, or a new one, its
    examples in the train split when the current version has splits) and whether it is new."""
    examples = [_in_split(r, split) for r in fb.kto]
    digest = content_hash(examples)
    before = ws.db.execute("select id from dataset_versions where step='served kto' and content_hash=?",
                           (digest,)).fetchone()
    if before is not None:
        return get_version(ws, before[0]), False
    runs = sorted({r.meta["run"] for r in examples if r.meta.get("run") is not None})
    good = sum(1 for r in examples if r.desirable)
    return create_version(ws, examples, parent=current.id, step="served kto", params={"source": "served", "runs": runs},
                          counts={"desirable": good, "undesirable": len(examples) - good},
                          note="thumbs on served answers with no opposite answer to pair them with",
                          created_by=created_by), True


def _provenance(row) -> dict[str, Any]:
    meta = {"source": "served", "run": row["run_id"], "request_id": row["request_id"], "feedback": row["id"],
            "served_at": row["served_at"], "feedback_at": row["created_at"], "rating": row["rating"]}
    if row["live_id"] is not None:
        meta["live_version"] = f"live-v{row['live_id']}"
    if row["comment"]:
        meta["comment"] = row["comment"]
    client = json.loads(row["metadata"] or "{}")
    if client:
        meta["client"] = client
    return meta


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _in_split(record: Record, split: str | None) -> Record:
    if split is None or record.meta.get("split"):
        return record
    return Record(record.id, record.messages, {**record.meta, "split": split}, completion=record.completion,
                  desirable=record.desirable)
