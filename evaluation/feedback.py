"""Votes become data: preference versions, corrected answers, and prompts that still need an answer.

``collect_feedback`` only computes what the votes amount to; views call it and write nothing. The
explicit actions write, once, through curation's API:

- ``make_preference_version``: decisive votes → an immutable *preference* dataset version (prompt
  messages, ``chosen`` and ``rejected`` assistant turns, provenance in meta), what a DPO run names.
- ``make_kto_version``: every answer a vote judged, on its own → an immutable *KTO* version (prompt,
  ``completion``, ``desirable``), what a KTO run names. A decisive vote makes its winner desirable and
  the other answer undesirable; "both bad" makes both undesirable, so the votes DPO cannot use (most
  of them, in practice) still train; a corrected answer is a desirable example too. A tie says
  neither answer is good or bad, and is counted (``ties_unused``) but not used.
- ``merge_feedback``: corrected answers and answered requests → a new SFT version, the current one
  plus those records (step "feedback").
- Both-bad pairs nobody corrected are asked for in curation's answer requests (origin
  ``evaluation N``) by either action; an answer given there becomes an SFT record at the next merge.

An evaluation of more than two arms (base, prompted base, round 1, round 2, …) feeds back every pair of
arms it compared: a preference pair says which arm's answer beat which (``chosen_arm``, ``rejected_arm``;
``chosen_model`` is ``finetuned`` for the pair's later arm, ``base`` for its earlier one, as in a two-arm
evaluation). An answer that several pairs of arms showed is one KTO example, judged by every vote on those
pairs (two arms that gave the same text give one answer); a prompt needs an answer once, however many of
its pairs were both bad; one correction text per prompt is one record. Gold pairs (they test the raters) and
repeats (a pair shown again with the sides swapped) never become data: the votes are
``evaluation.arena.evaluation_votes``'s, one per rater, prompt and pair of arms.

Raters who disagree on a pair (one prefers one arm's answer, another the other's, a tie or
both bad) are handled by a policy: ``majority`` keeps the side with more decisive votes and excludes
exact splits; ``unanimous`` keeps only pairs every rater who saw them voted the same side for. A pair
whose two answers are the same text (whitespace aside) is never a preference. The version records
the policy in its params. Everything carries provenance (evaluation, run, vote ids, raters), and the
evaluation a version came from is a row of ``feedback_versions``. A record keeps the split of the
prompt it answers, so a test prompt's correction never leaks into train and its preference pair is
left out of DPO.

Example::

    fb = collect_feedback(ws, 3, policy="unanimous")     # nothing written
    prefs = make_preference_version(ws, 3, created_by="ana")
    version = merge_feedback(ws, 3, created_by="ana")
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import Record
from curation.data.versions import (Version, content_hash, create_version, export_version, get_version, load_records,
                                    require_current)
from curation.review.answer_requests import AnswerRequest, answer_request, answer_requests, answered_records, \
    request_answers
from curation.review.labels import DEFAULT_LABEL_FIELD, label_field
from evaluation.arena import VoteRow, evaluation_votes, get_evaluation

POLICIES = ("majority", "unanimous")


@dataclass(frozen=True)
class PairInfo:
    """One voted pair of arms on one prompt; its votes' ``base`` outcome is the first arm, ``finetuned`` the second."""
    pair_id: int
    prompt_id: str
    messages: list[dict[str, str]]
    first_arm: str
    second_arm: str
    first_response: str
    second_response: str
    label: str | None
    split: str | None
    label_field: str = "label"       # the meta field the label came from, where feedback records keep it

    def arm(self, model: str) -> str:
        """The arm behind a vote outcome's side: ``base`` (the first arm) or ``finetuned`` (the second)."""
        return self.first_arm if model == "base" else self.second_arm

    def response(self, model: str) -> str:
        return self.first_response if model == "base" else self.second_response


