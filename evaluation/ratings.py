"""Ratings across any number of arms from blind pairwise votes (the multi-arm half of the statistics).

An arm is whatever answered a prompt: the base model, the base with a prompt, a run, an external
endpoint. Every stored vote on a pair of arms becomes one ``Comparison`` in the arms' terms (which arm
was shown left, which right, and who won), so votes gathered anywhere can be rated the same way.
The two-arm figures (win rate, Wilson interval, sign test, position bias, alpha) stay in
``evaluation.stats``; this module holds what needs more than two arms, and the figures about raters.

- **Counted once**: every function here takes every stored vote, in the order they were cast, and counts
  one vote per rater, prompt and pair of arms: the rater's first (``count_once`` says how many it dropped),
  as the two-arm figures do. A repeat shown with the sides swapped is such a second vote; it feeds the
  repeat consistency only.
- **Bradley–Terry** (``arm_ratings``): P(i beats j) = 1 / (1 + exp(b_j - b_i)), fitted by maximum
  likelihood with scipy's L-BFGS-B. Ratings are on the logit scale with the reference arm (the base) at 0,
  so a rating of 0.69 means "wins 2 of 3 against the base". A tie counts as half a win each way;
  "both bad" says nothing about which arm is better and is left out of the fit, as are gold pairs (they
  test the raters). A weak Gaussian prior (standard deviation ``PRIOR_SD`` = 30 logits) keeps the rating of an
  arm that won or lost every comparison finite (``Ratings.unbounded`` names such arms and a note says so); on
  Agresti's baseball table it moves no rating by more than 0.001.
  Intervals are a seeded percentile bootstrap that resamples prompts, as the win-rate bootstrap does.
- **Win matrix** (``win_matrix``): for each pair of arms, wins, losses, ties and both-bad, and the win rate
  among decisive votes.
- **Rater quality** (``rater_quality``): gold accuracy, repeat consistency, position bias, agreement with
  the others and an outlier flag (``OUTLIER_RULE``); ``flagged_votes`` lists votes on answers that name
  their model.
- **How many votes** (``votes_to_decide``, ``sequential_test``): see their docstrings for the assumptions
  and error rates.

Any interval from fewer than ``ROUGH_BELOW`` prompts carries ``rough_note``.

Example::

    comparisons = [Comparison("p1", "ana", left="base", right="run 3", outcome="right"), ...]
    ratings = arm_ratings(comparisons, reference="base")
    [(r.arm, r.rating, r.low, r.high) for r in ratings.arms]
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable

OUTCOMES = ("left", "right", "tie", "both_bad")
BOOTSTRAP_RESAMPLES = 1000
ROUGH_BELOW = 10                 # prompts: an interval from fewer carries a caveat
PRIOR_SD = 30.0                  # logits: the weak prior that keeps a clean sweep's rating finite
MIN_CHECKS = 5                   # gold votes, repeats or shared pairs a rater needs before a rule can flag them
OUTLIER_RULE = (f"a rater is flagged when, on at least {MIN_CHECKS} checks of a kind, they get under 60% of gold "
                f"pairs right, give the same winner on under 60% of swapped repeats, or agree with the others' "
                f"majority on under 50% of shared pairs; or when the left side wins their decisive votes more "
                f"often than chance allows (sign test p < 0.01)")


@dataclass(frozen=True)
class Comparison:
    """One vote on one pair of arms: ``left`` was shown as A, ``right`` as B; ``outcome`` says which won."""
    prompt_id: str
    rater: str
    left: str               # arm name shown as A
    right: str              # arm name shown as B
    outcome: str            # left | right | tie | both_bad
    label: str | None = None
    gold: str | None = None         # on a gold pair: the arm whose answer is known to be better
    flagged: str | None = None      # why an answer of this pair was flagged (it names its model), else None

    @property
    def winner(self) -> str | None:
        """The arm that won; None for a tie or both bad."""
        return {"left": self.left, "right": self.right}.get(self.outcome)

    @property
    def loser(self) -> str | None:
        """The arm that lost; None for a tie or both bad."""
        return {"left": self.right, "right": self.left}.get(self.outcome)

    @property
    def arms(self) -> tuple[str, str]:
        """The two arms in name order, whichever side each was on."""
        return tuple(sorted((self.left, self.right)))

    @property
    def verdict(self) -> str:
        """The outcome without the sides: the winning arm's name, or tie / both_bad."""
        return self.winner or self.outcome


