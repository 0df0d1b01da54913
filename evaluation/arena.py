"""Blind side-by-side rating: evaluations, pairs, who sees what, and votes checked on the server.

An evaluation is a set of pairs (one prompt, the base model's response and the fine-tuned one) and an
overlap k: how many raters should judge each pair. ``next_pair`` issues a pair to a rater and records
which side the fine-tuned response is shown on; what it returns (``BlindPair``) holds the two texts as
A and B and nothing that names a model. The side→model mapping stays in the database until
``record_vote`` has accepted that rater's vote; only then does the ``Reveal`` say who was who.

Sides are drawn with a fair coin per pair (``secrets``): a rater who has seen every reveal so far still
cannot guess the next side better than chance (a balancing coin can be guessed from the counts). The
balance of the sides is checked in the statistics instead (``evaluation.stats``: the fine-tuned model's
share of the left side, with its test). A rater never gets the same texts (conversation and both answers)
twice, even across evaluations: the sides revealed in one would give away the other's.

A vote and the next pair are a handful of SQLite statements (``record_vote``: 2 in one transaction,
``next_pair``: 4, 3 of them in one transaction), and the writes of one process take turns on a lock rather
than in SQLite's busy handler, which sleeps up to 100 ms between tries.

Example::

    eid = create_evaluation(ws, "run 3 vs base", items, base_model="SmolLM2-135M-Instruct", overlap=2)
    pair = next_pair(ws, eid, "ana")                 # BlindPair: prompt, response_a, response_b
    reveal = record_vote(ws, pair.assignment_id, "ana", "A", comment="clearer")
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from core.errors import TuneloopError
from core.workspace import Workspace

VERDICTS = ("A", "B", "tie", "both_bad")
OUTCOMES = ("finetuned", "base", "tie", "both_bad")
VERDICT_WORDS = {"A": "A is better", "B": "B is better", "tie": "a tie", "both_bad": "both bad"}
SIDES = ("A", "B")
# A comment or corrected answer longer than this is refused: no real answer needs more, and a hosted
# server must not store whatever size a script sends.
MAX_TEXT_CHARS = 20_000


class VoteRefused(TuneloopError):
    """The server refused a vote: not issued to this rater, already voted, or not a verdict."""


@dataclass(frozen=True)
class EvalItem:
    """One prompt of an evaluation with both models' responses (the input to ``create_evaluation``)."""
    prompt_id: str
    messages: list[dict[str, str]]       # the conversation up to and including the last user turn
    base_response: str
    finetuned_response: str
    label: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class Evaluation:
    id: int
    name: str
    run_id: int | None
    base_model: str
    adapter: str | None
    dataset_version: int | None
    overlap: int
    guidelines: str
    settings: dict[str, Any]
    created_by: str | None
    created_at: str
    num_pairs: int = 0
    num_votes: int = 0

    def describe(self) -> str:
        source = f"run {self.run_id}" if self.run_id else (self.adapter or "adapter")
        return (f"#{self.id} {self.name} · {source} vs {self.base_model} · {self.num_pairs} pairs · "
                f"{self.overlap} rater(s) per pair · {self.num_votes} votes")

    @property
    def finetuned_name(self) -> str:
        return finetuned_name(self.run_id)

    @property
    def base_name(self) -> str:
        return base_name(self.base_model)


def finetuned_name(run_id: int | None) -> str:
    """How a reveal names the fine-tuned model of an evaluation."""
    return f"fine-tuned (run {run_id})" if run_id else "fine-tuned"


def base_name(base_model: str) -> str:
    """How a reveal names the base model of an evaluation."""
    return f"base ({base_model})"


@dataclass(frozen=True)
class BlindPair:
    """What a rater may see before voting. Deliberately holds no model name and no side mapping."""
    assignment_id: int
    evaluation_id: int
    context: list[dict[str, str]]        # earlier turns of the conversation, if any
    prompt: str                          # the last user turn
    response_a: str
    response_b: str
    done: int                            # votes this rater has cast in this evaluation
    total: int                           # done + pairs still open to this rater


@dataclass(frozen=True)
class Reveal:
    """Who was who, shown only after the vote was stored."""
    vote_id: int
    evaluation_id: int
    verdict: str
    outcome: str                         # finetuned | base | tie | both_bad
    model_a: str
    model_b: str

    def describe(self) -> str:
        said = VERDICT_WORDS[self.verdict]
        return f"You voted {said}. A was {self.model_a}; B was {self.model_b}."


