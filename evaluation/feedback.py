"""Votes become data: preference pairs, corrected answers, and prompts that still need an answer.

- Decisive votes → preference pairs in trl's conversational format (``prompt`` messages, ``chosen`` and
  ``rejected`` assistant turns), stored per pair and exportable as JSONL for DPO-style training.
- Corrected answers → new SFT records (the prompt plus the rater's answer).
- Both-bad pairs nobody corrected → the "needs an answer" queue; an answer typed there becomes an SFT
  record at the next merge.
- Raters who disagree on a pair (one prefers the fine-tuned response, another the base) are handled
  by a policy: ``majority`` keeps the side with more decisive votes and excludes exact splits;
  ``unanimous`` excludes every such pair. Either way they are listed for the admin.

Everything carries provenance: evaluation, run, vote ids, raters. ``merge_feedback`` adds the new
records to the current dataset version as a new version made by the step "feedback". A corrected
answer keeps the split of the prompt it answers, so a test prompt's correction never leaks into train.

Example::

    fb = sync_feedback(ws, 3)                    # store preference pairs and the queue
    export_preferences(ws, 3, "prefs.jsonl")
    version = merge_feedback(ws, 3, created_by="ana")
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace, atomic_write
from curation.data.records import Record
from curation.data.versions import Version, create_version, load_records, require_current
from evaluation.arena import VoteRow, evaluation_votes, get_evaluation

POLICIES = ("majority", "unanimous")


@dataclass(frozen=True)
class PairInfo:
    pair_id: int
    prompt_id: str
    messages: list[dict[str, str]]
    base_response: str
    finetuned_response: str
    label: str | None
    split: str | None


@dataclass
class Feedback:
    evaluation_id: int
    run_id: str | None
    policy: str
    preference_pairs: list[dict[str, Any]] = field(default_factory=list)
    corrections: list[Record] = field(default_factory=list)
    needs_answer: list[dict[str, Any]] = field(default_factory=list)   # pair_id, vote_ids, raters
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"preference_pairs": len(self.preference_pairs), "corrected": len(self.corrections),
                "needs_answer": len(self.needs_answer),
                "disagreements": len(self.disagreements),
                "disagreements_excluded": sum(1 for d in self.disagreements if d["resolution"] == "excluded")}


def collect_feedback(ws: Workspace, evaluation_id: int, *, policy: str = "majority") -> Feedback:
    """What the votes of one evaluation amount to, computed from the stored votes (nothing written)."""
    if policy not in POLICIES:
        raise TuneloopError(f"unknown disagreement policy '{policy}'; choose majority or unanimous")
    evaluation = get_evaluation(ws, evaluation_id)
    pairs = _pairs(ws, evaluation.id)
    votes_by_pair: dict[int, list[VoteRow]] = defaultdict(list)
    for vote in evaluation_votes(ws, evaluation.id):
        votes_by_pair[vote.pair_id].append(vote)
    fb = Feedback(evaluation_id=evaluation.id, run_id=evaluation.run_id, policy=policy)
    for pair_id, votes in sorted(votes_by_pair.items()):
        pair = pairs[pair_id]
        for v in votes:
            if v.corrected_answer:
                fb.corrections.append(_correction_record(evaluation.id, evaluation.run_id, pair, v))
        preference, disagreement = _preference(pair, votes, policy, evaluation.run_id)
        if preference:
            fb.preference_pairs.append(preference)
        if disagreement:
            fb.disagreements.append(disagreement)
        bad = [v for v in votes if v.outcome == "both_bad"]
        if bad and not any(v.corrected_answer for v in votes):
            fb.needs_answer.append({"pair_id": pair_id, "vote_ids": [v.vote_id for v in bad],
                                    "raters": sorted({v.rater for v in bad})})
    return fb


def sync_feedback(ws: Workspace, evaluation_id: int, *, policy: str = "majority") -> Feedback:
    """Store the evaluation's preference pairs and queue items (one transaction); returns the feedback.

    Preference pairs are replaced by the current view of the votes; queue items already answered keep
    their answers.
    """
    fb = collect_feedback(ws, evaluation_id, policy=policy)
    queued = [item["pair_id"] for item in fb.needs_answer]
    with ws.transaction() as db:
        db.execute("delete from preference_pairs where evaluation_id=?", (fb.evaluation_id,))
        db.executemany(
            "insert into preference_pairs (evaluation_id, pair_id, prompt, chosen, rejected, chosen_model,"
            " vote_ids, raters, resolution) values (?,?,?,?,?,?,?,?,?)",
            [(fb.evaluation_id, p["meta"]["pair_id"], json.dumps(p["prompt"], ensure_ascii=False),
              p["chosen"][0]["content"], p["rejected"][0]["content"], p["meta"]["chosen_model"],
              json.dumps(p["meta"]["vote_ids"]), json.dumps(p["meta"]["raters"]), p["meta"]["resolution"])
             for p in fb.preference_pairs])
        db.execute("delete from needs_answer where evaluation_id=? and answer is null and pair_id not in (%s)"
                   % ",".join("?" * len(queued)), (fb.evaluation_id, *queued))
        db.executemany("insert into needs_answer (evaluation_id, pair_id, vote_ids, raters) values (?,?,?,?)"
                       " on conflict(pair_id) do update set vote_ids=excluded.vote_ids, raters=excluded.raters",
                       [(fb.evaluation_id, item["pair_id"], json.dumps(item["vote_ids"]), json.dumps(item["raters"]))
                        for item in fb.needs_answer])
    return fb


def stored_preference_pairs(ws: Workspace, evaluation_id: int) -> list[dict[str, Any]]:
    """Preference pairs as stored by the last ``sync_feedback``, in trl's format with provenance in meta."""
    evaluation = get_evaluation(ws, evaluation_id)
    rows = ws.db.execute(
        "select pp.*, p.prompt_id, p.label, p.split from preference_pairs pp join eval_pairs p on p.id=pp.pair_id"
        " where pp.evaluation_id=? order by pp.pair_id", (evaluation.id,)).fetchall()
    return [{"prompt": json.loads(r["prompt"]),
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}],
             "meta": {"source": "feedback", "evaluation": evaluation.id, "run": evaluation.run_id,
                      "pair_id": r["pair_id"], "prompt_id": r["prompt_id"], "label": r["label"],
                      "split": r["split"], "chosen_model": r["chosen_model"],
                      "vote_ids": json.loads(r["vote_ids"]), "raters": json.loads(r["raters"]),
                      "resolution": r["resolution"]}}
            for r in rows]