def count_once(comparisons: Iterable[Comparison]) -> tuple[list[Comparison], int]:
    """Each rater's first vote per prompt and pair of arms (in cast order), and how many later votes were dropped."""
    comparisons = list(comparisons)
    first: dict[tuple, int] = {}
    for i, c in enumerate(comparisons):
        first.setdefault((c.rater, c.prompt_id, c.arms), i)
    keep = sorted(first.values())
    return [comparisons[i] for i in keep], len(comparisons) - len(keep)


def rough_note(prompts: int) -> str | None:
    """The caveat an interval from fewer than ``ROUGH_BELOW`` prompts carries, else None."""
    if prompts >= ROUGH_BELOW:
        return None
    return f"only {prompts} prompt{'s' if prompts != 1 else ''}: this interval is rough"


# -- Bradley–Terry ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ArmRating:
    """One arm's Bradley–Terry rating (logit scale, the reference at 0) with its bootstrap 95% interval."""
    arm: str
    rating: float | None
    low: float | None
    high: float | None
    comparisons: int                # decisive votes and ties this arm took part in

    @property
    def against_reference(self) -> tuple[float | None, float | None, float | None]:
        """The same as the chance of beating the reference arm: point, low, high."""
        return tuple(None if v is None else 1 / (1 + math.exp(-v)) for v in (self.rating, self.low, self.high))


@dataclass
class Ratings:
    """What ``arm_ratings`` found: the arms best first, and what went into the fit."""
    reference: str
    arms: list[ArmRating]
    prompts: int                    # prompts with at least one decisive vote or tie
    used: int                       # votes in the fit
    both_bad: int                   # left out: both-bad says nothing about which arm is better
    gold: int                       # left out: gold pairs test the raters
    duplicates_dropped: int
    resamples: int
    seed: int
    unbounded: list[str] = field(default_factory=list)  # arms the votes do not tie to the reference both ways

    @property
    def rough_note(self) -> str | None:
        return rough_note(self.prompts)

    @property
    def duplicates_note(self) -> str | None:
        if not self.duplicates_dropped:
            return None
        return (f"{self.duplicates_dropped} repeated vote(s) by a rater on the same prompt and arms were counted "
                f"once (their first vote) in every figure but the repeat consistency.")

    def notes(self) -> list[str]:
        """What a reader of the ratings should know about how they were made, one sentence each."""
        notes = [f"Bradley–Terry on {self.used} votes from {self.prompts} prompts, {self.reference} at 0; a tie "
                 f"counts as half a win each way; {self.both_bad} both-bad vote(s) left out of the fit"
                 + (f", and {self.gold} vote(s) on gold pairs" if self.gold else "")
                 + f"; 95% intervals from {self.resamples} bootstrap resamples of the prompts (seed {self.seed})."]
        if self.duplicates_dropped:
            notes.append(self.duplicates_note)
        if self.unbounded:
            notes.append(f"{', '.join(self.unbounded)}: won (or lost) every vote against the other arms so far, so "
                         f"no finite rating fits; the rating and interval shown only say how far the prior lets it "
                         f"go. More votes will bring it in.")
        if self.rough_note:
            notes.append(f"⚠️ {self.rough_note}.")
        return notes