@dataclass
class Feedback:
    evaluation_id: int
    run_id: int | None
    policy: str
    preference_pairs: list[dict[str, Any]] = field(default_factory=list)
    corrections: list[Record] = field(default_factory=list)
    needs_answer: list[Record] = field(default_factory=list)   # prompts to ask answers for, provenance in meta
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    identical_answers: list[int] = field(default_factory=list)   # voted pairs left out: both answers the same text
    kto: list[Record] = field(default_factory=list)             # answers judged on their own: desirable or not
    kto_excluded: int = 0                                        # answers whose votes were split (policy)
    ties_unused: int = 0                                         # tie votes: no answer judged good or bad

    def counts(self) -> dict[str, int]:
        return {"preference_pairs": len(self.preference_pairs), "corrected": len(self.corrections),
                "kto_examples": len(self.kto), "kto_desirable": sum(1 for r in self.kto if r.desirable),
                "kto_excluded": self.kto_excluded, "ties_unused": self.ties_unused,
                "needs_answer": len(self.needs_answer), "identical_answers": len(self.identical_answers),
                "disagreements": len(self.disagreements),
                "disagreements_excluded": sum(1 for d in self.disagreements if d["resolution"] == "excluded")}


def collect_feedback(ws: Workspace, evaluation_id: int, *, policy: str = "majority") -> Feedback:
    """What the votes of one evaluation amount to, computed from the stored votes on every pair of its arms
    (nothing written)."""
    if policy not in POLICIES:
        raise TuneloopError(f"unknown disagreement policy '{policy}'; choose majority or unanimous")
    evaluation = get_evaluation(ws, evaluation_id)
    pairs = _pairs(ws, evaluation.id)
    votes_by_pair = _votes_by_pair(ws, evaluation.id, pairs)
    fb = Feedback(evaluation_id=evaluation.id, run_id=evaluation.run_id, policy=policy)
    corrected: dict[tuple[str, str], Record] = {}
    for pair_id, votes in votes_by_pair.items():
        pair = pairs[pair_id]
        for v in votes:
            if v.corrected_answer:
                key = (pair.prompt_id, " ".join(v.corrected_answer.split()))
                if key in corrected:
                    corrected[key].meta.setdefault("same_correction_votes", []).append(v.vote_id)
                else:
                    corrected[key] = _correction_record(evaluation.id, evaluation.run_id, pair, v)
        if same_answer(pair.second_response, pair.first_response):
            preference, disagreement = None, None
            if any(v.outcome in ("finetuned", "base") for v in votes):
                fb.identical_answers.append(pair_id)
        else:
            preference, disagreement = _preference(pair, votes, policy, evaluation.run_id)
        if preference:
            preference["meta"] = {**_provenance(evaluation.id, evaluation.run_id, pair), **preference["meta"]}
            fb.preference_pairs.append(preference)
        if disagreement:
            fb.disagreements.append(disagreement)
        fb.ties_unused += sum(1 for v in votes if v.outcome == "tie")
    fb.corrections = list(corrected.values())
    fb.kto, fb.kto_excluded = _kto_examples(evaluation.id, evaluation.run_id, pairs, votes_by_pair, policy)
    fb.kto += [_kto_correction(r, pairs) for r in fb.corrections]
    fb.needs_answer = _needs_answer(evaluation.id, evaluation.run_id, pairs, votes_by_pair)
    return fb


def origin(evaluation_id: int) -> str:
    """The name under which an evaluation's prompts are asked for answers in curation's queue."""
    return f"evaluation {int(evaluation_id)}"


# -- prompts that need an answer --------------------------------------------------------------

def request_missing_answers(ws: Workspace, evaluation_id: int) -> list[AnswerRequest]:
    """Ask curation for answers to the evaluation's both-bad, uncorrected prompts; returns the open requests.

    A pair answered before (under any record id) is not asked for again."""
    fb = collect_feedback(ws, evaluation_id)
    request_answers(ws, origin(fb.evaluation_id), unanswered(ws, fb), provenance={"source": "feedback"})
    return answer_requests(ws, origin(fb.evaluation_id))


