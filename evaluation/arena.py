"""Blind side-by-side rating: evaluations of any set of arms, pairs, who sees what, and votes checked on the server.

An evaluation compares arms (``Arm``): the base model, the base with a prompt, runs, an external endpoint.
For each prompt every pair of arms becomes a pair (the prompt and those two arms' answers); with
``pairs_per_prompt`` below the number of pairs of arms, each prompt takes that many pairs of arms in turn from
the list of all of them (the prompts in a random order), so every pair of arms is compared on the same number
of prompts, give or take one. An overlap k says how many raters should judge each pair. ``next_pair`` issues
a pair to a rater and records which side the pair's second arm is shown on; what it returns (``BlindPair``)
holds the two texts as A and B and nothing that names an arm. The side→arm mapping stays in the database
until ``record_vote`` has accepted that rater's vote; only then does the ``Reveal`` say who was who. A
two-arm evaluation made without ``arms`` has the arms "base" and its run ("run 3", or "fine-tuned").

Sides are drawn with a fair coin per pair (``secrets``): a rater who has seen every reveal so far still
cannot guess the next side better than chance (a balancing coin can be guessed from the counts). The
balance of the sides is checked in the statistics instead (``evaluation.stats``: the fine-tuned model's
share of the left side, with its test). A rater never gets the same texts (conversation and both answers)
twice, even across evaluations: the sides revealed in one would give away the other's; a repeat is the
one exception, on purpose.

Rater quality, decided on the server and invisible in anything a rater gets before the vote:

- **Gold pairs** (``GoldItem``, ``read_gold_items``): a prompt with a known better and a known worse answer,
  which the admin supplies (a gold file) or ``evaluation.gold`` makes from a split's reference answers (a prompt's
  own answer against another prompt's). They are mixed in
  at ``RaterChecks.gold_rate`` gold pairs per arm pair a rater gets; whether the vote picked the better
  answer is stored with it. They belong to no arm and never enter the ratings of the arms.
- **Repeats**: ``RaterChecks.repeat_rate`` of the arm pairs a rater voted on come back to them later with the sides
  swapped, never straight after the original. The two-arm figures count the original only; the ratings
  count one vote per rater, prompt and pair of arms (``evaluation.ratings.count_once``).
- **Vote cap**: ``RaterChecks.vote_cap`` votes per rater in the evaluation; the next pair past it is refused
  (``VoteCapReached``).
- **Answers that name their model** (``model_named``: "as SmolLM", "I am Qwen", the base model's, a run's or
  an arm's name) are flagged on their pair when the evaluation is created; the vote is still taken and the
  flag goes to the statistics (``Comparison.flagged``).

Gold pairs and repeats are drawn at random among the rater's remaining pairs (each kind in proportion to
how many of it are left), issued, shown and voted like any other pair, and counted in the rater's
progress (``done`` / ``total``) from their first pair on: the total does not move when one comes.

A vote and the next pair are a handful of SQLite statements (``record_vote``: 2 in one transaction,
``next_pair``: 4 without gold pairs or repeats, 3 of them in one transaction), and the writes of one process
take turns on a lock rather than in SQLite's busy handler, which sleeps up to 100 ms between tries.

Example::

    arms = [Arm("base", "base"), Arm("run 3", "run", run_id=3), Arm("run 4", "run", run_id=4)]
    eid = create_evaluation(ws, "round 2", items, arms=arms, base_model="SmolLM2-135M-Instruct", overlap=2,
                            gold=gold_items, checks=RaterChecks(gold_rate=0.1, repeat_rate=0.1, vote_cap=200))
    pair = next_pair(ws, eid, "ana")                 # BlindPair: prompt, response_a, response_b
    reveal = record_vote(ws, pair.assignment_id, "ana", "A", comment="clearer")
    comparisons = evaluation_comparisons(ws, eid)    # every vote in the arms' terms, for evaluation.ratings
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from core.errors import TuneloopError
from core.options import Options, option
from core.workspace import Workspace
from evaluation.ratings import Comparison

VERDICTS = ("A", "B", "tie", "both_bad")
VERDICT_WORDS = {"A": "A is better", "B": "B is better", "tie": "a tie", "both_bad": "both bad"}
SIDES = ("A", "B")
ARM_KINDS = ("base", "prompted", "run", "endpoint")
# How a reveal and the ratings name the two answers of a gold pair (they belong to no arm).
GOLD_BETTER, GOLD_WORSE = "the known better answer", "the known worse answer"
# A comment or corrected answer longer than this is refused: no real answer needs more, and a hosted
# server must not store whatever size a script sends.
MAX_TEXT_CHARS = 20_000
# Model families an answer may name itself by. Those in ``NAMED_ANYWHERE`` are flagged wherever they appear
# (no customer writes "Qwen"); the others ("Phi", "Gemini", "Mistral" are also plain words) only in a phrase
# that names the speaker ("as Llama", "I am Claude").
MODEL_FAMILIES = ("SmolLM", "Qwen", "Llama", "TinyLlama", "Mistral", "Mixtral", "Gemma", "Phi", "GPT", "ChatGPT",
                  "Claude", "Gemini", "DeepSeek", "Falcon", "OLMo", "Vicuna", "Zephyr")
NAMED_ANYWHERE = ("SmolLM", "Qwen", "TinyLlama", "ChatGPT", "DeepSeek", "GPT-3", "GPT-4")
_SPEAKER = (r"\b(?:as|i am|i'm|i’m|this is|my name is|called|named|i was (?:made|trained|built|created) (?:by|as))"
            r"\s+(?:an?\s+|the\s+)?")


class VoteRefused(TuneloopError):
    """The server refused a vote: not issued to this rater, already voted, or not a verdict."""


class VoteCapReached(VoteRefused):
    """The rater has cast as many votes in the evaluation as its admin allowed one rater."""


@dataclass(frozen=True)
class Arm:
    """One thing that answers the prompts of an evaluation.

    ``kind`` is base (the base model as it is), prompted (the base with a system prompt and examples in
    ``settings``), run (a training run's adapter: ``run_id``, or an adapter folder in ``settings``) or endpoint
    (an OpenAI-compatible server: url and model in ``settings``). ``name`` is what statistics call it.
    """
    name: str
    kind: str
    run_id: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def shown_name(self, base_model: str) -> str:
        """How a reveal names the arm: what it is, with the model behind it."""
        if self.kind == "base":
            return f"{self.name} ({base_model})"
        if self.kind == "run":
            if not self.run_id:
                return self.name
            return f"fine-tuned ({self.name})" if self.name == f"run {self.run_id}" else \
                f"{self.name} (fine-tuned, run {self.run_id})"
        if self.kind == "prompted":
            return f"{self.name} ({base_model} with a prompt)"
        return f"{self.name} (endpoint)"


@dataclass(frozen=True)
class EvalItem:
    """One prompt of an evaluation with every arm's answer (the input to ``create_evaluation``).

    ``responses`` maps an arm's name to its answer. A two-arm evaluation made without ``arms`` reads
    ``base_response`` and ``finetuned_response`` instead."""
    prompt_id: str
    messages: list[dict[str, str]]       # the conversation up to and including the last user turn
    base_response: str = ""
    finetuned_response: str = ""
    label: str | None = None
    split: str | None = None
    responses: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GoldItem:
    """A prompt whose better answer is known (the admin's own, or the reference against a degraded copy): a gold
    pair that tests the raters. It belongs to no arm."""
    prompt_id: str
    messages: list[dict[str, str]]       # the conversation up to and including the last user turn
    better: str
    worse: str
    label: str | None = None
    split: str | None = None
    made_from: str | None = None         # what ``evaluation.gold`` made it from; None: the admin's own gold pair


@dataclass(frozen=True)
class RaterChecks(Options):
    """How an evaluation checks its raters (the module's docstring says how each check works). The CLI's flags
    and the Prepare form come from these fields."""
    what = "rater checks"
    gold_rate: float = option(0.0, "gold pairs mixed in per pair of arms a rater gets (0.1: one in ten); needs "
                                   "gold pairs", min=0.0, max=1.0)
    repeat_rate: float = option(0.0, "share of the pairs a rater voted on shown to them again later, the sides "
                                     "swapped", min=0.0, max=1.0)
    vote_cap: int | None = option(None, "the most votes one rater may cast in the evaluation (empty: no cap)", min=1)


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
    pairs_per_prompt: int | None = None
    gold_rate: float = 0.0
    repeat_rate: float = 0.0
    vote_cap: int | None = None
    num_pairs: int = 0
    num_votes: int = 0
    arms: tuple[str, ...] = ()

    def describe(self) -> str:
        return (f"#{self.id} {self.name} · {' vs '.join(self.arms)} (on {self.base_model}) · {self.num_pairs} pairs · "
                f"{self.overlap} rater(s) per pair · {self.num_votes} votes" + "".join(
                    f" · {check}" for check in self.checks_text()))

    def checks_text(self) -> list[str]:
        """The rater checks it was made with, in words (the gold pairs' origin from its settings), for the admin."""
        out = []
        gold = self.settings.get("gold")
        if self.gold_rate or gold:
            text = f"gold pairs at rate {self.gold_rate:g}"
            if gold:
                own = gold["pairs"] - gold["from_references"]
                origin = [f"{gold['from_references']} from {', '.join(gold['made_from'])}"] if gold["made_from"] else []
                text += f": {gold['pairs']} (" + "; ".join(origin + ([f"{own} from a gold file"] if own else [])) + ")"
            out.append(text)
        if self.repeat_rate:
            out.append(f"swapped repeats at rate {self.repeat_rate:g}")
        if self.vote_cap:
            out.append(f"at most {self.vote_cap} votes per rater")
        return out


@dataclass(frozen=True)
class BlindPair:
    """What a rater may see before voting. Deliberately holds no arm name, no side mapping and nothing that
    tells a gold pair or a repeat from any other pair."""
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
    outcome: str                         # the pair's second arm (finetuned) or first (base) won, tie, both_bad
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
                      arms: Iterable[Arm] | None = None, adapter: str | None = None, run_id: int | str | None = None,
                      dataset_version: int | None = None, overlap: int = 1, guidelines: str = "",
                      settings: dict[str, Any] | None = None, created_by: str | None = None,
                      pairs_per_prompt: int | None = None, gold: Iterable[GoldItem] = (),
                      checks: RaterChecks | None = None) -> int:
    """Store an evaluation, its arms and its pairs in one transaction; returns its id.

    Without ``arms`` it compares the base (``base_response``) with ``run_id``'s run (``finetuned_response``).
    ``pairs_per_prompt`` (default: every pair of arms), the gold pairs and the rater ``checks`` are described
    in the module's docstring.
    """
    items, gold, checks = list(items), list(gold), (checks or RaterChecks()).validate()
    run = run_key(ws, run_id)
    if arms is None:
        arms = [Arm("base", "base"), Arm(f"run {run}" if run else "fine-tuned", "run", run_id=run)]
        items = [dataclasses.replace(it, responses={arms[0].name: it.base_response,
                                                    arms[1].name: it.finetuned_response}) for it in items]
    arms = _checked_arms(ws, list(arms))
    if not items:
        raise TuneloopError("an evaluation needs at least one prompt with every arm's answer")
    if int(overlap) < 1:
        raise TuneloopError(f"raters per pair must be at least 1 (got {overlap})")
    _check_prompts(items, "prompt")
    _check_prompts(gold, "gold prompt")
    for item in items:
        missing = [a.name for a in arms if not isinstance(item.responses.get(a.name), str)]
        if missing:
            raise TuneloopError(f"prompt '{item.prompt_id}' has no answer from {', '.join(missing)}; every arm must "
                                f"answer every prompt (generate the answers again)")
    combos = list(itertools.combinations(range(len(arms)), 2))
    per_prompt = _checked_pairs(len(combos), pairs_per_prompt, gold, checks)
    if run is None:
        runs = {a.run_id for a in arms if a.kind == "run" and a.run_id}
        run = runs.pop() if len(runs) == 1 else None
    if adapter is None:
        folders = {a.settings.get("adapter") for a in arms if a.kind == "run"}
        adapter = folders.pop() if len(folders) == 1 else None
    names = _own_names(ws, arms, base_model)
    if gold:     # where the gold pairs came from, beside the decoding settings, so the report can say so
        made = [g.made_from for g in gold if g.made_from]
        settings = {**(settings or {}), "gold": {"pairs": len(gold), "from_references": len(made),
                                                 "made_from": sorted(set(made))}}
    order = list(range(len(items)))
    secrets.SystemRandom().shuffle(order)     # which prompts get which pairs of arms: not the prompts' order
    with ws.transaction() as db:
        eid = db.execute(
            "insert into evaluations (name, run_id, base_model, adapter, dataset_version, overlap, guidelines,"
            " settings, created_by, pairs_per_prompt, gold_rate, repeat_rate, vote_cap)"
            " values (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (name.strip() or "evaluation", run, base_model, adapter, dataset_version, int(overlap), guidelines,
             json.dumps(settings or {}, sort_keys=True), created_by, pairs_per_prompt, checks.gold_rate,
             checks.repeat_rate, checks.vote_cap)).lastrowid
        arm_ids = [db.execute("insert into eval_arms (evaluation_id, name, kind, run_id, settings, position)"
                              " values (?,?,?,?,?,?)", (eid, a.name, a.kind, a.run_id,
                                                        json.dumps(a.settings, ensure_ascii=False, sort_keys=True), n)
                              ).lastrowid for n, a in enumerate(arms)]
        rows = []
        for turn, index in enumerate(order):
            item = items[index]
            messages = json.dumps(item.messages, ensure_ascii=False)
            flags = {a.name: said for a in arms if (said := model_named(item.responses[a.name], names))}
            for k in range(per_prompt):
                i, j = combos[(turn * per_prompt + k) % len(combos)]
                first, second = item.responses[arms[i].name], item.responses[arms[j].name]
                pair_flags = {n: flags[n] for n in (arms[i].name, arms[j].name) if n in flags}
                rows.append((eid, item.prompt_id, messages, item.label, item.split, arm_ids[i], arm_ids[j], first,
                             second, pair_text_key(messages, first, second), 0,
                             json.dumps(pair_flags, ensure_ascii=False)))
        for g in gold:
            messages = json.dumps(g.messages, ensure_ascii=False)
            rows.append((eid, g.prompt_id, messages, g.label, g.split, None, None, g.better, g.worse,
                         pair_text_key(messages, g.better, g.worse), 1, "{}"))
        db.executemany(
            "insert into eval_pairs (evaluation_id, prompt_id, messages, label, split, first_arm, second_arm,"
            " first_response, second_response, text_key, gold, names_model) values (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    return eid


def _checked_arms(ws: Workspace, arms: list[Arm]) -> list[Arm]:
    if len(arms) < 2:
        raise TuneloopError("an evaluation compares at least two arms (e.g. the base and a run)")
    names = [a.name.strip() for a in arms]
    if not all(names):
        raise TuneloopError("every arm needs a name (the statistics show it)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TuneloopError(f"two arms are called {', '.join(twice)}; give each arm its own name")
    checked = []
    for arm, name in zip(arms, names):
        if arm.kind not in ARM_KINDS:
            raise TuneloopError(f"arm '{name}' is of kind '{arm.kind}'; choose one of {', '.join(ARM_KINDS)}")
        run = run_key(ws, arm.run_id) if arm.kind == "run" else None
        checked.append(dataclasses.replace(arm, name=name, run_id=run))
    return checked


def _check_prompts(items: list[EvalItem] | list[GoldItem], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.prompt_id in seen:
            raise TuneloopError(f"{what} '{item.prompt_id}' appears twice; each prompt is rated once per evaluation")
        seen.add(item.prompt_id)
        if not item.messages or item.messages[-1]["role"] != "user":
            raise TuneloopError(f"{what} '{item.prompt_id}' must end with a user turn")


def _checked_pairs(combos: int, pairs_per_prompt: int | None, gold: list[GoldItem], checks: RaterChecks) -> int:
    """The pairs of arms each prompt gets, once they and the gold pairs are checked."""
    if pairs_per_prompt is not None and not 1 <= int(pairs_per_prompt) <= combos:
        raise TuneloopError(f"pairs of arms per prompt must be between 1 and {combos} (every pair of these arms); "
                            f"got {pairs_per_prompt}")
    if checks.gold_rate and not gold:
        raise TuneloopError("a gold rate needs gold pairs: prompts with a known better and worse answer (a gold "
                            "file: one JSON object per line with prompt, better and worse)")
    for g in gold:
        if " ".join(g.better.split()) == " ".join(g.worse.split()):
            raise TuneloopError(f"gold prompt '{g.prompt_id}' has the same better and worse answer; a gold pair needs "
                                f"two different answers")
    return int(pairs_per_prompt or combos)


def read_gold_items(path: str | Path) -> list[GoldItem]:
    """Gold pairs from a JSONL file: per line ``better``, ``worse`` and the prompt as ``messages`` (ending with the
    user turn) or ``prompt`` (one user turn); ``prompt_id`` (default gold-LINE) and ``label`` optional."""
    path = Path(path)
    if not path.is_file():
        raise TuneloopError(f"gold file '{path}' does not exist")
    out, problems = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {n}: expected an object with prompt, better and worse")
            continue
        messages = row.get("messages") or ([{"role": "user", "content": row["prompt"]}]
                                           if isinstance(row.get("prompt"), str) else None)
        missing = [k for k in ("better", "worse") if not isinstance(row.get(k), str) or not row[k].strip()]
        if messages is None:
            missing.insert(0, "prompt (or messages)")
        if missing:
            problems.append(f"line {n}: missing {', '.join(missing)}")
            continue
        out.append(GoldItem(str(row.get("prompt_id") or f"gold-{n}"), messages, better=row["better"],
                            worse=row["worse"], label=row.get("label")))
    if problems:
        raise TuneloopError(f"{path}: " + "; ".join(problems[:5]) + ("; …" if len(problems) > 5 else ""))
    if not out:
        raise TuneloopError(f"{path} holds no gold pairs; write one JSON object per line with prompt, better and worse")
    return out


def model_named(text: str, names: Iterable[str] = ()) -> str | None:
    """The words of an answer that name the model that wrote it ("I am Qwen", "As SmolLM2, I"), else None.

    ``names`` are the evaluation's own (base model, runs, arms); a name that is a plain lowercase word ("base",
    "tiny") would be found in ordinary answers and is left out. They and most families count only in a phrase
    that names the speaker; ``NAMED_ANYWHERE`` count wherever they appear."""
    own = {n.strip() for n in names if n and n.strip() and not re.fullmatch(r"[a-z]+", n.strip())}
    spoken = "|".join(re.escape(n) for n in sorted(own | set(MODEL_FAMILIES), key=len, reverse=True))
    found = re.search(_SPEAKER + rf"(?:{spoken})[\w.\-]*", text, re.IGNORECASE)
    if found is None:
        anywhere = "|".join(re.escape(n) for n in NAMED_ANYWHERE)
        found = re.search(rf"\b(?:{anywhere})[\w.\-]*", text, re.IGNORECASE)
    return found.group(0).strip() if found else None


def _own_names(ws: Workspace, arms: list[Arm], base_model: str) -> list[str]:
    """What the arms of an evaluation are called anywhere: the arms, their runs, and the models behind them with
    their short names (HuggingFaceTB/SmolLM2-135M-Instruct: SmolLM2-135M-Instruct and SmolLM2)."""
    runs = [a.run_id for a in arms if a.run_id]
    run_names = [r[0] for r in ws.db.execute(f"select name from runs where id in ({','.join('?' * len(runs))})",
                                             runs)] if runs else []
    models = [base_model, *(str(a.settings.get("model") or "") for a in arms if a.kind == "endpoint")]
    short = [m.rsplit("/", 1)[-1] for m in models]
    return [*(a.name for a in arms), *run_names, *models, *short, *(m.split("-")[0] for m in short)]


def evaluation_arms(ws: Workspace, evaluation_id: int | str) -> list[Arm]:
    """The arms of an evaluation, in the order they were given (the first is the reference, usually the base)."""
    eid = get_evaluation(ws, evaluation_id).id
    return [Arm(r["name"], r["kind"], run_id=r["run_id"], settings=json.loads(r["settings"]))
            for r in ws.db.execute("select * from eval_arms where evaluation_id=? order by position", (eid,))]


_EVALUATION_COLUMNS = (
    "select e.*, (select count(*) from eval_pairs p where p.evaluation_id=e.id) as num_pairs,"
    " (select count(*) from eval_votes v join eval_assignments a on a.id=v.assignment_id"
    "  join eval_pairs p on p.id=a.pair_id where p.evaluation_id=e.id) as num_votes,"
    " (select json_group_array(name) from (select name from eval_arms where evaluation_id=e.id order by position))"
    "  as arms from evaluations e")


def get_evaluation(ws: Workspace, evaluation_id: int | str) -> Evaluation:
    eid = parse_evaluation_id(evaluation_id)
    row = ws.db.execute(f"{_EVALUATION_COLUMNS} where e.id=?", (eid,)).fetchone()
    if row is None:
        raise TuneloopError(f"there is no evaluation #{eid} in this workspace; `python -m evaluation report` "
                            f"needs the number shown when it was generated")
    return _evaluation_from_row(row)


def list_evaluations(ws: Workspace) -> list[Evaluation]:
    return [_evaluation_from_row(r) for r in ws.db.execute(f"{_EVALUATION_COLUMNS} order by e.id desc").fetchall()]


def set_guidelines(ws: Workspace, evaluation_id: int, text: str) -> None:
    get_evaluation(ws, evaluation_id)
    ws.db.execute("update evaluations set guidelines=? where id=?", (text, evaluation_id))


def close_evaluation(ws: Workspace, evaluation_id: int | str, *, closed_by: str | None = None,
                     reason: str = "") -> Evaluation:
    """Close an evaluation to new votes (the admin stops early, e.g. once the sequential test has decided):
    ``next_pair`` issues no pair any more; a pair already on a rater's screen can still be voted. Stored in the
    evaluation's settings (``closed``: when, by whom, why), so its figures can say so."""
    from datetime import datetime, timezone
    evaluation = get_evaluation(ws, evaluation_id)
    closed = {"at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "by": closed_by, "reason": reason}
    ws.db.execute("update evaluations set settings=? where id=?",
                  (json.dumps({**evaluation.settings, "closed": closed}, sort_keys=True), evaluation.id))
    return get_evaluation(ws, evaluation.id)


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
    d["arms"] = tuple(json.loads(d["arms"]))
    return Evaluation(**d)


# -- issuing pairs ----------------------------------------------------------------------------

def next_pair(ws: Workspace, evaluation_id: int, rater: str) -> BlindPair | None:
    """The pair this rater should judge next, or None when nothing is left for them.

    A pair issued earlier and not yet voted comes back first (leave and resume). Otherwise, at random in
    proportion to how many of each are left to this rater: an arm pair they have never seen (nor its texts
    in another evaluation) that still has fewer than k raters, preferring the least-covered; a gold pair;
    or a repeat of a pair they voted on, not the last one, with the sides swapped. A new pair's sides are a
    fair coin. Refused (``VoteCapReached``) once the rater has cast the evaluation's vote cap; None once the
    admin closed it (``close_evaluation``). Issuing happens inside one transaction so two raters cannot both
    take a pair's last slot.
    """
    rater = _check_rater(rater)
    args = {"evaluation": parse_evaluation_id(evaluation_id), "rater": rater}
    with _writing(ws) as db:
        state = _rater_state(db, args)
        if state["closed"]:
            return None
        cap = state["vote_cap"]
        if state["open_id"] is not None:
            assignment_id, done = state["open_id"], state["issued"] - 1
            left = _left_to_issue(db, args, state, _count_open_pairs(db, args))
        else:
            pick = db.execute(_PICK_PAIR, args).fetchone()
            left = _left_to_issue(db, args, state, pick["open"])
            drawn = _draw(left)
            if drawn is None:
                return None
            if cap is not None and state["issued"] >= cap:
                raise VoteCapReached(f"You have rated {state['issued']}, the cap the admin set for this evaluation; "
                                     f"thank you, your votes are saved")
            if drawn == "repeat":
                original = secrets.choice(left.repeatable)
                pair_id, side, repeat = original["pair_id"], "B" if original["second_side"] == "A" else "A", 1
            else:
                pair_id = pick["pair_id"] if drawn == "arms" else secrets.choice(left.gold_ids)
                side, repeat = secrets.choice(SIDES), 0
            assignment_id = db.execute(
                "insert into eval_assignments (pair_id, rater, second_side, repeat) values (?,?,?,?)",
                (pair_id, rater, side, repeat)).lastrowid
            done = state["issued"]
    total = state["issued"] + left.count
    return _blind_pair(ws.db, assignment_id, done=done, total=min(total, cap) if cap is not None else total)


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
    """Votes cast by this rater, and how many pairs they can still get (their open one, gold pairs and repeats
    included), at most the vote cap."""
    rater = _check_rater(rater)
    args = {"evaluation": parse_evaluation_id(evaluation_id), "rater": rater}
    db = ws.db
    state = _rater_state(db, args)
    is_open = state["open_id"] is not None
    total = state["issued"] + _left_to_issue(db, args, state, _count_open_pairs(db, args)).count
    if state["vote_cap"] is not None:
        total = min(total, state["vote_cap"])
    return Progress(done=state["issued"] - is_open, total=total, open_assignment=state["open_id"])


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


# This rater in one evaluation: its rater checks, whether the admin closed it, the pair issued and not yet voted
# on, and how many pairs were issued to them (votes + the open one); with gold pairs or repeats, how many of each were issued. Everything
# goes through the (rater, pair) index.
_MINE = "from eval_assignments a join eval_pairs p on p.id=a.pair_id where a.rater=:rater and p.evaluation_id=e.id"
_RATER_STATE = (
    "select e.id, e.gold_rate, e.repeat_rate, e.vote_cap, json_extract(e.settings, '$.closed') is not null as closed,"
    " (select a.id from eval_assignments a join eval_pairs p on p.id=a.pair_id"
    "  left join eval_votes v on v.assignment_id=a.id"
    "  where a.rater=:rater and p.evaluation_id=e.id and v.id is null order by a.id limit 1) as open_id,"
    f" (select count(*) {_MINE}) as issued,"
    f" case when e.gold_rate > 0 then (select count(*) {_MINE} and p.gold=1) else 0 end as gold_issued,"
    f" case when e.repeat_rate > 0 then (select count(*) {_MINE} and a.repeat=1) else 0 end as repeats_issued"
    " from evaluations e where e.id=:evaluation")

# Texts of pairs this rater was given in other evaluations: never shown to them again.
_SEEN_ELSEWHERE = (
    "select q.text_key from eval_assignments s join eval_pairs q on q.id=s.pair_id where s.rater=:rater"
    " and q.evaluation_id != :evaluation and q.text_key is not null")

# Arm pairs this rater may still get, with their raters so far: not given to them, a slot free (repeats take
# none), and not the texts of a pair they were given in another evaluation (filtered in SQLite: building Python
# rows for every pair was most of a vote's time with 50 raters).
_OPEN_PAIRS = (
    "select p.id, count(a.id) as n from eval_pairs p left join eval_assignments a on a.pair_id=p.id and a.repeat=0"
    f" where p.evaluation_id=:evaluation and p.gold=0 and p.text_key not in ({_SEEN_ELSEWHERE})"
    " group by p.id having coalesce(sum(a.rater = :rater), 0) = 0"
    " and count(a.id) < (select overlap from evaluations where id=:evaluation)")

# How many arm pairs are open to the rater, and one of the least-covered ones at random (SQLite's random()
# only orders the pairs; the side comes from ``secrets``).
_PICK_PAIR = (f"with open as materialized ({_OPEN_PAIRS}) select (select count(*) from open) as open,"
              " (select id from open where n = (select min(n) from open) order by random() limit 1) as pair_id")

# Gold pairs this rater has not had (every rater may get every gold pair; no overlap applies).
_OPEN_GOLD = (
    "select p.id from eval_pairs p where p.evaluation_id=:evaluation and p.gold=1"
    " and not exists (select 1 from eval_assignments a where a.pair_id=p.id and a.rater=:rater)"
    f" and p.text_key not in ({_SEEN_ELSEWHERE})")

# Arm pairs this rater voted on and has not had again, except the last one they were given (a repeat is never
# next to its original).
_REPEATABLE = (
    "select a.pair_id, a.second_side from eval_assignments a join eval_pairs p on p.id=a.pair_id"
    " join eval_votes v on v.assignment_id=a.id"
    " where a.rater=:rater and p.evaluation_id=:evaluation and p.gold=0 and a.repeat=0"
    " and a.id != (select max(b.id) from eval_assignments b join eval_pairs q on q.id=b.pair_id"
    "  where b.rater=:rater and q.evaluation_id=:evaluation)"
    " and not exists (select 1 from eval_assignments r where r.pair_id=a.pair_id and r.rater=:rater and r.repeat=1)")


@dataclass(frozen=True)
class _Left:
    """What a rater can still be given: arm pairs open to them, gold pairs and repeats still due."""
    arms: int
    gold: int = 0
    repeats: int = 0
    gold_ids: list[int] = field(default_factory=list)
    repeatable: list[sqlite3.Row] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.arms + self.gold + self.repeats


def _share(rate: float, n: int) -> int:
    return int(rate * n + 0.5)


def _left_to_issue(db: sqlite3.Connection, args: dict[str, Any], state: sqlite3.Row, open_arms: int) -> _Left:
    """Gold pairs and repeats are due in proportion to the arm pairs the rater gets (those issued and those still
    open): their number stays the same as pairs of any kind are issued, so the total shown does not move."""
    if not state["gold_rate"] and not state["repeat_rate"]:
        return _Left(open_arms)
    arms_seen = state["issued"] - state["gold_issued"] - state["repeats_issued"] + open_arms
    gold_ids = [r[0] for r in db.execute(_OPEN_GOLD, args)] if state["gold_rate"] else []
    gold = max(0, min(_share(state["gold_rate"], arms_seen), state["gold_issued"] + len(gold_ids))
               - state["gold_issued"])
    repeats = max(0, _share(state["repeat_rate"], arms_seen) - state["repeats_issued"])
    repeatable = db.execute(_REPEATABLE, args).fetchall() if repeats and state["open_id"] is None else []
    return _Left(open_arms, gold, repeats, gold_ids, repeatable)


def _draw(left: _Left) -> str | None:
    """Which kind of pair comes next: arms, gold or repeat, at random in proportion to how many are left (a repeat
    only once one of the rater's pairs can be repeated); None when nothing can be issued."""
    weights = {"arms": left.arms, "gold": left.gold if left.gold_ids else 0,
               "repeat": left.repeats if left.repeatable else 0}
    total = sum(weights.values())
    if total == 0:
        return None
    ticket = secrets.randbelow(total)
    for kind, weight in weights.items():
        if ticket < weight:
            return kind
        ticket -= weight
    raise AssertionError("unreachable: the ticket is below the total weight")


def _rater_state(db: sqlite3.Connection, args: dict[str, Any]) -> sqlite3.Row:
    state = db.execute(_RATER_STATE, args).fetchone()
    if state is None:
        raise TuneloopError(f"there is no evaluation #{args['evaluation']} in this workspace; choose one from "
                            f"the list (an admin prepares them at the top of the Rate tab)")
    return state


def _count_open_pairs(db: sqlite3.Connection, args: dict[str, Any]) -> int:
    return db.execute(f"select count(*) from ({_OPEN_PAIRS})", args).fetchone()[0]


def _blind_pair(db: sqlite3.Connection, assignment_id: int, *, done: int, total: int) -> BlindPair:
    row = db.execute(
        "select a.second_side, p.evaluation_id, p.messages, p.first_response, p.second_response"
        " from eval_assignments a join eval_pairs p on p.id=a.pair_id where a.id=?", (assignment_id,)).fetchone()
    messages = json.loads(row["messages"])
    if row["second_side"] == "A":
        text_a, text_b = row["second_response"], row["first_response"]
    else:
        text_a, text_b = row["first_response"], row["second_response"]
    return BlindPair(assignment_id=assignment_id, evaluation_id=row["evaluation_id"], context=messages[:-1],
                     prompt=messages[-1]["content"], response_a=text_a, response_b=text_b, done=done, total=total)


def _check_rater(rater: str | None) -> str:
    name = (rater or "").strip()
    if not name:
        raise VoteRefused("type your name (or sign in) before rating, so your votes count once and as yours")
    return name


# -- votes ----------------------------------------------------------------------------------

def record_vote(ws: Workspace, assignment_id: int, rater: str, verdict: str, *, comment: str = "",
                corrected_answer: str | None = None) -> Reveal:
    """Store one vote after checking, on the server, that it may be cast; then reveal the sides.

    Refused (``VoteRefused``) when the pair was not issued to this rater, was already voted on, or
    the verdict is not one of A, B, tie, both_bad, or the comment or corrected answer is longer than
    ``MAX_TEXT_CHARS``. Check and insert share one transaction. On a gold pair, whether the known better
    answer won is stored with the vote.
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
            "select a.rater, a.second_side, p.evaluation_id, p.gold, e.base_model, v.id as vote_id,"
            " f.name as first_name, f.kind as first_kind, f.run_id as first_run,"
            " s.name as second_name, s.kind as second_kind, s.run_id as second_run"
            " from eval_assignments a join eval_pairs p on p.id=a.pair_id join evaluations e on e.id=p.evaluation_id"
            " left join eval_arms f on f.id=p.first_arm left join eval_arms s on s.id=p.second_arm"
            " left join eval_votes v on v.assignment_id=a.id where a.id=?", (int(assignment_id),)).fetchone()
        if row is None or row["rater"] != rater:
            raise VoteRefused("this pair was not issued to you, so the vote was not counted")
        if row["vote_id"] is not None:
            raise VoteRefused("you have already voted on this pair; each rater votes once per pair")
        outcome = pair_outcome(verdict, row["second_side"])
        vote_id = db.execute(
            "insert into eval_votes (assignment_id, verdict, outcome, gold_correct, comment, corrected_answer)"
            " values (?,?,?,?,?,?)",
            (int(assignment_id), verdict, outcome, int(outcome == "first") if row["gold"] else None,
             (comment or "").strip(), corrected)).lastrowid
    if row["gold"]:
        first, second = GOLD_BETTER, GOLD_WORSE
    else:
        first, second = (Arm(row[f"{n}_name"], row[f"{n}_kind"], run_id=row[f"{n}_run"]).shown_name(row["base_model"])
                         for n in ("first", "second"))
    model_a, model_b = (second, first) if row["second_side"] == "A" else (first, second)
    return Reveal(vote_id=vote_id, evaluation_id=row["evaluation_id"], verdict=verdict,
                  outcome={"first": "base", "second": "finetuned"}.get(outcome, outcome),
                  model_a=model_a, model_b=model_b)


def pair_outcome(verdict: str, second_side: str) -> str:
    """A verdict on sides (A/B/tie/both_bad) in the pair's terms: its first or second arm won, tie, both_bad."""
    if verdict in ("tie", "both_bad"):
        return verdict
    return "second" if verdict == second_side else "first"


@dataclass(frozen=True)
class VoteRow:
    """A stored vote in two-arm terms (one arm as the base, the other as the fine-tuned model) with everything
    feedback and the two-arm statistics need (server side only)."""
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


def evaluation_votes(ws: Workspace, evaluation_id: int, *, arms: tuple[str, str] | None = None) -> list[VoteRow]:
    """The votes on the pairs of two arms, as base (``arms[0]``) against fine-tuned (``arms[1]``); by default the
    evaluation's first arm against its last (a two-arm evaluation: the base against the run). Gold pairs are left
    out, and so are repeats: a rater's vote on a prompt counts once, the first time."""
    own = [a.name for a in evaluation_arms(ws, evaluation_id)]
    base, tuned = arms or (own[0], own[-1])
    for name in (base, tuned):
        if name not in own:
            raise TuneloopError(f"evaluation #{evaluation_id} has no arm '{name}'; its arms are {', '.join(own)}")
    rows = ws.db.execute(
        "select v.id as vote_id, p.id as pair_id, p.evaluation_id, p.prompt_id, a.rater, v.verdict,"
        " case when v.outcome in ('tie', 'both_bad') then v.outcome"
        "  when (v.outcome = 'second') = (s.name = :tuned) then 'finetuned' else 'base' end as outcome,"
        " case when s.name = :tuned then a.second_side when a.second_side = 'A' then 'B' else 'A' end"
        "  as finetuned_side,"
        " v.comment, v.corrected_answer, p.label, v.voted_at from eval_votes v"
        " join eval_assignments a on a.id=v.assignment_id join eval_pairs p on p.id=a.pair_id"
        " join eval_arms f on f.id=p.first_arm join eval_arms s on s.id=p.second_arm"
        " where p.evaluation_id=:evaluation and a.repeat=0"
        " and ((f.name=:base and s.name=:tuned) or (f.name=:tuned and s.name=:base)) order by v.id",
        {"evaluation": parse_evaluation_id(evaluation_id), "base": base, "tuned": tuned}).fetchall()
    return [VoteRow(**dict(r)) for r in rows]


def evaluation_comparisons(ws: Workspace, evaluation_id: int) -> list[Comparison]:
    """Every vote of an evaluation in the arms' terms (``evaluation.ratings.Comparison``), in the order cast.

    Repeats are here as a second vote on the same prompt and arms, sides swapped: ``ratings.count_once`` counts
    each rater once per prompt and pair of arms (and says how many it dropped), and the repeat consistency
    reads both. A gold pair's arms are ``GOLD_BETTER`` and ``GOLD_WORSE``, with ``gold`` naming the better;
    ``flagged`` says which answer named its model."""
    eid = get_evaluation(ws, evaluation_id).id
    rows = ws.db.execute(
        "select p.prompt_id, a.rater, a.second_side, v.verdict, p.label, p.gold, p.names_model,"
        " f.name as first, s.name as second from eval_votes v join eval_assignments a on a.id=v.assignment_id"
        " join eval_pairs p on p.id=a.pair_id left join eval_arms f on f.id=p.first_arm"
        " left join eval_arms s on s.id=p.second_arm where p.evaluation_id=? order by v.id", (eid,)).fetchall()
    out = []
    for r in rows:
        first, second = (GOLD_BETTER, GOLD_WORSE) if r["gold"] else (r["first"], r["second"])
        left, right = (second, first) if r["second_side"] == "A" else (first, second)
        named = json.loads(r["names_model"])
        out.append(Comparison(r["prompt_id"], r["rater"], left=left, right=right,
                              outcome={"A": "left", "B": "right"}.get(r["verdict"], r["verdict"]), label=r["label"],
                              gold=GOLD_BETTER if r["gold"] else None,
                              flagged="; ".join(f"{arm}'s answer says '{said}'" for arm, said in named.items())
                              or None))
    return out


def raters(ws: Workspace, evaluation_id: int) -> list[str]:
    return [r[0] for r in ws.db.execute(
        "select distinct a.rater from eval_assignments a join eval_pairs p on p.id=a.pair_id"
        " where p.evaluation_id=? order by a.rater", (evaluation_id,))]