def _score_matrix(comparisons: list[Comparison], index: dict[str, int]):
    """S[i, j]: how often arm i beat arm j, a tie counting half to each; a both-bad vote scores nothing (it says
    nothing about which arm is better)."""
    import numpy as np
    s = np.zeros((len(index), len(index)))
    for c in comparisons:
        i, j = index[c.left], index[c.right]
        if c.outcome == "left":
            s[i, j] += 1
        elif c.outcome == "right":
            s[j, i] += 1
        elif c.outcome == "tie":
            s[i, j] += 0.5
            s[j, i] += 0.5
    return s


def _fit(scores, reference: int, start=None):
    """Bradley–Terry maximum likelihood (with the weak prior), the reference arm at 0.

    ``scores`` is one score matrix (k × k) or a stack of them (m × k × k, one per bootstrap resample): the
    stack is one objective, the sum of m independent ones, so one scipy call fits every resample at once.
    """
    import numpy as np
    from scipy.optimize import minimize
    stack = scores[None] if scores.ndim == 2 else scores
    m, k = stack.shape[0], stack.shape[1]
    free = [i for i in range(k) if i != reference]
    precision = 1 / PRIOR_SD ** 2

    def ratings(x):
        b = np.zeros((m, k))
        b[:, free] = x.reshape(m, k - 1)
        return b

    def objective(x):
        b = ratings(x)
        d = b[:, :, None] - b[:, None, :]
        loss = float((stack * np.logaddexp(0.0, -d)).sum() + 0.5 * precision * (x ** 2).sum())
        pull = stack / (1 + np.exp(d))        # -d(log sigmoid(d_ij)) / d(d_ij), weighted by S_ij
        grad = pull.sum(axis=1) - pull.sum(axis=2)
        return loss, (grad[:, free] + precision * b[:, free]).ravel()

    x0 = np.zeros(m * (k - 1)) if start is None else np.tile(np.asarray(start)[free], m)
    result = minimize(objective, x0, jac=True, method="L-BFGS-B",
                      options={"gtol": 1e-8, "ftol": 1e-15, "maxiter": 10_000})
    b = ratings(result.x)
    return b[0] if scores.ndim == 2 else b


def _unbounded(scores, arms: list[str], reference: int) -> list[str]:
    """Arms outside the reference's strongly connected part of the "scored against" graph: the maximum-likelihood
    ratings exist only when every arm has scored against every other through some chain (Zermelo, Ford 1957)."""
    from scipy.sparse.csgraph import connected_components
    _, part = connected_components(scores > 0, directed=True, connection="strong")
    seen = (scores.sum(axis=0) + scores.sum(axis=1)) > 0
    return [a for i, a in enumerate(arms) if seen[i] and part[i] != part[reference]]


def bradley_terry(comparisons: Iterable[Comparison], *, reference: str) -> dict[str, float]:
    """Bradley–Terry ratings of the arms in these votes (as counted, none dropped; both-bad votes score nothing),
    ``reference`` at 0."""
    comparisons = list(comparisons)
    names = sorted({a for c in comparisons for a in (c.left, c.right)} | {reference})
    index = {a: i for i, a in enumerate(names)}
    b = _fit(_score_matrix(comparisons, index), index[reference])
    return {a: float(b[i]) for a, i in index.items()}