def unanswered(ws: Workspace, fb: Feedback) -> list[Record]:
    """The prompts of ``fb`` that still need an answer: those not answered in curation's queue (reads only)."""
    answered = {r.meta.get("pair_id") for r in answer_requests(ws, origin(fb.evaluation_id), answered=True)}
    return [r for r in fb.needs_answer if r.meta["pair_id"] not in answered]


def answer_needed(ws: Workspace, evaluation_id: int, record_id: str, answer: str, *,
                  answered_by: str | None = None) -> None:
    """Answer one of the evaluation's prompts (asking for it first); it becomes an SFT record at the next merge."""
    requests = {r.record_id: r for r in request_missing_answers(ws, evaluation_id)}
    if record_id not in requests:
        raise TuneloopError(f"prompt '{record_id}' does not need an answer in evaluation #{evaluation_id} "
                            f"(it was corrected or answered already); refresh the queue")
    answer_request(ws, requests[record_id].id, answer, answered_by=answered_by)


# -- preference versions ----------------------------------------------------------------------

def make_preference_version(ws: Workspace, evaluation_id: int, *, policy: str = "majority",
                            created_by: str | None = None) -> Version:
    """An immutable preference version from the evaluation's decisive votes (the policy in its params).

    Its parent is the version the prompts came from. Made again from the same votes and policy, the
    version made before is returned instead of a copy."""
    fb = collect_feedback(ws, evaluation_id, policy=policy)
    evaluation = get_evaluation(ws, fb.evaluation_id)
    request_missing_answers(ws, evaluation.id)
    if not fb.preference_pairs:
        raise TuneloopError(f"evaluation #{evaluation.id} has no decided pair yet ({policy} policy): preference "
                            f"pairs come from votes for one side (A or B); rate more pairs or try the majority policy")
    records = [Record(id=f"fb{evaluation.id}-pair{p['meta']['pair_id']}", messages=p["prompt"], meta=p["meta"],
                      chosen=p["chosen"], rejected=p["rejected"]) for p in fb.preference_pairs]
    digest = content_hash(records)
    before = ws.db.execute("select v.id from dataset_versions v join feedback_versions f on f.version_id=v.id"
                           " where f.evaluation_id=? and f.kind='preferences' and v.content_hash=?",
                           (evaluation.id, digest)).fetchone()
    if before is not None:
        return get_version(ws, before[0])
    parent = evaluation.dataset_version
    if parent is not None and ws.db.execute("select 1 from dataset_versions where id=?", (parent,)).fetchone() is None:
        parent = None
    counts: dict[str, int] = {}
    for p in fb.preference_pairs:        # "run 3 over base": which arm's answer was chosen over which
        key = f"{p['meta']['chosen_arm']} over {p['meta']['rejected_arm']}"
        counts[key] = counts.get(key, 0) + 1
    counts["disagreements_excluded"] = fb.counts()["disagreements_excluded"]
    version = create_version(ws, records, parent=parent, step="preferences",
                             params={"evaluation": evaluation.id, "run": evaluation.run_id, "policy": policy},
                             counts=counts, note=f"preference pairs from evaluation #{evaluation.id} ({evaluation.name})",
                             created_by=created_by, also=_feedback_row(evaluation.id, "preferences", policy))
    return version


def export_preferences(ws: Workspace, evaluation_id: int, out: str | Path | None = None, *, policy: str = "majority",
                       created_by: str | None = None, single_file: bool = False) -> Version:
    """Make the evaluation's preference version and, when ``out`` is given, write it as JSONL in trl's
    prompt/chosen/rejected shape (with id and meta); returns the version.

    Pairs keep the split of their prompt, so ``out`` is a folder or a .zip / .tar.gz of ``train.jsonl``,
    ``validation.jsonl``, ``test.jsonl``; a file ``out.jsonl`` holds them all only when no pair has a split
    or ``single_file`` is asked for (Tuneloop's DPO reads meta.split from it; trl would train on all)."""
    version = make_preference_version(ws, evaluation_id, policy=policy, created_by=created_by)
    if out is not None:
        export_version(ws, version.id, out, "jsonl", single_file=single_file)
    return version


