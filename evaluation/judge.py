"""An automatic pairwise judge, calibrated on the experts' votes before it may stand in for them.

The judge reads the same pairs the raters saw, blind (``JUDGE_PROMPT``: the evaluation's guidelines, the
conversation and the two answers labelled A and B; no arm is named) and side-swapped: every pair twice, once
with the first arm's answer as A ("first") and once with it as B ("swapped"). A pair's verdict is an arm
only when both orders name that arm; both orders saying tie is a tie; one order naming an arm and the other
tie is a tie ("one-sided"); two orders naming different arms, which happens when the judge follows the
side rather than the answer, is a tie counted as "flipped" (position bias), and reported.

Judges:

- a local model, any base that ``training.inference.warm_base`` loads ("default" is SmolLM2-135M-Instruct):
  its verdict is read from the next-token likelihoods of "A", "B" and "tie" after the prompt (the model's
  transformers weights, as scoring code gets them from ``WarmBase.using``), so even a small model gives a
  verdict every time; the score is the verdict's probability among the three;
- an OpenAI-compatible endpoint (``endpoint:URL#MODEL``, URL as the ``/v1`` base, the key from an
  environment variable named by the caller): asked for one word at temperature 0; the likelihoods are read
  when the server returns ``logprobs``, else the first word of the answer ("unreadable" when it is none of
  the three; such a pair has no verdict).

Verdicts live in ``judge_verdicts``, never among the votes. ``calibrate`` compares the judge's pair verdicts
with every expert vote on the pairs both rated (one vote per rater and pair; "both bad" counts as a tie:
neither answer is better): percent agreement and Cohen's kappa over the three outcomes (first arm, second
arm, tie), each with a 95% percentile bootstrap interval resampling prompts (votes on one prompt are not
independent), overall and per label, with the confusion table. Only when kappa reaches the team's threshold
does ``judge_rest`` judge the pairs no expert rated (the rest of the test split when the evaluation was prepared
from the whole split and the experts rated part of it; gold pairs, which test the raters, are never judged); its
figures (``rest_figures``) are the judge's and are reported apart from the human ones.

The **rest of the test split** (``judge_test_split``, also only above the threshold) is the test-split prompts of
the evaluation's dataset version that are not in the evaluation at all: the evaluation's arms answer them the way
they answered its own prompts (``evaluation.generate.generate_answers``: the warm base, each run's system-prompt
handling, the prompted base's examples, the evaluation's decoding settings, the generation cache), every pair of
arms per prompt is stored in ``judge_split_pairs`` and the judge reads each in both orders into
``judge_split_readings``. Both tables are apart from ``eval_pairs`` (raters are never issued these answers, and no
count of the evaluation sees them) and from ``judge_verdicts`` (which calibration compares with the votes). A stop
keeps every answer and reading; a new start reads only what is missing. ``split_figures``: per pair of arms the
judge's wins, ties, flipped and unreadable verdicts with a Wilson interval, and with three arms or more a
Bradley–Terry fit over its verdicts, always beside the calibration kappa that let it rate them.

Example::

    judge = open_judge(ws, "default")
    judge_evaluation(ws, 3, judge)                       # the rated pairs, both orders
    cal = calibrate(ws, 3, judge.name, threshold=0.4)    # kappa, agreement, intervals, per label
    if cal.passes:
        rest = judge_rest(ws, 3, judge, threshold=0.4)   # the unrated pairs, labelled the judge's
        split = judge_test_split(ws, 3, judge, threshold=0.4, limit=50)   # 50 test prompts outside it
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Protocol

from core.errors import TuneloopError
from core.workspace import Workspace
from evaluation import arena

DEFAULT_JUDGE = "default"
DEFAULT_THRESHOLD = 0.4
DEFAULT_KEY_ENV = "TUNELOOP_JUDGE_KEY"
ORDERS = ("first", "swapped")
CHOICES = ("A", "B", "tie")
OUTCOMES = ("first", "second", "tie")      # a pair's verdict relative to its two arms, in the order they are stored
BOOTSTRAP_RESAMPLES = 2000
FEW_PROMPTS = 10                           # intervals from fewer prompts carry a caveat
MAX_ANSWER_CHARS = 4000                    # an answer longer than this is cut (marked) in the judge's prompt
JUDGE_PROMPT = """Two assistants answered the same conversation. You are not told who wrote which answer.

The team's guidelines for a good answer:
{guidelines}

The conversation:
{conversation}

Answer A:
{answer_a}

Answer B:
{answer_b}