def arm_ratings(comparisons: Iterable[Comparison], *, reference: str, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = 0) -> Ratings:
    """Every arm's rating with a percentile bootstrap 95% interval over prompts, best first.

    Votes are counted once (``count_once``); both-bad and gold votes are left out of the fit (the answers of a
    gold pair belong to no arm). An arm seen only in both-bad votes has no rating (None).
    """
    import numpy as np
    counted, dropped = count_once(comparisons)
    arms = sorted({a for c in counted if c.gold is None for a in (c.left, c.right)} | {reference})
    fitted = [c for c in counted if c.outcome != "both_bad" and c.gold is None]
    index = {a: i for i, a in enumerate(arms)}
    by_prompt: dict[str, list[Comparison]] = defaultdict(list)
    for c in fitted:
        by_prompt[c.prompt_id].append(c)
    taking_part = Counter(a for c in fitted for a in (c.left, c.right))
    summary = dict(reference=reference, prompts=len(by_prompt), used=len(fitted),
                   both_bad=sum(c.outcome == "both_bad" for c in counted),
                   gold=sum(c.gold is not None and c.outcome != "both_bad" for c in counted),
                   duplicates_dropped=dropped, resamples=resamples, seed=seed)
    if not fitted:
        return Ratings(arms=[ArmRating(a, None, None, None, 0) for a in arms], **summary)
    per_prompt = np.stack([_score_matrix(cs, index) for cs in by_prompt.values()])
    point = _fit(per_prompt.sum(axis=0), index[reference])
    low = high = [None] * len(arms)
    if len(by_prompt) >= 2:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(len(by_prompt), np.full(len(by_prompt), 1 / len(by_prompt)), size=resamples)
        boot = _fit(np.tensordot(draws, per_prompt, axes=1), index[reference], start=point)
        low, high = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    rows = []
    for a, i in index.items():
        rated = a == reference or taking_part[a] > 0
        rows.append(ArmRating(a, float(point[i]) if rated else None,
                              None if low[i] is None or not rated else float(low[i]),
                              None if high[i] is None or not rated else float(high[i]), taking_part[a]))
    rows.sort(key=lambda r: (r.rating is None, -(r.rating or 0.0), r.arm))
    return Ratings(arms=rows, unbounded=_unbounded(per_prompt.sum(axis=0), arms, index[reference]), **summary)


# -- win matrix -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairTally:
    """How one arm did against another (votes counted once): ``first`` is the arm the wins belong to."""
    first: str
    second: str
    wins: int
    losses: int
    ties: int
    both_bad: int

    @property
    def decisive(self) -> int:
        return self.wins + self.losses

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.decisive if self.decisive else None


def win_matrix(comparisons: Iterable[Comparison]) -> list[PairTally]:
    """One tally per ordered pair of arms that met (both directions, so a table reads along its rows)."""
    counted, _ = count_once(comparisons)
    tally: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for c in counted:
        if c.gold is not None:
            continue
        a, b = c.arms
        won = c.winner
        tally[(a, b)]["wins" if won == a else "losses" if won == b else c.outcome] += 1
    out = []
    for (a, b), t in sorted(tally.items()):
        out.append(PairTally(a, b, t["wins"], t["losses"], t["tie"], t["both_bad"]))
        out.append(PairTally(b, a, t["losses"], t["wins"], t["tie"], t["both_bad"]))
    return sorted(out, key=lambda p: (p.first, p.second))


# -- raters -----------------------------------------------------------------------------------

@dataclass
class RaterQuality:
    """The figures that say how far one rater's votes can be trusted."""
    rater: str
    votes: int                          # counted once
    gold_votes: int = 0
    gold_correct: int = 0
    repeats: int = 0                    # pairs this rater judged with the sides both ways
    repeats_consistent: int = 0         # ... and gave the same verdict both times
    decisive: int = 0
    left_wins: int = 0
    position_p: float | None = None     # exact sign test of left wins against one half
    shared: int = 0                     # pairs where the other raters have a majority verdict
    agreed: int = 0                     # ... and this rater gave it too
    flagged_votes: int = 0              # votes on a pair with an answer that names its model
    outlier: list[str] = field(default_factory=list)    # the parts of OUTLIER_RULE this rater meets

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_votes if self.gold_votes else None

    @property
    def repeat_consistency(self) -> float | None:
        return self.repeats_consistent / self.repeats if self.repeats else None

    @property
    def left_share(self) -> float | None:
        return self.left_wins / self.decisive if self.decisive else None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.shared if self.shared else None