# -- KTO versions -----------------------------------------------------------------------------

def make_kto_version(ws: Workspace, evaluation_id: int, *, policy: str = "majority",
                     created_by: str | None = None) -> Version:
    """An immutable KTO version from every answer the evaluation's votes judged (the policy in its params).

    Its parent is the version the prompts came from; examples keep their prompt's split, so a KTO run
    leaves test prompts out. Made again from the same votes and policy, the version made before is
    returned instead of a copy."""
    fb = collect_feedback(ws, evaluation_id, policy=policy)
    evaluation = get_evaluation(ws, fb.evaluation_id)
    request_missing_answers(ws, evaluation.id)
    if not fb.kto:
        raise TuneloopError(f"evaluation #{evaluation.id} has no judged answer yet ({policy} policy): KTO examples "
                            f"come from votes for one side, 'both bad' votes and corrected answers ({fb.ties_unused} "
                            f"ties say neither answer is good or bad); rate more pairs")
    digest = content_hash(fb.kto)
    before = ws.db.execute("select id from dataset_versions where kind='kto' and step='kto' and content_hash=?",
                           (digest,)).fetchone()
    if before is not None:
        return get_version(ws, before[0])
    parent = evaluation.dataset_version
    if parent is not None and ws.db.execute("select 1 from dataset_versions where id=?", (parent,)).fetchone() is None:
        parent = None
    good = sum(1 for r in fb.kto if r.desirable)
    counts = {"desirable": good, "undesirable": len(fb.kto) - good,
              "from_test_prompts": sum(1 for r in fb.kto if r.split == "test"), "excluded": fb.kto_excluded,
              "ties_unused": fb.ties_unused}
    return create_version(ws, fb.kto, parent=parent, step="kto",
                          params={"evaluation": evaluation.id, "run": evaluation.run_id, "policy": policy},
                          counts=counts, note=f"KTO examples from evaluation #{evaluation.id} ({evaluation.name}); "
                                              f"those from test prompts are left out of training",
                          created_by=created_by, also=_feedback_row(evaluation.id, "kto", policy))


def export_kto(ws: Workspace, evaluation_id: int, out: str | Path | None = None, *, policy: str = "majority",
               created_by: str | None = None, single_file: bool = False) -> Version:
    """Make the evaluation's KTO version and, when ``out`` is given, write it as JSONL in trl's unpaired
    prompt/completion/label shape (with id and meta), a file per split as ``export_preferences`` does."""
    version = make_kto_version(ws, evaluation_id, policy=policy, created_by=created_by)
    if out is not None:
        export_version(ws, version.id, out, "jsonl", single_file=single_file)
    return version


# -- merge ------------------------------------------------------------------------------------

def feedback_records(ws: Workspace, evaluation_id: int, *, policy: str = "majority") -> list[Record]:
    """The SFT records the evaluation's feedback adds: corrected answers, then answered requests."""
    fb = collect_feedback(ws, evaluation_id, policy=policy)
    return list(fb.corrections) + answered_records(ws, origin(fb.evaluation_id))