Which answer is better by the guidelines? Reply with one word: A if answer A is better, B if answer B is \
better, tie if neither is better."""
NO_GUIDELINES = "Prefer the answer that is correct, complete and helpful."
Progress = Callable[[int, int, str], None]      # (done, total, what is happening)


class JudgeStopped(TuneloopError):
    """Judging was stopped; the verdicts read before the stop are kept."""


@dataclass(frozen=True)
class JudgePair:
    """One pair as the judge reads it: the conversation and the answers of its two arms (never shown by name)."""
    pair_id: int
    prompt_id: str
    label: str | None
    messages: list[dict[str, str]]
    arms: tuple[str, str]
    answers: tuple[str, str]

    def shown(self, order: str) -> tuple[str, str, str, str]:
        """(arm read as A, arm read as B, answer A, answer B) in ``order``: first, or swapped."""
        if order == "first":
            return self.arms[0], self.arms[1], self.answers[0], self.answers[1]
        return self.arms[1], self.arms[0], self.answers[1], self.answers[0]


@dataclass(frozen=True)
class Reading:
    """What a judge said about one pair in one order: A, B, tie or unreadable, and how sure it was."""
    verdict: str
    score: float | None = None


class Judge(Protocol):
    """Anything that reads a judge prompt (a conversation) and gives a ``Reading``."""
    name: str

    def read(self, conversation: list[dict[str, str]]) -> Reading: ...


def judge_prompt(pair: JudgePair, order: str, guidelines: str) -> list[dict[str, str]]:
    """The conversation the judge answers for ``pair`` in ``order``: one user turn, ``JUDGE_PROMPT`` filled."""
    _, _, answer_a, answer_b = pair.shown(order)
    roles = {"system": "System", "user": "User", "assistant": "Assistant"}
    conversation = "\n".join(f"{roles[m['role']]}: {m['content']}" for m in pair.messages)
    text = JUDGE_PROMPT.format(guidelines=guidelines.strip() or NO_GUIDELINES, conversation=conversation,
                               answer_a=_cut(answer_a), answer_b=_cut(answer_b))
    return [{"role": "user", "content": text}]


def _cut(answer: str) -> str:
    return answer if len(answer) <= MAX_ANSWER_CHARS else answer[:MAX_ANSWER_CHARS] + " [...]"


# -- judges -------------------------------------------------------------------------------------

class LocalJudge:
    """A model the warm pool loads, read through its next-token likelihoods of "A", "B" and "tie"."""

    def __init__(self, ws: Workspace | None, base_model: str = DEFAULT_JUDGE):
        from training.inference import warm_base
        self.name = base_model
        self.warm = warm_base(ws, base_model)
        self._options: list[int] | None = None

    def read(self, conversation: list[dict[str, str]]) -> Reading:
        import torch
        with self.warm.using(None) as (model, tokenizer):
            options = self._option_ids(tokenizer)
            text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit and len(ids) > limit:
                raise TuneloopError(f"the judge's prompt is {len(ids)} tokens, longer than {self.warm.name} reads "
                                    f"({limit}); choose a judge that reads longer texts, or shorter answers")
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1]
            probs = torch.softmax(logits.float(), dim=-1)[options].tolist()
        return _reading_from(dict(zip(CHOICES, probs)))

    def _option_ids(self, tokenizer) -> list[int]:
        """The first token of each choice as the answer's first word; they must differ to be told apart."""
        if self._options is None:
            ids = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in CHOICES]
            if len(set(ids)) < len(ids):
                raise TuneloopError(f"{self.warm.name}'s tokenizer starts 'A', 'B' and 'tie' with the same token; "
                                    f"it cannot be read as a judge, choose another model")
            self._options = ids
        return self._options