def rater_quality(comparisons: Iterable[Comparison]) -> list[RaterQuality]:
    """Per rater, by name: gold accuracy (a tie or both-bad on a gold pair is wrong), repeat consistency (same
    verdict on a pair shown again with the sides swapped), position bias (share of decisive votes won by the left
    side, sign test), agreement with the majority of the other raters on the same prompt and arms (pairs where
    the others are split, and gold pairs, are left out), and the outlier flag (``OUTLIER_RULE``)."""
    from evaluation.stats import sign_test_p
    comparisons = list(comparisons)
    counted, _ = count_once(comparisons)
    out = {r: RaterQuality(r, 0) for r in sorted({c.rater for c in comparisons})}
    for c in counted:
        q = out[c.rater]
        q.votes += 1
        q.flagged_votes += c.flagged is not None
        if c.gold is not None:
            q.gold_votes += 1
            q.gold_correct += c.winner == c.gold
        if c.winner is not None:
            q.decisive += 1
            q.left_wins += c.outcome == "left"
    shown: dict[tuple, list[Comparison]] = defaultdict(list)
    for c in comparisons:
        shown[(c.rater, c.prompt_id, c.arms)].append(c)
    for (rater, _, _), votes in shown.items():
        if len({v.left for v in votes}) == 2:
            out[rater].repeats += 1
            out[rater].repeats_consistent += len({v.verdict for v in votes}) == 1
    verdicts: dict[tuple, dict[str, str]] = defaultdict(dict)
    for c in counted:
        if c.gold is None:
            verdicts[(c.prompt_id, c.arms)][c.rater] = c.verdict
    for by_rater in verdicts.values():
        for rater, verdict in by_rater.items():
            others = Counter(v for r, v in by_rater.items() if r != rater).most_common(2)
            if not others or (len(others) == 2 and others[0][1] == others[1][1]):
                continue
            out[rater].shared += 1
            out[rater].agreed += verdict == others[0][0]
    for q in out.values():
        q.position_p = sign_test_p(q.left_wins, q.decisive)
        q.outlier = _outlier_reasons(q)
    return list(out.values())


def _outlier_reasons(q: RaterQuality) -> list[str]:
    reasons = []
    if q.gold_votes >= MIN_CHECKS and q.gold_accuracy < 0.6:
        reasons.append(f"gold pairs right {q.gold_correct}/{q.gold_votes}")
    if q.repeats >= MIN_CHECKS and q.repeat_consistency < 0.6:
        reasons.append(f"same verdict on swapped repeats {q.repeats_consistent}/{q.repeats}")
    if q.shared >= MIN_CHECKS and q.agreement < 0.5:
        reasons.append(f"agrees with the others {q.agreed}/{q.shared}")
    if q.position_p is not None and q.position_p < 0.01:
        reasons.append(f"left side won {q.left_wins}/{q.decisive} (p = {q.position_p:.1e})")
    return reasons


def flagged_votes(comparisons: Iterable[Comparison]) -> list[Comparison]:
    """The counted votes on pairs with an answer that names its model (still counted; listed so they can be read)."""
    return [c for c in count_once(comparisons)[0] if c.flagged is not None]


# -- how many votes ---------------------------------------------------------------------------

def votes_to_decide(wins: int, decisive: int, *, confidence: float = 0.95, power: float = 0.8) -> dict:
    """How many more decisive votes would make the Wilson interval exclude 50%, at the current win rate.

    The Wilson interval excludes 50% exactly when the score test rejects it: |p - 0.5| > z·sqrt(0.25 / n). The
    assumption: the true win rate is the one seen so far (p). ``if_rate_holds``: votes needed if the next ones
    go exactly at rate p, the smallest n > z²·0.25 / (p - 0.5)² (then the interval excludes 50% about half the
    time); ``for_power``: votes needed to exclude it with probability ``power`` (normal approximation),
    n = ((z·0.5 + z_power·sqrt(p(1-p))) / (p - 0.5))². Both are totals minus the votes already in; None when
    p is 50% or there are no votes yet.
    """
    rate = wins / decisive if decisive else None
    out = {"win_rate": rate, "decisive": decisive, "if_rate_holds": None, "for_power": None, "power": power,
           "confidence": confidence}
    if rate is not None and rate != 0.5:
        holds, needed = _votes_for(rate, confidence, power)
        out.update(if_rate_holds=max(0, holds - decisive), for_power=max(0, needed - decisive))
    return out