def merge_feedback(ws: Workspace, evaluation_id: int, *, policy: str = "majority",
                   created_by: str | None = None) -> Version:
    """A new dataset version: the current one plus the feedback records not merged before."""
    evaluation = get_evaluation(ws, evaluation_id)
    open_requests = request_missing_answers(ws, evaluation.id)
    current = require_current(ws)
    existing = load_records(ws, current.id)
    have = {r.id for r in existing}
    new = [r for r in feedback_records(ws, evaluation.id, policy=policy) if r.id not in have]
    if not new:
        raise TuneloopError(f"evaluation #{evaluation.id} has nothing new to merge into {current.name}: no corrected "
                            f"answers or answered prompts beyond those already merged")
    fb = collect_feedback(ws, evaluation.id, policy=policy)
    where = destinations(new)
    counts = {"added": len(new),
              "corrected": sum(1 for r in new if r.meta.get("kind") == "correction"),
              "answered": sum(1 for r in new if r.meta.get("kind") == "needs_answer"),
              **{f"into_{split}": n for split, n in where.items()},
              "preference_pairs": len(fb.preference_pairs),
              "needs_answer_open": len(open_requests),
              "disagreements_excluded": fb.counts()["disagreements_excluded"]}
    params = {"evaluation": evaluation.id, "run": evaluation.run_id, "policy": policy}
    version = create_version(ws, existing + new, parent=current.id, step="feedback", params=params, counts=counts,
                             note=f"feedback from evaluation #{evaluation.id} ({evaluation.name}): "
                                  f"{where_text(where)}",
                             created_by=created_by, also=_feedback_row(evaluation.id, "corrections", policy))
    return version


def destinations(records: list[Record]) -> dict[str, int]:
    """How many of the merged records went into each split (``none``: the version has no splits)."""
    out: dict[str, int] = {}
    for record in records:
        out[record.split or "none"] = out.get(record.split or "none", 0) + 1
    return out


WHY = {"train": "they answer prompts from the train split (rated to improve), so the next SFT run learns them",
       "val": "they answer val prompts, so they only measure the next run's validation loss",
       "test": "they answer test prompts (rated to measure), so they stay in test and never train; rate prompts "
               "from the train split, typed prompts or production requests to improve",
       "none": "the version has no splits yet; the next split decides where they go"}


def where_text(where: dict[str, int]) -> str:
    """Where each merged record went and why, in one sentence per split."""
    return " ".join(f"{n} into {split if split != 'none' else 'no split'}: {WHY[split]}."
                    for split, n in sorted(where.items()))


def _feedback_row(evaluation_id: int, kind: str, policy: str):
    """The ``also`` statement for ``create_version``: the new version's ``feedback_versions`` row, written in
    the version's own transaction so that no feedback version exists without it."""
    def insert(db, version_id: int) -> None:
        db.execute("insert into feedback_versions (version_id, evaluation_id, kind, policy) values (?,?,?,?)",
                   (version_id, evaluation_id, kind, policy))
    return insert


# -- helpers ----------------------------------------------------------------------------------

def same_answer(a: str, b: str) -> bool:
    """Whether two answers are the same text once runs of whitespace are made one space."""
    return " ".join(a.split()) == " ".join(b.split())


def _pairs(ws: Workspace, evaluation_id: int) -> dict[int, PairInfo]:
    """The evaluation's pairs of arms by id, in the order they were made (gold pairs test raters: left out)."""
    rows = ws.db.execute("select p.*, f.name as first_name, s.name as second_name from eval_pairs p"
                         " join eval_arms f on f.id=p.first_arm join eval_arms s on s.id=p.second_arm"
                         " where p.evaluation_id=? and p.gold=0 order by p.id", (evaluation_id,)).fetchall()
    version = get_evaluation(ws, evaluation_id).dataset_version
    key = (label_field(ws, version) if version else None) or DEFAULT_LABEL_FIELD
    return {r["id"]: PairInfo(pair_id=r["id"], prompt_id=r["prompt_id"], messages=json.loads(r["messages"]),
                              first_arm=r["first_name"], second_arm=r["second_name"],
                              first_response=r["first_response"], second_response=r["second_response"],
                              label=r["label"], split=r["split"], label_field=key) for r in rows}


def _votes_by_pair(ws: Workspace, evaluation_id: int, pairs: dict[int, PairInfo]) -> dict[int, list[VoteRow]]:
    """Each voted pair's votes (pairs in id order), the pair's first arm as ``base`` and its second as
    ``finetuned``; ``evaluation_votes`` leaves out gold pairs and repeats."""
    by_pair: dict[int, list[VoteRow]] = defaultdict(list)
    for arms in dict.fromkeys((p.first_arm, p.second_arm) for p in pairs.values()):
        for vote in evaluation_votes(ws, evaluation_id, arms=arms):
            pair = pairs.get(vote.pair_id)
            if pair is not None and (pair.first_arm, pair.second_arm) == arms:
                by_pair[vote.pair_id].append(vote)
    return {pair_id: by_pair[pair_id] for pair_id in sorted(by_pair)}