def export_preferences(ws: Workspace, evaluation_id: int, out: str | Path, *, policy: str = "majority") -> int:
    """Write the evaluation's preference pairs as JSONL (prompt/chosen/rejected + meta); returns how many."""
    sync_feedback(ws, evaluation_id, policy=policy)
    pairs = stored_preference_pairs(ws, evaluation_id)
    data = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs).encode("utf-8")
    atomic_write(Path(out), data)
    return len(pairs)


# -- the needs-an-answer queue ----------------------------------------------------------------

@dataclass(frozen=True)
class QueueItem:
    id: int
    evaluation_id: int
    pair_id: int
    prompt_id: str
    messages: list[dict[str, str]]
    label: str | None
    vote_ids: list[int]
    raters: list[str]
    answer: str | None
    answered_by: str | None

    @property
    def prompt(self) -> str:
        return self.messages[-1]["content"]


def needs_answer_queue(ws: Workspace, evaluation_id: int | None = None, *,
                       include_answered: bool = False) -> list[QueueItem]:
    """Prompts both models answered badly and no rater corrected, oldest first."""
    sql = ("select q.*, p.prompt_id, p.messages, p.label from needs_answer q join eval_pairs p on p.id=q.pair_id"
           " where 1=1")
    args: list[Any] = []
    if evaluation_id is not None:
        sql += " and q.evaluation_id=?"
        args.append(int(evaluation_id))
    if not include_answered:
        sql += " and q.answer is null"
    rows = ws.db.execute(sql + " order by q.id", args).fetchall()
    return [QueueItem(id=r["id"], evaluation_id=r["evaluation_id"], pair_id=r["pair_id"], prompt_id=r["prompt_id"],
                      messages=json.loads(r["messages"]), label=r["label"], vote_ids=json.loads(r["vote_ids"]),
                      raters=json.loads(r["raters"]),
                      answer=r["answer"], answered_by=r["answered_by"]) for r in rows]


def answer_needed(ws: Workspace, item_id: int, answer: str, *, answered_by: str | None = None) -> None:
    """Give a queued prompt its answer; it becomes an SFT record at the next merge."""
    text = (answer or "").strip()
    if not text:
        raise TuneloopError("the answer is empty; write the answer the model should have given")
    with ws.transaction() as db:
        updated = db.execute("update needs_answer set answer=?, answered_by=?,"
                             " answered_at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now') where id=?",
                             (text, answered_by, int(item_id))).rowcount
    if not updated:
        raise TuneloopError(f"there is no queued prompt #{item_id}")


# -- merge ------------------------------------------------------------------------------------

def feedback_records(ws: Workspace, evaluation_id: int, *, policy: str = "majority") -> list[Record]:
    """The SFT records the evaluation's feedback adds: corrected answers, then answered queue items."""
    fb = sync_feedback(ws, evaluation_id, policy=policy)
    evaluation = get_evaluation(ws, evaluation_id)
    pairs = _pairs(ws, evaluation.id)
    records = list(fb.corrections)
    for item in needs_answer_queue(ws, evaluation.id, include_answered=True):
        if item.answer is None:
            continue
        pair = pairs[item.pair_id]
        meta = _provenance(evaluation.id, evaluation.run_id, pair)
        meta.update({"from_votes": item.vote_ids, "raters": item.raters, "answered_by": item.answered_by,
                     "kind": "needs_answer"})
        records.append(Record(id=f"fb{evaluation.id}-q{item.id}",
                              messages=pair.messages + [{"role": "assistant", "content": item.answer}], meta=meta))
    return records