def votes_needed_at(rate: float, *, confidence: float = 0.95, power: float = 0.8) -> int:
    """Decisive votes for ``power`` to exclude 50% when the true win rate is ``rate`` (the figure before any vote)."""
    return _votes_for(rate, confidence, power)[1]


def _votes_for(rate: float, confidence: float, power: float) -> tuple[int, int]:
    from scipy.stats import norm
    z, z_power = norm.ppf(1 - (1 - confidence) / 2), norm.ppf(power)
    gap = abs(rate - 0.5)
    holds = math.floor(z ** 2 * 0.25 / gap ** 2) + 1
    needed = math.ceil(((z * 0.5 + z_power * math.sqrt(rate * (1 - rate))) / gap) ** 2)
    return holds, needed


def sequential_test(wins_in_order: Iterable[bool], *, alpha: float = 0.05) -> dict:
    """A mixture sequential probability ratio test (mSPRT, Robbins 1970) of "the win rate is 50%".

    After each decisive vote (True: the arm won) the likelihood ratio of a uniform Beta(1, 1) mixture over the
    win rate against 50% is B(w + 1, l + 1) · 2^(w + l). Once it reaches 1/alpha the test has decided and the
    evaluation can stop: by Ville's inequality the chance of ever deciding when the arms are equally good is at
    most alpha, however often the figures are looked at. For any true win rate other than 50% it decides
    eventually (power 1); it never decides "no difference". It counts each decisive vote as an independent draw,
    so a run of votes by one rater weighs as much as the same number from many raters.
    """
    from scipy.special import betaln
    wins = losses = 0
    decided_at, better, log_ratio = None, None, 0.0
    for n, won in enumerate(wins_in_order, start=1):
        wins, losses = wins + bool(won), losses + (not won)
        log_ratio = float(betaln(wins + 1, losses + 1) + (wins + losses) * math.log(2))
        if decided_at is None and log_ratio >= math.log(1 / alpha):
            decided_at, better = n, wins > losses
    return {"wins": wins, "losses": losses, "likelihood_ratio": math.exp(log_ratio), "threshold": 1 / alpha,
            "alpha": alpha, "decided": decided_at is not None, "decided_at": decided_at, "better": better}