@dataclass
class Progress:
    done: int
    total: int
    open_assignment: int | None = None


# -- evaluations ------------------------------------------------------------------------------

def create_evaluation(ws: Workspace, name: str, items: Iterable[EvalItem], *, base_model: str,
                      adapter: str | None = None, run_id: int | str | None = None,
                      dataset_version: int | None = None, overlap: int = 1, guidelines: str = "",
                      settings: dict[str, Any] | None = None, created_by: str | None = None) -> int:
    """Store an evaluation and its pairs in one transaction; returns its id."""
    items = list(items)
    if not items:
        raise TuneloopError("an evaluation needs at least one prompt with both responses")
    if int(overlap) < 1:
        raise TuneloopError(f"raters per pair must be at least 1 (got {overlap})")
    seen: set[str] = set()
    for item in items:
        if item.prompt_id in seen:
            raise TuneloopError(f"prompt '{item.prompt_id}' appears twice; each prompt is rated once per evaluation")
        seen.add(item.prompt_id)
        if not item.messages or item.messages[-1]["role"] != "user":
            raise TuneloopError(f"prompt '{item.prompt_id}' must end with a user turn")
    with ws.transaction() as db:
        eid = db.execute(
            "insert into evaluations (name, run_id, base_model, adapter, dataset_version, overlap, guidelines,"
            " settings, created_by) values (?,?,?,?,?,?,?,?,?)",
            (name.strip() or "evaluation", run_key(ws, run_id), base_model, adapter, dataset_version, int(overlap), guidelines,
             json.dumps(settings or {}, sort_keys=True), created_by)).lastrowid
        rows = [(eid, it.prompt_id, json.dumps(it.messages, ensure_ascii=False), it.label, it.split,
                 it.base_response, it.finetuned_response) for it in items]
        db.executemany(
            "insert into eval_pairs (evaluation_id, prompt_id, messages, label, split, base_response,"
            " finetuned_response, text_key) values (?,?,?,?,?,?,?,?)",
            [(*row, pair_text_key(row[2], row[5], row[6])) for row in rows])
    return eid


def get_evaluation(ws: Workspace, evaluation_id: int | str) -> Evaluation:
    eid = parse_evaluation_id(evaluation_id)
    row = ws.db.execute(
        "select e.*, (select count(*) from eval_pairs p where p.evaluation_id=e.id) as num_pairs,"
        " (select count(*) from eval_votes v join eval_assignments a on a.id=v.assignment_id"
        "  join eval_pairs p on p.id=a.pair_id where p.evaluation_id=e.id) as num_votes"
        " from evaluations e where e.id=?", (eid,)).fetchone()
    if row is None:
        raise TuneloopError(f"there is no evaluation #{eid} in this workspace; `python -m evaluation report` "
                            f"needs the number shown when it was generated")
    return _evaluation_from_row(row)


def list_evaluations(ws: Workspace) -> list[Evaluation]:
    rows = ws.db.execute(
        "select e.*, (select count(*) from eval_pairs p where p.evaluation_id=e.id) as num_pairs,"
        " (select count(*) from eval_votes v join eval_assignments a on a.id=v.assignment_id"
        "  join eval_pairs p on p.id=a.pair_id where p.evaluation_id=e.id) as num_votes"
        " from evaluations e order by e.id desc").fetchall()
    return [_evaluation_from_row(r) for r in rows]


def set_guidelines(ws: Workspace, evaluation_id: int, text: str) -> None:
    get_evaluation(ws, evaluation_id)
    ws.db.execute("update evaluations set guidelines=? where id=?", (text, evaluation_id))