def merge_feedback(ws: Workspace, evaluation_id: int, *, policy: str = "majority",
                   created_by: str | None = None) -> Version:
    """A new dataset version: the current one plus the feedback records not merged before."""
    evaluation = get_evaluation(ws, evaluation_id)
    current = require_current(ws)
    existing = load_records(ws, current.id)
    have = {r.id for r in existing}
    new = [r for r in feedback_records(ws, evaluation.id, policy=policy) if r.id not in have]
    if not new:
        raise TuneloopError(f"evaluation #{evaluation.id} has nothing new to merge into {current.name}: no corrected "
                            f"answers or answered prompts beyond those already merged")
    fb = collect_feedback(ws, evaluation.id, policy=policy)
    counts = {"added": len(new),
              "corrected": sum(1 for r in new if r.meta.get("kind") == "correction"),
              "answered": sum(1 for r in new if r.meta.get("kind") == "needs_answer"),
              "preference_pairs": len(fb.preference_pairs),
              "needs_answer_open": len(needs_answer_queue(ws, evaluation.id)),
              "disagreements_excluded": fb.counts()["disagreements_excluded"]}
    params = {"evaluation": evaluation.id, "run": evaluation.run_id, "policy": policy}
    return create_version(ws, existing + new, parent=current.id, step="feedback", params=params, counts=counts,
                          note=f"feedback from evaluation #{evaluation.id} ({evaluation.name})", created_by=created_by)


# -- helpers ----------------------------------------------------------------------------------

def _pairs(ws: Workspace, evaluation_id: int) -> dict[int, PairInfo]:
    rows = ws.db.execute("select * from eval_pairs where evaluation_id=?", (evaluation_id,)).fetchall()
    return {r["id"]: PairInfo(pair_id=r["id"], prompt_id=r["prompt_id"], messages=json.loads(r["messages"]),
                              base_response=r["base_response"], finetuned_response=r["finetuned_response"],
                              label=r["label"], split=r["split"]) for r in rows}


def _provenance(evaluation_id: int, run_id: str | None, pair: PairInfo) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": "feedback", "evaluation": evaluation_id, "run": run_id,
                            "prompt_id": pair.prompt_id}
    if pair.label is not None:
        meta["label"] = pair.label
    if pair.split is not None:
        meta["split"] = pair.split
    return meta


def _correction_record(evaluation_id: int, run_id: str | None, pair: PairInfo, vote: VoteRow) -> Record:
    meta = _provenance(evaluation_id, run_id, pair)
    meta.update({"from_vote": vote.vote_id, "rater": vote.rater, "kind": "correction"})
    return Record(id=f"fb{evaluation_id}-v{vote.vote_id}",
                  messages=pair.messages + [{"role": "assistant", "content": vote.corrected_answer}], meta=meta)


def _preference(pair: PairInfo, votes: list[VoteRow], policy: str,
                run_id: str | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The pair's preference (or None) and, when raters contradict each other, the disagreement."""
    ft = [v for v in votes if v.outcome == "finetuned"]
    base = [v for v in votes if v.outcome == "base"]
    if not ft and not base:
        return None, None
    conflict = bool(ft) and bool(base)
    if conflict and (policy == "unanimous" or len(ft) == len(base)):
        winner = None
    else:
        winner = "finetuned" if len(ft) > len(base) else "base"
    resolution = "excluded" if winner is None else ("majority" if conflict else "unanimous")
    disagreement = None
    if conflict:
        disagreement = {"pair_id": pair.pair_id, "prompt_id": pair.prompt_id, "prompt": pair.messages[-1]["content"],
                        "votes": {v.rater: v.outcome for v in votes}, "resolution": resolution, "chosen": winner}
    if winner is None:
        return None, disagreement
    support = ft if winner == "finetuned" else base
    chosen, rejected = ((pair.finetuned_response, pair.base_response) if winner == "finetuned"
                        else (pair.base_response, pair.finetuned_response))
    preference = {"prompt": pair.messages,
                  "chosen": [{"role": "assistant", "content": chosen}],
                  "rejected": [{"role": "assistant", "content": rejected}],
                  "meta": {"pair_id": pair.pair_id, "prompt_id": pair.prompt_id, "run": run_id,
                           "chosen_model": winner, "vote_ids": [v.vote_id for v in support],
                           "raters": sorted({v.rater for v in support}), "resolution": resolution}}
    return preference, disagreement