def decision_lines(need: dict, sequential: dict, low: float | None, high: float | None, *,
                   subject: str = "the fine-tuned model") -> list[str]:
    """How many votes would settle it and whether the sequential test has decided, as sentences (the tab, the CLI
    and the report print the same ones). ``need`` is ``votes_to_decide``'s answer, ``sequential``
    ``sequential_test``'s, ``low``/``high`` the Wilson interval of the same decisive votes."""
    if not need["decisive"]:
        plan = ", ".join(f"{rate:.0%}: {votes_needed_at(rate)}" for rate in (0.6, 0.65, 0.7))
        lines = [f"votes needed: before any decisive vote, for an 80% chance that the Wilson interval excludes 50%, "
                 f"{subject} needs about this many decisive votes at a true win rate of {plan}"]
    elif low is not None and (low > 0.5 or high < 0.5):
        lines = ["votes needed: none; the Wilson interval already excludes 50%"]
    elif need["if_rate_holds"] is None:
        lines = ["votes needed: the win rate is exactly 50%, so no number of votes at this rate excludes 50%"]
    else:
        lines = [f"votes needed: about {need['if_rate_holds']} more decisive votes would make the Wilson interval "
                 f"exclude 50% if the win rate stays at {need['win_rate']:.3f}, {need['for_power']} more for an "
                 f"80% chance of it (assuming the true rate is the one seen so far)"]
    test = (f"sequential test (mSPRT: at most a {sequential['alpha']:.0%} chance of deciding when there is no "
            f"difference, however often you look)")
    if sequential["decided"] and sequential["likelihood_ratio"] >= sequential["threshold"]:
        lines.append(f"{test}: decided at decisive vote {sequential['decided_at']}, {subject} "
                     f"{'better' if sequential['better'] else 'worse'}; you can stop rating (likelihood ratio now "
                     f"{sequential['likelihood_ratio']:.1f}, threshold {sequential['threshold']:g})")
    elif sequential["decided"]:
        lines.append(f"{test}: decided at decisive vote {sequential['decided_at']}, {subject} "
                     f"{'better' if sequential['better'] else 'worse'}, but the votes since have brought the "
                     f"likelihood ratio down to {sequential['likelihood_ratio']:.1f}: read the rater quality table "
                     f"before stopping (the test counts every vote as an independent draw; one rater's run of votes "
                     f"is not)")
    else:
        lines.append(f"{test}: not decided yet (likelihood ratio {sequential['likelihood_ratio']:.1f} of the "
                     f"{sequential['threshold']:g} it needs)")
    return lines


# -- one report for the tab, the CLI and the report -------------------------------------------

def comparisons_from_rows(rows: Iterable[dict], *, source: str | None = None) -> list[Comparison]:
    """Validate comparison dicts (prompt_id, rater, left, right, outcome, optional label, gold, flagged), as in
    the JSONL ``python -m evaluation stats`` reads; raises InputProblem naming every bad line."""
    from core.errors import InputProblem
    out, problems = [], []
    for line, row in enumerate(rows, start=1):
        missing = [k for k in ("prompt_id", "rater", "left", "right", "outcome") if row.get(k) in (None, "")]
        if missing:
            problems.append(f"line {line}: missing {', '.join(missing)}")
        elif row["outcome"] not in OUTCOMES:
            problems.append(f"line {line}: outcome is '{row['outcome']}'; expected left, right, tie or both_bad")
        elif row["left"] == row["right"]:
            problems.append(f"line {line}: left and right are both '{row['left']}'; a vote compares two arms")
        else:
            out.append(Comparison(*(str(row[k]) for k in ("prompt_id", "rater", "left", "right", "outcome")),
                                  **{k: (None if row.get(k) in (None, "") else str(row[k]))
                                     for k in ("label", "gold", "flagged")}))
    if problems:
        raise InputProblem(problems, source=source)
    return out