def pair_text_key(messages: str, base_response: str, finetuned_response: str) -> str:
    """What a rater reads of a pair (the conversation, stored as JSON, and the two answers in either order) as
    one hash: two pairs with the same key look the same to a rater, whatever evaluation or sides they have."""
    text = json.dumps([json.loads(messages), sorted((base_response, finetuned_response))], ensure_ascii=False,
                      sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_key(ws: Workspace, run_id: int | str | None) -> int | None:
    """The registry id of the run an evaluation figure is about (3, '3' or '#3'), checked; None for an adapter folder."""
    if run_id is None:
        return None
    text = str(run_id).strip().lstrip("#")
    if not text.isdigit():
        raise TuneloopError(f"'{run_id}' is not a run id; run ids look like 3 (`python -m training list` shows them)")
    if ws.db.execute("select 1 from runs where id=?", (int(text),)).fetchone() is None:
        raise TuneloopError(f"there is no run #{text} in this workspace; `python -m training list` shows the runs")
    return int(text)


def parse_evaluation_id(value: int | str) -> int:
    """Accepts 3, '3' or '#3'."""
    text = str(value).strip().lstrip("#")
    if not text.isdigit():
        raise TuneloopError(f"'{value}' is not an evaluation number; evaluations are numbered like 3")
    return int(text)


def _evaluation_from_row(row: sqlite3.Row) -> Evaluation:
    d = dict(row)
    d["settings"] = json.loads(d["settings"])
    return Evaluation(**d)


# -- issuing pairs ----------------------------------------------------------------------------

def next_pair(ws: Workspace, evaluation_id: int, rater: str) -> BlindPair | None:
    """The pair this rater should judge next, or None when nothing is left for them.

    A pair issued earlier and not yet voted comes back first (leave and resume). Otherwise a pair the
    rater has never seen (nor its texts in another evaluation) that still has fewer than k raters,
    preferring the least-covered pairs, with the fine-tuned answer on a side drawn by a fair coin.
    Issuing happens inside one transaction so two raters cannot both take a pair's last slot.
    """
    rater = _check_rater(rater)
    args = {"evaluation": parse_evaluation_id(evaluation_id), "rater": rater}
    with _writing(ws) as db:
        state = _rater_state(db, args)
        if state["open_id"] is not None:
            assignment_id, done = state["open_id"], state["issued"] - 1
            remaining = _count_open_pairs(db, args) + 1
        else:
            pick = db.execute(_PICK_PAIR, args).fetchone()
            if pick["pair_id"] is None:
                return None
            assignment_id = db.execute(
                "insert into eval_assignments (pair_id, rater, finetuned_side) values (?,?,?)",
                (pick["pair_id"], rater, secrets.choice(SIDES))).lastrowid
            done, remaining = state["issued"], pick["open"]
    return _blind_pair(ws.db, assignment_id, done=done, total=done + remaining)


def issued_pair(ws: Workspace, assignment_id: int, rater: str) -> BlindPair:
    """An already issued, not yet voted pair again (a page reload), for the rater it was issued to."""
    rater = _check_rater(rater)
    row = ws.db.execute("select a.rater, p.evaluation_id, v.id as vote_id from eval_assignments a"
                        " join eval_pairs p on p.id=a.pair_id left join eval_votes v on v.assignment_id=a.id"
                        " where a.id=?", (assignment_id,)).fetchone()
    if row is None or row["rater"] != rater:
        raise VoteRefused("this pair was not issued to you; press Start to get your next pair")
    if row["vote_id"] is not None:
        raise VoteRefused("you have already voted on this pair")
    progress = rater_progress(ws, row["evaluation_id"], rater)
    return _blind_pair(ws.db, assignment_id, done=progress.done, total=progress.total)


def rater_progress(ws: Workspace, evaluation_id: int, rater: str) -> Progress:
    """Votes cast by this rater, and how many pairs they can still get (their open one included)."""
    rater = _check_rater(rater)
    args = {"evaluation": parse_evaluation_id(evaluation_id), "rater": rater}
    db = ws.db
    state = _rater_state(db, args)
    is_open = state["open_id"] is not None
    done = state["issued"] - is_open
    return Progress(done=done, total=done + _count_open_pairs(db, args) + is_open, open_assignment=state["open_id"])


def release_stale_assignments(ws: Workspace, evaluation_id: int, *, older_than_hours: float = 24) -> int:
    """Free the slots of pairs issued long ago and never voted on (a rater who left for good); returns how many.

    With an overlap k, such a pair would otherwise never reach k raters. A rater who comes back gets a
    fresh pair; a vote on the released one is refused as not issued.
    """
    eid = get_evaluation(ws, evaluation_id).id
    with _writing(ws) as db:
        return db.execute(
            "delete from eval_assignments where id in (select a.id from eval_assignments a"
            " join eval_pairs p on p.id=a.pair_id left join eval_votes v on v.assignment_id=a.id"
            " where p.evaluation_id=? and v.id is null and a.issued_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?))",
            (eid, f"-{float(older_than_hours)} hours")).rowcount


_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _writing(ws: Workspace) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes its turn on this process's lock for the workspace first.

    SQLite's busy handler retries a locked database after sleeps that grow to 100 ms; with 50 raters
    voting back to back most of a vote's time went there. A waiter on the lock starts the moment the
    writer before it commits. Other processes (the CLI) still meet the busy timeout.
    """
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.setdefault(str(ws.db_path), threading.Lock())
    with lock, ws.transaction() as db:
        yield db


# This rater in one evaluation: whether it exists, the pair issued and not yet voted on, and how many
# pairs were issued to them (votes + the open one). Everything goes through the (rater, pair) index.
_RATER_STATE = (
    "select e.id, (select a.id from eval_assignments a join eval_pairs p on p.id=a.pair_id"
    "  left join eval_votes v on v.assignment_id=a.id"
    "  where a.rater=:rater and p.evaluation_id=e.id and v.id is null order by a.id limit 1) as open_id,"
    " (select count(*) from eval_assignments a join eval_pairs p on p.id=a.pair_id"
    "  where a.rater=:rater and p.evaluation_id=e.id) as issued"
    " from evaluations e where e.id=:evaluation")

# Pairs this rater may still get, with their raters so far: not given to them, a slot free, and not the texts
# of a pair they were given in another evaluation (filtered in SQLite: building Python rows for every pair
# was most of a vote's time with 50 raters).
_OPEN_PAIRS = (
    "select p.id, count(a.id) as n from eval_pairs p left join eval_assignments a on a.pair_id=p.id"
    " where p.evaluation_id=:evaluation and p.text_key not in (select q.text_key from eval_assignments s"
    "  join eval_pairs q on q.id=s.pair_id where s.rater=:rater and q.evaluation_id != :evaluation"
    "  and q.text_key is not null)"
    " group by p.id having coalesce(sum(a.rater = :rater), 0) = 0"
    " and count(a.id) < (select overlap from evaluations where id=:evaluation)")

# How many pairs are open to the rater, and one of the least-covered ones at random (SQLite's random()
# only orders the pairs; the side comes from ``secrets``).
_PICK_PAIR = (f"with open as materialized ({_OPEN_PAIRS}) select (select count(*) from open) as open,"
              " (select id from open where n = (select min(n) from open) order by random() limit 1) as pair_id")


def _rater_state(db: sqlite3.Connection, args: dict[str, Any]) -> sqlite3.Row:
    state = db.execute(_RATER_STATE, args).fetchone()
    if state is None:
        raise TuneloopError(f"there is no evaluation #{args['evaluation']} in this workspace; choose one from "
                            f"the list (an admin prepares them in the Results tab)")
    return state


def _count_open_pairs(db: sqlite3.Connection, args: dict[str, Any]) -> int:
    return db.execute(f"select count(*) from ({_OPEN_PAIRS})", args).fetchone()[0]


def _blind_pair(db: sqlite3.Connection, assignment_id: int, *, done: int, total: int) -> BlindPair:
    row = db.execute(
        "select a.finetuned_side, p.evaluation_id, p.messages, p.base_response, p.finetuned_response"
        " from eval_assignments a join eval_pairs p on p.id=a.pair_id where a.id=?", (assignment_id,)).fetchone()
    messages = json.loads(row["messages"])
    if row["finetuned_side"] == "A":
        text_a, text_b = row["finetuned_response"], row["base_response"]
    else:
        text_a, text_b = row["base_response"], row["finetuned_response"]
    return BlindPair(assignment_id=assignment_id, evaluation_id=row["evaluation_id"], context=messages[:-1],
                     prompt=messages[-1]["content"], response_a=text_a, response_b=text_b, done=done, total=total)


def _check_rater(rater: str | None) -> str:
    name = (rater or "").strip()
    if not name:
        raise VoteRefused("type your name (or sign in) before rating, so your votes count once and as yours")
    return name


# -- votes ------------------------------------------------------------------------------------

def record_vote(ws: Workspace, assignment_id: int, rater: str, verdict: str, *, comment: str = "",
                corrected_answer: str | None = None) -> Reveal:
    """Store one vote after checking, on the server, that it may be cast; then reveal the sides.

    Refused (``VoteRefused``) when the pair was not issued to this rater, was already voted on, or
    the verdict is not one of A, B, tie, both_bad, or the comment or corrected answer is longer than
    ``MAX_TEXT_CHARS``. Check and insert share one transaction.
    """
    rater = _check_rater(rater)
    if verdict not in VERDICTS:
        raise VoteRefused(f"'{verdict}' is not a verdict; choose A, B, tie or both_bad")
    for what, text in (("comment", comment), ("corrected answer", corrected_answer)):
        if len(text or "") > MAX_TEXT_CHARS:
            raise VoteRefused(f"the {what} has {len(text):,} characters; keep it under {MAX_TEXT_CHARS:,} "
                              f"(the vote was not counted)")
    corrected = (corrected_answer or "").strip() or None
    with _writing(ws) as db:
        row = db.execute(
            "select a.rater, a.finetuned_side, p.evaluation_id, e.run_id, e.base_model, v.id as vote_id"
            " from eval_assignments a join eval_pairs p on p.id=a.pair_id join evaluations e on e.id=p.evaluation_id"
            " left join eval_votes v on v.assignment_id=a.id where a.id=?", (int(assignment_id),)).fetchone()
        if row is None or row["rater"] != rater:
            raise VoteRefused("this pair was not issued to you, so the vote was not counted")
        if row["vote_id"] is not None:
            raise VoteRefused("you have already voted on this pair; each rater votes once per pair")
        outcome = verdict_outcome(verdict, row["finetuned_side"])
        vote_id = db.execute(
            "insert into eval_votes (assignment_id, verdict, outcome, comment, corrected_answer) values (?,?,?,?,?)",
            (int(assignment_id), verdict, outcome, (comment or "").strip(), corrected)).lastrowid
    ft, base = finetuned_name(row["run_id"]), base_name(row["base_model"])
    model_a, model_b = (ft, base) if row["finetuned_side"] == "A" else (base, ft)
    return Reveal(vote_id=vote_id, evaluation_id=row["evaluation_id"], verdict=verdict, outcome=outcome,
                  model_a=model_a, model_b=model_b)


def verdict_outcome(verdict: str, finetuned_side: str) -> str:
    """A verdict on sides (A/B/tie/both_bad) in the models' terms (finetuned/base/tie/both_bad)."""
    if verdict in ("tie", "both_bad"):
        return verdict
    return "finetuned" if verdict == finetuned_side else "base"


@dataclass(frozen=True)
class VoteRow:
    """A stored vote with everything feedback and statistics need (server side only)."""
    vote_id: int
    pair_id: int
    evaluation_id: int
    prompt_id: str
    rater: str
    verdict: str
    outcome: str
    finetuned_side: str
    comment: str
    corrected_answer: str | None
    label: str | None
    voted_at: str

    def to_stats_row(self) -> dict[str, Any]:
        """The shape ``python -m evaluation stats`` reads (one JSON object per line)."""
        return {"prompt_id": self.prompt_id, "rater": self.rater, "verdict": self.outcome,
                "finetuned_side": self.finetuned_side, "label": self.label}


def evaluation_votes(ws: Workspace, evaluation_id: int) -> list[VoteRow]:
    eid = get_evaluation(ws, evaluation_id).id
    rows = ws.db.execute(
        "select v.id as vote_id, p.id as pair_id, p.evaluation_id, p.prompt_id, a.rater, v.verdict, v.outcome,"
        " a.finetuned_side, v.comment, v.corrected_answer, p.label, v.voted_at from eval_votes v"
        " join eval_assignments a on a.id=v.assignment_id join eval_pairs p on p.id=a.pair_id"
        " where p.evaluation_id=? order by v.id", (eid,)).fetchall()
    return [VoteRow(**dict(r)) for r in rows]


def raters(ws: Workspace, evaluation_id: int) -> list[str]:
    return [r[0] for r in ws.db.execute(
        "select distinct a.rater from eval_assignments a join eval_pairs p on p.id=a.pair_id"
        " where p.evaluation_id=? order by a.rater", (evaluation_id,))]