class EndpointJudge:
    """An OpenAI-compatible chat endpoint asked for one word (its likelihoods when the server sends logprobs)."""

    def __init__(self, url: str, model: str, *, key_env: str | None = DEFAULT_KEY_ENV, timeout: float = 120):
        self.url, self.model, self.timeout = url.rstrip("/"), model, timeout
        self.name = f"endpoint:{self.url}#{model}"
        self.key = os.environ.get(key_env) if key_env else None

    def read(self, conversation: list[dict[str, str]]) -> Reading:
        import httpx
        body = {"model": self.model, "messages": conversation, "max_tokens": 4, "temperature": 0,
                "logprobs": True, "top_logprobs": 5}
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        try:
            response = httpx.post(f"{self.url}/chat/completions", json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TuneloopError(f"the judge endpoint {self.url} did not answer ({type(exc).__name__}: {exc}); check "
                                f"the URL (the /v1 base, e.g. http://127.0.0.1:8000/v1) and that it is running")
        if response.status_code != 200:
            raise TuneloopError(f"the judge endpoint {self.url} refused the request ({response.status_code}): "
                                f"{response.text[:300]}; check the model name '{self.model}' and the key")
        choice = response.json()["choices"][0]
        content = (choice.get("logprobs") or {}).get("content") or []
        if content and content[0].get("top_logprobs"):
            probs = {c: 0.0 for c in CHOICES}
            for top in content[0]["top_logprobs"]:
                word = text_verdict(top.get("token", ""))
                if word != "unreadable":
                    probs[word] += math.exp(top["logprob"])
            if any(probs.values()):
                return _reading_from(probs)
        return Reading(text_verdict(choice["message"].get("content") or ""))


def text_verdict(text: str) -> str:
    """A, B or tie from an answer's first word ("A.", "b", "Tie!", "Answer B"); unreadable otherwise."""
    words = re.findall(r"[A-Za-z]+", text)
    if words[:1] and words[0].lower() == "answer":
        words = words[1:]
    first = words[0].lower() if words else ""
    return {"a": "A", "b": "B", "tie": "tie"}.get(first, "unreadable")


def _reading_from(probs: dict[str, float]) -> Reading:
    total = sum(probs.values())
    verdict = max(CHOICES, key=lambda c: probs[c])
    return Reading(verdict, probs[verdict] / total if total > 0 else None)


def open_judge(ws: Workspace | None, spec: str = DEFAULT_JUDGE, *, key_env: str | None = DEFAULT_KEY_ENV) -> Judge:
    """The judge ``spec`` names: default, a base model (folder, .gguf file, hub id), or endpoint:URL#MODEL."""
    text = (spec or DEFAULT_JUDGE).strip()
    if text.startswith("endpoint:"):
        url, _, model = text.removeprefix("endpoint:").partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise TuneloopError(f"'{text}' is not an endpoint judge; write endpoint:URL#MODEL, e.g. "
                                f"endpoint:http://127.0.0.1:8000/v1#run-3")
        return EndpointJudge(url, model, key_env=key_env)
    from training.models import check_base_model
    check_base_model(text, ws)
    return LocalJudge(ws, text)


# -- the pairs and the experts' votes -----------------------------------------------------------

def evaluation_pairs(ws: Workspace, evaluation_id: int | str) -> list[JudgePair]:
    """Every pair of two arms of the evaluation with both answers (gold pairs, which test the raters, left out)."""
    eid = arena.get_evaluation(ws, evaluation_id).id
    rows = ws.db.execute("select p.id, p.prompt_id, p.label, p.messages, f.name as first, s.name as second,"
                         " p.first_response, p.second_response from eval_pairs p join eval_arms f on f.id=p.first_arm"
                         " join eval_arms s on s.id=p.second_arm where p.evaluation_id=? and p.gold=0 order by p.id",
                         (eid,)).fetchall()
    return [JudgePair(r["id"], r["prompt_id"], r["label"], json.loads(r["messages"]), (r["first"], r["second"]),
                      (r["first_response"], r["second_response"])) for r in rows]


@dataclass(frozen=True)
class ExpertVotes:
    """The experts' votes per pair (pair id → rater → first | second | tie, relative to the pair's arms; "both bad"
    is a tie: neither answer is better), each rater's first vote on a pair only (a repeat with the sides swapped
    included); ``duplicates`` counts the further ones left out. Gold pairs are left out."""
    by_pair: dict[int, dict[str, str]]
    duplicates: int


def expert_votes(ws: Workspace, evaluation_id: int) -> ExpertVotes:
    by_pair: dict[int, dict[str, str]] = defaultdict(dict)
    duplicates = 0
    for r in ws.db.execute("select p.id as pair_id, a.rater, v.outcome from eval_votes v"
                           " join eval_assignments a on a.id=v.assignment_id join eval_pairs p on p.id=a.pair_id"
                           " where p.evaluation_id=? and p.gold=0 order by v.id", (evaluation_id,)):
        if r["rater"] in by_pair[r["pair_id"]]:
            duplicates += 1
            continue
        by_pair[r["pair_id"]][r["rater"]] = r["outcome"] if r["outcome"] in OUTCOMES else "tie"
    return ExpertVotes(dict(by_pair), duplicates)


# -- judging ------------------------------------------------------------------------------------

def judge_evaluation(ws: Workspace, evaluation_id: int | str, judge: Judge, *, which: str = "rated",
                     progress: Progress | None = None, cancel: threading.Event | None = None) -> int:
    """Have ``judge`` read the evaluation's pairs in both orders; returns how many new readings were stored.

    ``which``: "rated" (pairs an expert voted on: what calibration needs), "unrated", or "all". Readings
    already stored for this judge are kept and skipped, so a stopped job continues where it was. Raises
    ``JudgeStopped`` when ``cancel`` is set (between pairs).
    """
    if which not in ("rated", "unrated", "all"):
        raise TuneloopError(f"'{which}' is not a set of pairs to judge; choose rated, unrated or all")
    evaluation = arena.get_evaluation(ws, evaluation_id)
    rated = set(expert_votes(ws, evaluation.id).by_pair)
    pairs = [p for p in evaluation_pairs(ws, evaluation.id)
             if which == "all" or (p.pair_id in rated) == (which == "rated")]
    done_before = {(r[0], r[1]) for r in ws.db.execute(
        "select pair_id, order_shown from judge_verdicts where evaluation_id=? and judge=?",
        (evaluation.id, judge.name))}

    def store(db, pair: JudgePair, order: str, arm_a: str, arm_b: str, reading: Reading) -> None:
        db.execute("insert into judge_verdicts (evaluation_id, pair_id, judge, order_shown, arm_a, arm_b, verdict,"
                   " score) values (?,?,?,?,?,?,?,?)",
                   (evaluation.id, pair.pair_id, judge.name, order, arm_a, arm_b, reading.verdict, reading.score))

    return _read_both_orders(ws, judge, pairs, done_before, store, evaluation.guidelines, progress=progress,
                             cancel=cancel)


def _read_both_orders(ws: Workspace, judge: Judge, pairs: list[JudgePair], done_before: set[tuple[int, str]],
                      store: Callable, guidelines: str, *, progress: Progress | None,
                      cancel: threading.Event | None) -> int:
    """Read every pair in both orders but those in ``done_before`` ((pair id, order)), storing each reading as
    it comes (``store(db, pair, order, arm_a, arm_b, reading)`` inside a transaction); returns how many were read.
    Raises ``JudgeStopped`` when ``cancel`` is set (between readings)."""
    todo = [(p, order) for p in pairs for order in ORDERS if (p.pair_id, order) not in done_before]
    total, done = 2 * len(pairs), 2 * len(pairs) - len(todo)
    if progress:
        progress(done, total, f"{done} of {total} readings already stored")
    for pair, order in todo:
        if cancel is not None and cancel.is_set():
            raise JudgeStopped(f"judging stopped after {done} of {total} readings; they are kept, and a new start "
                               f"continues from there")
        reading = judge.read(judge_prompt(pair, order, guidelines))
        arm_a, arm_b, _, _ = pair.shown(order)
        with ws.transaction() as db:
            store(db, pair, order, arm_a, arm_b, reading)
        done += 1
        if progress:
            progress(done, total, f"{done} of {total} readings (prompt {pair.prompt_id}, {order} order)")
    return len(todo)


@dataclass(frozen=True)
class PairVerdict:
    """The judge's verdict on one pair from its two readings: the winning arm (None: no arm won) and how the
    two orders went: agreed, one_sided (one order said tie), flipped (each order named the arm shown on the
    same side: a tie), unreadable (no verdict)."""
    pair_id: int
    prompt_id: str
    label: str | None
    arms: tuple[str, str]
    winner: str | None
    how: str

    @property
    def outcome(self) -> str:
        """first | second | tie, relative to the pair's arms."""
        return "tie" if self.winner is None else OUTCOMES[self.arms.index(self.winner)]


def combine_readings(first: tuple[str, str, str], swapped: tuple[str, str, str]) -> tuple[str | None, str]:
    """(winning arm or None, how) from the two orders' (arm read as A, arm read as B, verdict)."""
    if "unreadable" in (first[2], swapped[2]):
        return None, "unreadable"
    winners = [{"A": a, "B": b}.get(verdict) for a, b, verdict in (first, swapped)]
    if winners[0] == winners[1]:
        return winners[0], "agreed"
    if None in winners:
        return None, "one_sided"
    return None, "flipped"


def pair_verdicts(ws: Workspace, evaluation_id: int, judge_name: str) -> list[PairVerdict]:
    """The judge's verdict on every pair it read in both orders."""
    rows = ws.db.execute("select pair_id, order_shown, arm_a, arm_b, verdict from judge_verdicts"
                         " where evaluation_id=? and judge=?", (evaluation_id, judge_name))
    return _verdicts_of(evaluation_pairs(ws, evaluation_id), rows)


def _verdicts_of(pairs_read: list[JudgePair], rows) -> list[PairVerdict]:
    """A verdict per pair of ``pairs_read`` from its readings (rows of pair id, order_shown, arm_a, arm_b, verdict;
    the pair id first): only pairs read in both orders have one."""
    pairs = {p.pair_id: p for p in pairs_read}
    readings: dict[int, dict[str, tuple[str, str, str]]] = defaultdict(dict)
    for r in rows:
        readings[r[0]][r["order_shown"]] = (r["arm_a"], r["arm_b"], r["verdict"])
    out = []
    for pair_id, orders in sorted(readings.items()):
        if len(orders) == 2 and pair_id in pairs:
            pair = pairs[pair_id]
            winner, how = combine_readings(orders["first"], orders["swapped"])
            out.append(PairVerdict(pair_id, pair.prompt_id, pair.label, pair.arms, winner, how))
    return out


def judges_used(ws: Workspace, evaluation_id: int) -> list[str]:
    """The judges that read pairs of this evaluation, most recent first."""
    return [r[0] for r in ws.db.execute("select judge from judge_verdicts where evaluation_id=? group by judge"
                                        " order by max(id) desc", (evaluation_id,))]


# -- agreement ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Agreement:
    """Percent agreement and Cohen's kappa between the judge and the experts, each with a 95% percentile
    bootstrap interval over prompts (None where there are too few prompts or kappa is undefined)."""
    votes: int
    prompts: int
    agreement: float | None
    agreement_low: float | None
    agreement_high: float | None
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None

    @property
    def few_prompts(self) -> bool:
        return self.prompts < FEW_PROMPTS


def cohen_kappa(table) -> float | None:
    """Cohen's kappa from a confusion table (experts' outcomes × the judge's); None when chance agreement is 1."""
    import numpy as np
    table = np.asarray(table, dtype=float)
    n = table.sum()
    if n == 0:
        return None
    observed = np.trace(table) / n
    chance = float((table.sum(axis=1) * table.sum(axis=0)).sum() / n ** 2)
    return None if chance >= 1 else float((observed - chance) / (1 - chance))


def agreement_figures(items: list[tuple[str, str, str]], *, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = 0) -> Agreement:
    """``items``: (prompt id, the expert's outcome, the judge's outcome), outcomes from ``OUTCOMES``."""
    import numpy as np
    prompts = sorted({p for p, _, _ in items})
    if not prompts:
        return Agreement(0, 0, None, None, None, None, None, None)
    where = {p: i for i, p in enumerate(prompts)}
    tables = np.zeros((len(prompts), 3, 3))
    for prompt, expert, judged in items:
        tables[where[prompt], OUTCOMES.index(expert), OUTCOMES.index(judged)] += 1
    total = tables.sum(axis=0)
    agreement, kappa = float(np.trace(total) / total.sum()), cohen_kappa(total)
    low = high = k_low = k_high = None
    if len(prompts) >= 2:
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(prompts), size=(resamples, len(prompts)))
        weights = np.stack([np.bincount(d, minlength=len(prompts)) for d in draws])
        sampled = (weights @ tables.reshape(len(prompts), 9)).reshape(resamples, 3, 3)
        n = sampled.sum(axis=(1, 2))
        observed = np.trace(sampled, axis1=1, axis2=2) / n
        chance = (sampled.sum(axis=2) * sampled.sum(axis=1)).sum(axis=1) / n ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            kappas = np.where(chance < 1, (observed - chance) / (1 - chance), np.nan)
        low, high = (float(x) for x in np.percentile(observed, [2.5, 97.5]))
        if kappa is not None and np.isfinite(kappas).any():
            k_low, k_high = (float(x) for x in np.nanpercentile(kappas, [2.5, 97.5]))
    return Agreement(len(items), len(prompts), agreement, low, high, kappa, k_low, k_high)