def arms_summary(comparisons: Iterable[Comparison], *, reference: str, arms: Iterable[str] | None = None,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """Every multi-arm figure as one plain dict (what ``stats --json`` prints and the Results tab shows): the
    ratings with their notes, the win matrix, each arm against the reference (win rate, Wilson interval, votes
    needed, sequential test), the raters' quality and the flagged votes. ``arms``: the evaluation's arms (by
    default those in the votes); the reference must be one of them."""
    from dataclasses import asdict

    from core.errors import TuneloopError
    from evaluation.stats import wilson_interval
    comparisons = list(comparisons)
    arms = sorted(arms or {a for c in comparisons if c.gold is None for a in (c.left, c.right)})
    if reference not in arms:
        raise TuneloopError(f"'{reference}' is not an arm of these votes; the arms are {', '.join(arms) or 'none'} "
                            f"(choose the reference with --reference)")
    ratings = arm_ratings(comparisons, reference=reference, resamples=resamples, seed=seed)
    counted, _ = count_once(comparisons)
    against = []
    for r in ratings.arms:
        if r.arm == reference:
            continue
        met = [c for c in counted if c.gold is None and set(c.arms) == {r.arm, reference} and c.winner]
        wins = sum(c.winner == r.arm for c in met)
        low, high = wilson_interval(wins, len(met))
        need, sequential = votes_to_decide(wins, len(met)), sequential_test(c.winner == r.arm for c in met)
        against.append({"arm": r.arm, "wins": wins, "decisive": len(met), "win_rate": need["win_rate"],
                        "wilson_low": low, "wilson_high": high, "votes_to_decide": need, "sequential": sequential,
                        "lines": decision_lines(need, sequential, low, high, subject=r.arm)})
    return {
        "reference": reference,
        "ratings": [{**asdict(r), "against_reference": list(r.against_reference)} for r in ratings.arms],
        "notes": ratings.notes(), "prompts": ratings.prompts, "rough_note": ratings.rough_note,
        "duplicates_dropped": ratings.duplicates_dropped, "duplicates_note": ratings.duplicates_note,
        "unbounded": ratings.unbounded,
        "win_matrix": [{**asdict(t), "win_rate": t.win_rate} for t in win_matrix(comparisons)],
        "against_reference": against,
        "raters": [{**asdict(q), "gold_accuracy": q.gold_accuracy, "repeat_consistency": q.repeat_consistency,
                    "left_share": q.left_share, "agreement": q.agreement} for q in rater_quality(comparisons)],
        "outlier_rule": OUTLIER_RULE,
        "flagged": [asdict(c) for c in flagged_votes(comparisons)],
    }


def _num(v: float | None, places: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{places}f}"


def _share(part: int, whole: int) -> str:
    return "–" if not whole else f"{part}/{whole} ({part / whole:.0%})"


def format_arms(s: dict) -> str:
    """The multi-arm figures as plain text (``stats`` on comparisons, ``report``)."""
    lines = [f"Bradley–Terry ratings (logit scale, {s['reference']} at 0; chance of beating {s['reference']}):"]
    for r in s["ratings"]:
        p, lo, hi = r["against_reference"]
        lines.append(f"  {r['arm']}: {_num(r['rating'])} [95%: {_num(r['low'])}, {_num(r['high'])}], "
                     f"beats {s['reference']} {_num(p)} [{_num(lo)}, {_num(hi)}], {r['comparisons']} votes")
    lines += [f"  {n}" for n in s["notes"]]
    lines.append("win matrix (row arm against column arm, decisive votes):")
    for t in s["win_matrix"]:
        lines.append(f"  {t['first']} vs {t['second']}: {t['wins']}-{t['losses']}, {t['ties']} ties, "
                     f"{t['both_bad']} both bad, win rate {_num(t['win_rate'], 3)}")
    for a in s["against_reference"]:
        lines.append(f"{a['arm']} vs {s['reference']}: {a['wins']} of {a['decisive']} decisive votes, "
                     f"Wilson 95% [{_num(a['wilson_low'], 3)}, {_num(a['wilson_high'], 3)}]")
        lines += [f"  {line}" for line in a["lines"]]
    lines.append("raters:")
    for q in s["raters"]:
        lines.append(f"  {q['rater']}: {q['votes']} votes, gold right {_share(q['gold_correct'], q['gold_votes'])}, "
                     f"same verdict on swapped repeats {_share(q['repeats_consistent'], q['repeats'])}, left side won "
                     f"{_share(q['left_wins'], q['decisive'])} (p = {_num(q['position_p'], 3)}), agrees with the "
                     f"others {_share(q['agreed'], q['shared'])}"
                     + (f"; OUTLIER: {', '.join(q['outlier'])}" if q["outlier"] else ""))
    lines.append(f"  (outlier rule: {s['outlier_rule']})")
    if s["flagged"]:
        lines.append(f"{len(s['flagged'])} vote(s) on pairs with an answer that names its model (still counted):")
        lines += [f"  {c['prompt_id']} by {c['rater']} ({c['left']} vs {c['right']}: {c['outcome']}): {c['flagged']}"
                  for c in s["flagged"]]
    return "\n".join(lines)