def _provenance(evaluation_id: int, run_id: int | None, pair: PairInfo) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": "feedback", "evaluation": evaluation_id, "run": run_id,
                            "prompt_id": pair.prompt_id}
    if pair.label is not None:
        meta[pair.label_field] = pair.label
    if pair.split is not None:
        meta["split"] = pair.split
    return meta


def _correction_record(evaluation_id: int, run_id: int | None, pair: PairInfo, vote: VoteRow) -> Record:
    meta = _provenance(evaluation_id, run_id, pair)
    meta.update({"from_vote": vote.vote_id, "rater": vote.rater, "kind": "correction", "pair_id": pair.pair_id,
                 "arms": [pair.first_arm, pair.second_arm]})
    return Record(id=f"fb{evaluation_id}-v{vote.vote_id}",
                  messages=pair.messages + [{"role": "assistant", "content": vote.corrected_answer}], meta=meta)


def _kto_correction(correction: Record, pairs: dict[int, PairInfo]) -> Record:
    """A corrected answer as a desirable KTO example of its own."""
    pair = pairs[correction.meta["pair_id"]]
    meta = {k: v for k, v in correction.meta.items() if k not in ("kind", "arms")}
    meta.update({"kind": "kto", "answer_model": "correction"})
    return Record(f"fb{meta['evaluation']}-kto-v{meta['from_vote']}", pair.messages, meta,
                  completion=[correction.messages[-1]], desirable=True)


def _needs_answer(evaluation_id: int, run_id: int | None, pairs: dict[int, PairInfo],
                  votes_by_pair: dict[int, list[VoteRow]]) -> list[Record]:
    """One record per prompt that some pair's vote called both bad and no vote on any of its pairs corrected."""
    by_prompt: dict[str, list[tuple[PairInfo, list[VoteRow]]]] = defaultdict(list)
    for pair_id, votes in votes_by_pair.items():
        by_prompt[pairs[pair_id].prompt_id].append((pairs[pair_id], votes))
    out = []
    for shown in by_prompt.values():
        if any(v.corrected_answer for _, votes in shown for v in votes):
            continue
        bad = [(pair, v) for pair, votes in shown for v in votes if v.outcome == "both_bad"]
        if not bad:
            continue
        pair = bad[0][0]
        meta = _provenance(evaluation_id, run_id, pair)
        meta.update({"pair_id": pair.pair_id, "from_votes": [v.vote_id for _, v in bad],
                     "raters": sorted({v.rater for _, v in bad}), "kind": "needs_answer"})
        out.append(Record(id=f"fb{evaluation_id}-p{pair.pair_id}", messages=pair.messages, meta=meta))
    return out


@dataclass
class _Judged:
    """One answer to one prompt (its text, whichever arms gave it) and the votes that judged it good or bad."""
    pair: PairInfo                      # the first pair a vote judged it on
    model: str                          # its side in that pair: base, finetuned, or same (both answers this text)
    arms: set[str] = field(default_factory=set)
    good: list[VoteRow] = field(default_factory=list)
    bad: list[VoteRow] = field(default_factory=list)