@dataclass(frozen=True)
class Calibration:
    """How far the judge agrees with the experts on the pairs both rated, and whether that passes the team's
    threshold (kappa ≥ threshold), with what the readings looked like."""
    evaluation_id: int
    judge: str
    threshold: float
    arms: tuple[str, str]               # what the first and second outcomes are called (the arms, for two)
    overall: Agreement
    by_label: list[tuple[str, Agreement]]
    confusion: list[list[int]]          # experts' outcome (rows) × the judge's (columns), in OUTCOMES order
    pairs: int                          # rated pairs the judge gave a verdict on
    how: dict[str, int]                 # agreed / one_sided / flipped / unreadable, over the rated pairs it read
    unread: int                         # rated pairs the judge has not read in both orders yet
    duplicates: int                     # further votes by one rater on one pair, left out

    @property
    def passes(self) -> bool:
        """The judge may rate the rest: kappa reached the threshold."""
        return self.overall.kappa is not None and self.overall.kappa >= self.threshold


def calibrate(ws: Workspace, evaluation_id: int | str, judge_name: str, *, threshold: float = DEFAULT_THRESHOLD,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Calibration:
    """The judge's agreement with every expert vote on the pairs it read (see the module's docstring)."""
    evaluation = arena.get_evaluation(ws, evaluation_id)
    votes = expert_votes(ws, evaluation.id)
    verdicts = {v.pair_id: v for v in pair_verdicts(ws, evaluation.id, judge_name) if v.pair_id in votes.by_pair}
    how = {k: 0 for k in ("agreed", "one_sided", "flipped", "unreadable")}
    items: list[tuple[str, str, str, str | None]] = []
    for v in verdicts.values():
        how[v.how] += 1
        if v.how == "unreadable":
            continue
        items += [(v.prompt_id, expert, v.outcome, v.label) for expert in votes.by_pair[v.pair_id].values()]
    overall = agreement_figures([i[:3] for i in items], resamples=resamples, seed=seed)
    labels = sorted({i[3] for i in items if i[3] is not None})
    by_label = [(label, agreement_figures([i[:3] for i in items if i[3] == label], resamples=resamples, seed=seed))
                for label in labels]
    confusion = [[sum(1 for i in items if i[1] == e and i[2] == j) for j in OUTCOMES] for e in OUTCOMES]
    names = [arm.name for arm in arena.evaluation_arms(ws, evaluation.id)]
    arms = (names[0], names[1]) if len(names) == 2 else ("the pair's first arm", "its second arm")
    return Calibration(evaluation.id, judge_name, float(threshold), arms, overall, by_label, confusion,
                       pairs=len(verdicts) - how["unreadable"], how=how,
                       unread=len(set(votes.by_pair) - set(verdicts)), duplicates=votes.duplicates)


# -- the rest of the test split -----------------------------------------------------------------

@dataclass(frozen=True)
class RestFigures:
    """The judge's own verdicts on the pairs no expert rated: never votes, never mixed into human figures."""
    evaluation_id: int
    judge: str
    pairs: int
    wins: dict[str, int]                # arm → pairs the judge gave it, for every arm of the evaluation
    ties: int
    flipped: int
    unreadable: int
    win_rate: float | None              # two arms: the second's share of the decisive verdicts
    wilson_low: float | None
    wilson_high: float | None


def judge_rest(ws: Workspace, evaluation_id: int | str, judge: Judge, *, threshold: float = DEFAULT_THRESHOLD,
               progress: Progress | None = None, cancel: threading.Event | None = None) -> RestFigures:
    """Judge the pairs no expert rated, only when the judge's calibration passes ``threshold``."""
    evaluation = arena.get_evaluation(ws, evaluation_id)
    require_calibration(ws, evaluation.id, judge.name, threshold)
    judge_evaluation(ws, evaluation.id, judge, which="unrated", progress=progress, cancel=cancel)
    return rest_figures(ws, evaluation.id, judge.name)


def require_calibration(ws: Workspace, evaluation_id: int, judge_name: str, threshold: float) -> Calibration:
    """The judge's calibration when it passes ``threshold``; else the refusal, naming the kappa it measured."""
    cal = calibrate(ws, evaluation_id, judge_name, threshold=threshold)
    if not cal.passes:
        shown = "undefined" if cal.overall.kappa is None else f"{cal.overall.kappa:.2f}"
        raise TuneloopError(f"the judge {judge_name} agrees with the experts at kappa {shown} on {cal.pairs} rated "
                            f"pairs, below the threshold {threshold:g}; it may not rate the rest of the test split. "
                            f"Judge the rated pairs first, gather more votes, or choose a stronger judge")
    return cal


def rest_figures(ws: Workspace, evaluation_id: int, judge_name: str) -> RestFigures:
    """The judge's verdicts on the pairs that have no expert vote (as of now)."""
    from evaluation.stats import wilson_interval
    rated = set(expert_votes(ws, evaluation_id).by_pair)
    verdicts = [v for v in pair_verdicts(ws, evaluation_id, judge_name) if v.pair_id not in rated]
    arms = [arm.name for arm in arena.evaluation_arms(ws, evaluation_id)]
    wins = {arm: sum(1 for v in verdicts if v.winner == arm) for arm in arms}
    decisive = sum(wins.values())
    second = wins[arms[-1]] if len(arms) == 2 else 0
    low, high = wilson_interval(second, decisive) if len(arms) == 2 else (None, None)
    return RestFigures(evaluation_id, judge_name, len(verdicts), wins,
                       ties=sum(1 for v in verdicts if v.winner is None and v.how != "unreadable"),
                       flipped=sum(1 for v in verdicts if v.how == "flipped"),
                       unreadable=sum(1 for v in verdicts if v.how == "unreadable"),
                       win_rate=second / decisive if decisive and len(arms) == 2 else None, wilson_low=low,
                       wilson_high=high)


# -- the rest of the test split: prompts outside the evaluation ---------------------------------

SPLIT_SOURCE = "test"           # the split whose prompts outside the evaluation the judge rates


def outside_prompts(ws: Workspace, evaluation_id: int | str) -> list:
    """The test-split prompts of the evaluation's dataset version that are not in the evaluation (as
    ``evaluation.generate.PromptItem``, in the version's order): what the judge may rate once calibrated."""
    from evaluation.generate import prompts_from_version
    evaluation = arena.get_evaluation(ws, evaluation_id)
    if evaluation.dataset_version is None:
        raise TuneloopError(f"evaluation #{evaluation.id} was made from typed, uploaded or served prompts, not from a "
                            f"dataset version, so it has no test split for the judge to rate the rest of")
    inside = {r[0] for r in ws.db.execute("select distinct prompt_id from eval_pairs where evaluation_id=?",
                                          (evaluation.id,))}
    items = prompts_from_version(ws, evaluation.dataset_version, split=SPLIT_SOURCE)
    return [item for item in items if item.prompt_id not in inside]


def decoding_of(evaluation) -> "DecodingSettings":  # noqa: F821 (imported lazily: training loads torch)
    """The decoding settings the evaluation's answers were generated with (stored beside its purpose)."""
    from core.options import options_fields
    from training.inference import DecodingSettings
    known = {f.name for f in options_fields(DecodingSettings)}
    return DecodingSettings.from_dict({k: v for k, v in evaluation.settings.items() if k in known})


def answering_base(ws: Workspace, evaluation, arms: list, base_model: str | None = None) -> str:
    """The base model the evaluation's local arms answer with: its runs' base (they share one), else
    ``base_model``, else the one it was generated with (stored in its settings; 'default' for one made before it
    was stored), which must be the base the evaluation names."""
    from evaluation.generate import resolve_adapter
    from training.models import resolve_base_model
    runs = [a for a in arms if a.kind == "run"]
    if runs:
        bases = sorted({resolve_adapter(ws, a.settings["adapter"]).base_model for a in runs})
        if base_model and base_model not in bases:
            raise TuneloopError(f"evaluation #{evaluation.id}'s runs answer on {bases[0]}, not on {base_model}")
        return bases[0]
    if not any(a.kind != "endpoint" for a in arms):
        return base_model or "default"          # endpoints only: no local model answers
    base = base_model or evaluation.settings.get("base_model") or "default"
    shown = resolve_base_model(base, ws).name
    if shown != evaluation.base_model:
        raise TuneloopError(f"evaluation #{evaluation.id} was answered by the base model {evaluation.base_model}, but "
                            f"'{base}' is {shown}; name the base it was answered by (CLI: --base FOLDER or hub id)")
    return base


def split_pairs(ws: Workspace, evaluation_id: int, prompt_ids: list[str] | None = None) -> list[JudgePair]:
    """The stored pairs of arms on prompts outside the evaluation (``prompt_ids``: only those prompts)."""
    rows = ws.db.execute("select * from judge_split_pairs where evaluation_id=? order by id", (evaluation_id,))
    wanted = None if prompt_ids is None else set(prompt_ids)
    return [JudgePair(r["id"], r["prompt_id"], r["label"], json.loads(r["messages"]), (r["first_arm"], r["second_arm"]),
                      (r["first_response"], r["second_response"]))
            for r in rows if wanted is None or r["prompt_id"] in wanted]


def answer_outside_prompts(ws: Workspace, evaluation_id: int | str, *, limit: int | None = None,
                           base_model: str | None = None, batch_size: int = 8, progress: Progress | None = None,
                           cancel: threading.Event | None = None) -> list[JudgePair]:
    """Have the evaluation's arms answer the first ``limit`` test prompts outside it (all when None), through the
    path its own answers took (``evaluation.generate.generate_answers``: the warm base, each run's system-prompt
    handling, the prompted base's examples, the evaluation's decoding settings, the generation cache), and
    store every pair of arms per prompt; prompts answered before are not answered again. Returns their pairs."""
    from itertools import combinations

    from evaluation.generate import generate_answers
    evaluation = arena.get_evaluation(ws, evaluation_id)
    if limit is not None and limit < 1:
        raise TuneloopError(f"the limit is a number of prompts, at least 1 (got {limit}); leave it empty for all")
    items = outside_prompts(ws, evaluation.id)
    if not items:
        raise TuneloopError(f"every test prompt of evaluation #{evaluation.id}'s dataset version is in the "
                            f"evaluation; there is no rest of the test split to judge")
    items = items[:limit] if limit else items
    arms = arena.evaluation_arms(ws, evaluation.id)
    stored = {p.prompt_id for p in split_pairs(ws, evaluation.id)}
    missing = [item for item in items if item.prompt_id not in stored]
    if missing:
        answers = generate_answers(ws, missing, arms, base_model=answering_base(ws, evaluation, arms, base_model),
                                   settings=decoding_of(evaluation), batch_size=batch_size, cancel=cancel,
                                   progress=(lambda d, t, what: progress(d, t, f"answering: {what}"))
                                   if progress else None)
        rows = [(evaluation.id, item.prompt_id, item.label, json.dumps(item.messages), first.name, second.name,
                 answers[first.name][n], answers[second.name][n])
                for n, item in enumerate(missing) for first, second in combinations(arms, 2)]
        with ws.transaction() as db:
            db.executemany("insert or ignore into judge_split_pairs (evaluation_id, prompt_id, label, messages,"
                           " first_arm, second_arm, first_response, second_response) values (?,?,?,?,?,?,?,?)", rows)
    return split_pairs(ws, evaluation.id, [item.prompt_id for item in items])


def judge_test_split(ws: Workspace, evaluation_id: int | str, judge: Judge, *, threshold: float = DEFAULT_THRESHOLD,
                     limit: int | None = None, base_model: str | None = None, batch_size: int = 8,
                     progress: Progress | None = None, cancel: threading.Event | None = None) -> "SplitFigures":
    """The calibrated judge rates the rest of the test split: refused (naming the kappa) below ``threshold``;
    else the arms answer the first ``limit`` test prompts outside the evaluation (``answer_outside_prompts``) and
    the judge reads every pair of arms on them in both orders. Readings are stored as they come, so a stop
    (``cancel``: ``GenerationCancelled`` while answering, ``JudgeStopped`` while reading) keeps them and a new
    start reads only the rest. Returns the judge's figures on every such prompt it has read."""
    evaluation = arena.get_evaluation(ws, evaluation_id)
    require_calibration(ws, evaluation.id, judge.name, threshold)
    pairs = answer_outside_prompts(ws, evaluation.id, limit=limit, base_model=base_model, batch_size=batch_size,
                                   progress=progress, cancel=cancel)
    done_before = {(r[0], r[1]) for r in ws.db.execute(
        "select split_pair_id, order_shown from judge_split_readings where evaluation_id=? and judge=?",
        (evaluation.id, judge.name))}

    def store(db, pair: JudgePair, order: str, arm_a: str, arm_b: str, reading: Reading) -> None:
        db.execute("insert into judge_split_readings (evaluation_id, split_pair_id, judge, order_shown, arm_a, arm_b,"
                   " verdict, score) values (?,?,?,?,?,?,?,?)",
                   (evaluation.id, pair.pair_id, judge.name, order, arm_a, arm_b, reading.verdict, reading.score))

    _read_both_orders(ws, judge, pairs, done_before, store, evaluation.guidelines, cancel=cancel,
                      progress=(lambda d, t, what: progress(d, t, f"judging: {what}")) if progress else None)
    return split_figures(ws, evaluation.id, judge.name, threshold=threshold)


def split_verdicts(ws: Workspace, evaluation_id: int, judge_name: str) -> list[PairVerdict]:
    """The judge's verdict on every pair outside the evaluation it read in both orders."""
    rows = ws.db.execute("select split_pair_id, order_shown, arm_a, arm_b, verdict from judge_split_readings"
                         " where evaluation_id=? and judge=?", (evaluation_id, judge_name))
    return _verdicts_of(split_pairs(ws, evaluation_id), rows)


@dataclass(frozen=True)
class SplitTally:
    """The judge's verdicts on one pair of arms over the prompts outside the evaluation; ``win_rate``: the
    second arm's share of the decisive verdicts, with its Wilson 95% interval."""
    first: str
    second: str
    prompts: int
    first_wins: int
    second_wins: int
    ties: int                   # every verdict that named no arm and was readable (flipped and one-sided included)
    flipped: int
    one_sided: int
    unreadable: int
    win_rate: float | None
    wilson_low: float | None
    wilson_high: float | None


@dataclass(frozen=True)
class SplitFigures:
    """The judge's own figures on the rest of the test split: never votes, never mixed into the human ones, and
    shown with the calibration kappa that let the judge rate them."""
    evaluation_id: int
    judge: str
    threshold: float
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None
    calibration_pairs: int
    passes: bool
    prompts: int                # prompts outside the evaluation with at least one verdict
    outside: int                # test prompts outside the evaluation in all (what a run without a limit reads)
    pairs: int
    tallies: list[SplitTally]
    ratings: list[dict] | None  # three arms or more: Bradley–Terry over the judge's verdicts (the first arm at 0)
    ratings_note: str | None

    @property
    def few_prompts(self) -> bool:
        return self.prompts < FEW_PROMPTS


def split_figures(ws: Workspace, evaluation_id: int | str, judge_name: str, *, threshold: float = DEFAULT_THRESHOLD,
                  calibration: Calibration | None = None, resamples: int = 1000, seed: int = 0) -> SplitFigures:
    """Per pair of arms wins, ties, flipped and unreadable, the win rate with a Wilson interval, and with three
    arms or more a Bradley–Terry fit (``evaluation.ratings.arm_ratings``: a tie, flipped ones included, counts as
    half a win each way; unreadable verdicts are left out) over the judge's verdicts outside the evaluation."""
    from itertools import combinations

    from evaluation.ratings import Comparison, arm_ratings
    from evaluation.stats import wilson_interval
    evaluation = arena.get_evaluation(ws, evaluation_id)
    cal = calibration or calibrate(ws, evaluation.id, judge_name, threshold=threshold)
    verdicts = split_verdicts(ws, evaluation.id, judge_name)
    arms = [a.name for a in arena.evaluation_arms(ws, evaluation.id)]
    tallies = []
    for first, second in combinations(arms, 2):
        mine = [v for v in verdicts if v.arms == (first, second)]
        if not mine:
            continue
        a, b = sum(v.winner == first for v in mine), sum(v.winner == second for v in mine)
        low, high = wilson_interval(b, a + b) if a + b else (None, None)
        unreadable = sum(v.how == "unreadable" for v in mine)
        tallies.append(SplitTally(first, second, len({v.prompt_id for v in mine}), a, b,
                                  ties=len(mine) - a - b - unreadable, flipped=sum(v.how == "flipped" for v in mine),
                                  one_sided=sum(v.how == "one_sided" for v in mine), unreadable=unreadable,
                                  win_rate=b / (a + b) if a + b else None, wilson_low=low, wilson_high=high))
    ratings = note = None
    readable = [v for v in verdicts if v.how != "unreadable"]
    if len(arms) > 2 and readable:
        fit = arm_ratings([Comparison(v.prompt_id, judge_name, v.arms[0], v.arms[1],
                                      {v.arms[0]: "left", v.arms[1]: "right"}.get(v.winner, "tie"))
                           for v in readable], reference=arms[0], resamples=resamples, seed=seed)
        ratings = [{"arm": r.arm, "rating": r.rating, "low": r.low, "high": r.high, "verdicts": r.comparisons}
                   for r in fit.arms]
        note = (f"Bradley–Terry over the judge's {fit.used} verdicts from {fit.prompts} prompts, {arms[0]} at 0 (logit "
                f"scale); a tie counts as half a win each way; 95% intervals from {fit.resamples} bootstrap resamples "
                f"of the prompts (seed {fit.seed})"
                + (f"; {', '.join(fit.unbounded)} won or lost every verdict, so only the prior bounds its rating"
                   if fit.unbounded else "") + ".")
    a = cal.overall
    return SplitFigures(evaluation.id, judge_name, float(threshold), a.kappa, a.kappa_low, a.kappa_high, cal.pairs,
                        cal.passes, prompts=len({v.prompt_id for v in verdicts}),
                        outside=_count_outside(ws, evaluation.id), pairs=len(verdicts), tallies=tallies,
                        ratings=ratings, ratings_note=note)


def _count_outside(ws: Workspace, evaluation_id: int) -> int:
    try:
        return len(outside_prompts(ws, evaluation_id))
    except TuneloopError:       # no dataset version, or no test split in it
        return 0


# -- presenting ---------------------------------------------------------------------------------

AGREEMENT_HEADERS = ["label", "votes", "prompts", "agreement", "95% interval", "kappa", "95% interval"]


def _num(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.0f}%" if pct else f"{x:.2f}"


def _interval(low: float | None, high: float | None, pct: bool = False) -> str:
    return "—" if low is None else f"[{_num(low, pct)}, {_num(high, pct)}]"


def agreement_rows(cal: Calibration) -> list[list]:
    """One table row overall and one per label (what the tab's table and the CLI show)."""
    rows = [("overall", cal.overall)] + cal.by_label
    return [[name, a.votes, a.prompts, _num(a.agreement, True), _interval(a.agreement_low, a.agreement_high, True),
             _num(a.kappa), _interval(a.kappa_low, a.kappa_high)] for name, a in rows]


def format_calibration(cal: Calibration) -> str:
    """The calibration in words: agreement, kappa, how the two orders went, and what the threshold allows."""
    a = cal.overall
    first, second = cal.arms
    names = {"first": first, "second": second, "tie": "tie"}
    if not a.votes:
        return (f"Judge {cal.judge}: no verdicts on rated pairs yet ({cal.unread} rated pairs to read). Judge the "
                f"rated pairs to see how far it agrees with the experts.")
    lines = [f"Judge {cal.judge} against the experts on {cal.pairs} rated pairs ({a.votes} votes, {a.prompts} "
             f"prompts): agreement {_num(a.agreement, True)} {_interval(a.agreement_low, a.agreement_high, True)}, "
             f"Cohen's kappa {_num(a.kappa)} {_interval(a.kappa_low, a.kappa_high)} (95% percentile bootstrap over "
             f"prompts; experts' 'both bad' counts as a tie)."]
    if a.few_prompts:
        lines.append(f"Caveat: fewer than {FEW_PROMPTS} prompts; the intervals are rough.")
    lines.append(f"Both orders read: {cal.how['agreed']} agreed, {cal.how['one_sided']} one-sided (one order said "
                 f"tie), {cal.how['flipped']} flipped with the sides (counted as ties: position bias)"
                 + (f", {cal.how['unreadable']} unreadable (left out)" if cal.how["unreadable"] else "") + ".")
    lines.append("Experts (rows) × judge (columns): " + "; ".join(
        f"{names[e]}: " + ", ".join(f"{names[j]} {cal.confusion[i][k]}" for k, j in enumerate(OUTCOMES))
        for i, e in enumerate(OUTCOMES)) + ".")
    if cal.unread:
        lines.append(f"{cal.unread} rated pairs are not read yet.")
    if cal.duplicates:
        lines.append(f"{cal.duplicates} further votes by one rater on one pair were counted once.")
    if cal.passes:
        lines.append(f"kappa ≥ {cal.threshold:g}: the judge may rate the pairs nobody rated and the rest of the test "
                     f"split (its verdicts are reported as the judge's, apart from the votes).")
    else:
        lines.append(f"kappa below the threshold {cal.threshold:g}: the judge does not agree with the experts "
                     f"enough to stand in for them, so it may not rate the rest. A small model such as the default "
                     f"SmolLM2-135M is no judge: kappa 0.00 on 24 demo pairs, every verdict flipped with the sides "
                     f"(README, The numbers: 'Can the default model judge?').")
    return "\n".join(lines)


def format_rest(rest: RestFigures) -> str:
    """The judge's verdicts on the unrated pairs, labelled as the judge's."""
    if not rest.pairs:
        return f"Judge {rest.judge}: no verdicts on unrated pairs."
    arms = list(rest.wins)
    rate = (f"; {arms[-1]} won {_num(rest.win_rate, True)} of the judge's decisive verdicts "
            f"{_interval(rest.wilson_low, rest.wilson_high, True)} (Wilson 95%)" if rest.win_rate is not None else "")
    return (f"The judge's verdicts (not votes; judge {rest.judge}) on {rest.pairs} pairs no expert rated: "
            + ", ".join(f"{arm} {n}" for arm, n in rest.wins.items()) + f", tie {rest.ties} "
            f"({rest.flipped} flipped with the sides)" + (f", {rest.unreadable} unreadable" if rest.unreadable else "")
            + rate + ".")


SPLIT_HEADERS = ["first arm", "second arm", "prompts", "first wins", "second wins", "ties", "flipped", "unreadable",
                 "second's win rate", "Wilson 95%"]


def split_rows(figures: SplitFigures) -> list[list]:
    """One table row per pair of arms: the judge's verdicts on the prompts outside the evaluation."""
    return [[t.first, t.second, t.prompts, t.first_wins, t.second_wins, t.ties, t.flipped, t.unreadable,
             _num(t.win_rate, True), _interval(t.wilson_low, t.wilson_high, True)] for t in figures.tallies]


def format_split(figures: SplitFigures) -> str:
    """The judge's figures on the rest of the test split in words, labelled as the judge's, its kappa beside."""
    kappa = (f"calibration kappa {_num(figures.kappa)} {_interval(figures.kappa_low, figures.kappa_high)} on "
             f"{figures.calibration_pairs} rated pairs, threshold {figures.threshold:g}")
    if not figures.pairs:
        return (f"Judge {figures.judge} ({kappa}) has not rated the rest of the test split yet ({figures.outside} test "
                f"prompts are outside the evaluation).")
    lines = [f"The judge's verdicts, not votes (judge {figures.judge}; {kappa}) on {figures.prompts} test prompts "
             f"outside the evaluation ({figures.outside} in all), {figures.pairs} pairs of answers, each read in both "
             f"orders:"]
    for t in figures.tallies:
        rate = (f"; {t.second} won {_num(t.win_rate, True)} of the decisive verdicts "
                f"{_interval(t.wilson_low, t.wilson_high, True)} (Wilson 95%)" if t.win_rate is not None else "")
        lines.append(f"- {t.first} vs {t.second} on {t.prompts} prompts: {t.first} {t.first_wins}, {t.second} "
                     f"{t.second_wins}, tie {t.ties} ({t.flipped} flipped with the sides, {t.one_sided} one-sided)"
                     + (f", {t.unreadable} unreadable" if t.unreadable else "") + rate + ".")
    if figures.ratings:
        lines.append("Bradley–Terry ratings from the judge's verdicts: " + "; ".join(
            f"{r['arm']} {_num(r['rating'])} {_interval(r['low'], r['high'])}" for r in figures.ratings) + ".")
        lines.append(figures.ratings_note)
    if figures.few_prompts:
        lines.append(f"Caveat: fewer than {FEW_PROMPTS} prompts; the intervals are rough.")
    if not figures.passes:
        lines.append(f"The judge's kappa is below the threshold {figures.threshold:g} now: these verdicts were read "
                     f"when it passed; do not lean on them.")
    return "\n".join(lines)