def _kto_examples(evaluation_id: int, run_id: int | None, pairs: dict[int, PairInfo],
                  votes_by_pair: dict[int, list[VoteRow]], policy: str) -> tuple[list[Record], int]:
    """Each answer the votes judged, as a KTO example, and how many answers the policy excluded.

    An answer is desirable when a vote chose it, undesirable when a vote chose the other answer of its pair or
    called both bad; the votes of every pair of arms that showed the same answer (the same text to the same
    prompt) judge it together, and raters who disagree on it are resolved by the policy as for preference
    pairs (majority: the larger side, a split excluded; unanimous: all or excluded). Two answers of a pair
    with the same text are one answer, which only "both bad" judges."""
    judged: dict[tuple[str, str], _Judged] = {}
    for pair_id, votes in votes_by_pair.items():
        pair = pairs[pair_id]
        identical = same_answer(pair.second_response, pair.first_response)
        models = ("finetuned",) if identical else ("finetuned", "base")
        for model in models:
            good = [] if identical else [v for v in votes if v.outcome == model]
            bad = [v for v in votes if v.outcome == "both_bad" or (not identical and v.outcome == OTHER[model])]
            if not good and not bad:
                continue
            key = (pair.prompt_id, " ".join(pair.response(model).split()))
            answer = judged.setdefault(key, _Judged(pair, "same" if identical else model))
            answer.arms.update((pair.first_arm, pair.second_arm) if identical else (pair.arm(model),))
            answer.good += good
            answer.bad += bad
    examples, excluded = [], 0
    for answer in judged.values():
        good, bad = answer.good, answer.bad
        if (good and bad) and (policy == "unanimous" or len(good) == len(bad)):
            excluded += 1
            continue
        support = good if len(good) > len(bad) else bad
        pair, model = answer.pair, "finetuned" if answer.model == "same" else answer.model
        meta = _provenance(evaluation_id, run_id, pair)
        meta.update({"pair_id": pair.pair_id, "kind": "kto", "answer_model": answer.model,
                     "arms": sorted(answer.arms), "vote_ids": [v.vote_id for v in support],
                     "raters": sorted({v.rater for v in support}),
                     "resolution": "majority" if good and bad else "unanimous"})
        examples.append(Record(f"fb{evaluation_id}-kto{pair.pair_id}-{model}", pair.messages, meta,
                               completion=[{"role": "assistant", "content": pair.response(model)}],
                               desirable=support is good))
    return examples, excluded


OTHER = {"finetuned": "base", "base": "finetuned"}   # a vote for one answer of a pair judges the other one bad


def _preference(pair: PairInfo, votes: list[VoteRow], policy: str,
                run_id: int | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The pair's preference (or None) and, when its raters did not all give the same vote, the disagreement.

    A pair is unanimous only when every rater who saw it voted for the same side: a tie or both-bad
    from any of them makes it a disagreement, which the unanimous policy excludes."""
    ft = [v for v in votes if v.outcome == "finetuned"]
    base = [v for v in votes if v.outcome == "base"]
    if not ft and not base:
        return None, None
    conflict = len({v.outcome for v in votes}) > 1
    if conflict and (policy == "unanimous" or len(ft) == len(base)):
        winner = None
    else:
        winner = "finetuned" if len(ft) > len(base) else "base"
    resolution = "excluded" if winner is None else ("majority" if conflict else "unanimous")
    disagreement = None
    if conflict:
        disagreement = {"pair_id": pair.pair_id, "prompt_id": pair.prompt_id, "prompt": pair.messages[-1]["content"],
                        "arms": [pair.first_arm, pair.second_arm],
                        "votes": {v.rater: pair.arm(v.outcome) if v.outcome in OTHER else v.outcome for v in votes},
                        "resolution": resolution, "chosen": winner and pair.arm(winner)}
    if winner is None:
        return None, disagreement
    support = ft if winner == "finetuned" else base
    preference = {"prompt": pair.messages,
                  "chosen": [{"role": "assistant", "content": pair.response(winner)}],
                  "rejected": [{"role": "assistant", "content": pair.response(OTHER[winner])}],
                  "meta": {"pair_id": pair.pair_id, "prompt_id": pair.prompt_id, "run": run_id,
                           "chosen_model": winner, "chosen_arm": pair.arm(winner),
                           "rejected_arm": pair.arm(OTHER[winner]), "vote_ids": [v.vote_id for v in support],
                           "raters": sorted({v.rater for v in support}), "resolution": resolution}}
    return preference, disagreement
