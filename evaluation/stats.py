"""Honest statistics for side-by-side votes: how often the fine-tuned model wins, and how sure we are.

Input is a list of votes in the models' terms — ``prompt_id``, ``rater``, ``verdict`` (finetuned,
base, tie, both_bad), ``finetuned_side`` (A or B, where the fine-tuned response was shown) and an
optional ``label`` — so votes gathered anywhere can be analysed (``python -m evaluation stats``).

- Win rate among decisive votes with a Wilson 95% interval (statsmodels) and an exact two-sided
  sign test against 50% (scipy's binomtest). 20 wins in 30 decisive votes: 0.667 [0.488, 0.808], p=0.099.
- Win rate with ties (and both-bad, as Chatbot Arena counts them) as half a win, with a bootstrap
  interval that resamples prompts, not votes, because votes on one prompt are not independent.
- Position bias: the share of decisive votes won by the left side (A), with its sign test.
- Side balance: the share of votes with the fine-tuned answer on the left, with its test against one half.
  The arena draws each pair's sides with a fair coin (never balanced per rater, which a rater could
  predict), so this is where an unlucky or broken draw shows.
- Agreement: Krippendorff's alpha (nominal) over prompts judged by at least two raters.
- The same figures per rater and per label.
- Every figure counts one vote per rater and prompt (their first; ``duplicates_dropped`` says how many later
  ones were left out), and an interval from fewer than 10 prompts carries ``rough_note``.
- How many votes are enough: how many more decisive votes would make the Wilson interval exclude 50% at
  the current rate, and a sequential test that says when the evaluation can stop (``evaluation.ratings``).

Example::

    summary = summarize(read_votes_jsonl("votes.jsonl"))
    summary["win_rate"], summary["wilson_low"], summary["sign_test_p"]
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from core.errors import InputProblem

OUTCOMES = ("finetuned", "base", "tie", "both_bad")
SIDES = ("A", "B")
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Vote:
    prompt_id: str
    rater: str
    verdict: str            # finetuned | base | tie | both_bad
    finetuned_side: str     # A | B
    label: str | None = None

    @property
    def left_won(self) -> bool | None:
        """True when the response shown on the left (A) won; None for ties and both-bad."""
        if self.verdict not in ("finetuned", "base"):
            return None
        return (self.verdict == "finetuned") == (self.finetuned_side == "A")


def votes_from_rows(rows: Iterable[dict[str, Any]], *, source: str | None = None) -> list[Vote]:
    """Validate vote dicts (as in the JSONL format); raises InputProblem naming every bad line."""
    votes, problems = [], []
    for line, row in enumerate(rows, start=1):
        where = f"line {line}"
        if not isinstance(row, dict):
            problems.append(f"{where}: expected a JSON object")
            continue
        missing = [k for k in ("prompt_id", "rater", "verdict", "finetuned_side") if row.get(k) in (None, "")]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        if row["verdict"] not in OUTCOMES:
            problems.append(f"{where}: verdict is '{row['verdict']}'; expected finetuned, base, tie or both_bad")
            continue
        if row["finetuned_side"] not in SIDES:
            problems.append(f"{where}: finetuned_side is '{row['finetuned_side']}'; expected A or B")
            continue
        label = row.get("label")
        votes.append(Vote(str(row["prompt_id"]), str(row["rater"]), row["verdict"], row["finetuned_side"],
                          None if label in (None, "") else str(label)))
    if problems:
        raise InputProblem(problems, source=source)
    return votes


def read_votes_jsonl(path: str | Path) -> list[Vote]:
    """Votes from a JSONL file, one object per line; blank lines are skipped."""
    return votes_from_rows(read_jsonl_rows(path), source=Path(path).name)


def read_jsonl_rows(path: str | Path) -> list[Any]:
    """The JSON objects of a votes file, one per line (blank lines skipped); raises InputProblem naming bad lines."""
    path = Path(path)
    rows: list[Any] = []
    bad = []
    for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            rows.append(json.loads(text))
        except json.JSONDecodeError as exc:
            bad.append(f"line {i}: not valid JSON ({exc.msg})")
    if bad:
        raise InputProblem(bad, source=path.name)
    if not rows:
        raise InputProblem([f"{path.name} holds no votes"], source=path.name)
    return rows


# -- the figures ------------------------------------------------------------------------------

def wilson_interval(successes: int, trials: int, alpha: float = 0.05) -> tuple[float | None, float | None]:
    if trials == 0:
        return None, None
    from statsmodels.stats.proportion import proportion_confint
    low, high = proportion_confint(successes, trials, alpha=alpha, method="wilson")
    return float(low), float(high)


def sign_test_p(successes: int, trials: int) -> float | None:
    """Exact two-sided binomial test against one half."""
    if trials == 0:
        return None
    from scipy.stats import binomtest
    return float(binomtest(successes, trials, 0.5).pvalue)


def counts(votes: list[Vote]) -> dict[str, int]:
    tally = {k: 0 for k in OUTCOMES}
    for v in votes:
        tally[v.verdict] += 1
    return tally


def win_rate_figures(votes: list[Vote]) -> dict[str, Any]:
    """Counts, decisive win rate with Wilson interval and sign test, left-side share with its test, and how
    often the fine-tuned answer was on the left, with its test."""
    c = counts(votes)
    wins, losses = c["finetuned"], c["base"]
    decisive = wins + losses
    low, high = wilson_interval(wins, decisive)
    left_wins = sum(1 for v in votes if v.left_won)
    finetuned_left = sum(1 for v in votes if v.finetuned_side == "A")
    return {
        "votes": len(votes), "wins": wins, "losses": losses, "ties": c["tie"], "both_bad": c["both_bad"],
        "decisive": decisive,
        "win_rate": wins / decisive if decisive else None,
        "wilson_low": low, "wilson_high": high,
        "sign_test_p": sign_test_p(wins, decisive),
        "left_wins": left_wins,
        "left_win_rate": left_wins / decisive if decisive else None,
        "position_p": sign_test_p(left_wins, decisive),
        "finetuned_left": finetuned_left,
        "finetuned_left_share": finetuned_left / len(votes) if votes else None,
        "side_balance_p": sign_test_p(finetuned_left, len(votes)),
    }


def ties_half_figures(votes: list[Vote], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Win rate counting ties and both-bad as half, with a percentile bootstrap over prompts."""
    if not votes:
        return {"win_rate_ties_half": None, "bootstrap_low": None, "bootstrap_high": None}
    import numpy as np
    per_prompt: dict[str, list[float]] = defaultdict(list)
    for v in votes:
        per_prompt[v.prompt_id].append(1.0 if v.verdict == "finetuned" else 0.0 if v.verdict == "base" else 0.5)
    scores = np.array([sum(s) for s in per_prompt.values()])
    sizes = np.array([len(s) for s in per_prompt.values()], dtype=float)
    point = float(scores.sum() / sizes.sum())
    if len(scores) < 2:
        return {"win_rate_ties_half": point, "bootstrap_low": None, "bootstrap_high": None}
    from scipy.stats import bootstrap

    def ratio(s, n, axis=-1):
        return s.sum(axis=axis) / n.sum(axis=axis)

    result = bootstrap((scores, sizes), ratio, paired=True, vectorized=True, n_resamples=resamples,
                       method="percentile", rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return {"win_rate_ties_half": point, "bootstrap_low": float(ci.low), "bootstrap_high": float(ci.high)}


def krippendorff_alpha(votes: list[Vote]) -> tuple[float | None, int]:
    """Nominal alpha over prompts with ≥ 2 raters, and how many such prompts there were.

    None when it is undefined: fewer than two such prompts, or every vote the same (no variation).
    A rater who judged a prompt twice counts with their first vote (``count_once``, as in the win rate). The
    verdicts are categories with
    no order (a tie is not "between" the two models), hence nominal; curation's reviewer agreement
    computes it.
    """
    from curation.review.team import krippendorff_alpha as nominal_alpha
    by_prompt: dict[str, dict[str, str]] = defaultdict(dict)
    for v in count_once(votes)[0]:
        by_prompt[v.prompt_id][v.rater] = v.verdict
    units = [raters for raters in by_prompt.values() if len(raters) >= 2]
    if len(units) < 2:
        return None, len(units)
    alpha = nominal_alpha(units)
    return (None if alpha is None or math.isnan(alpha) else alpha), len(units)


def count_once(votes: list[Vote]) -> tuple[list[Vote], int]:
    """Each rater's first vote per prompt (votes in the order they were cast), and how many later ones were dropped."""
    first: dict[tuple[str, str], int] = {}
    for i, v in enumerate(votes):
        first.setdefault((v.rater, v.prompt_id), i)
    keep = sorted(first.values())
    return [votes[i] for i in keep], len(votes) - len(keep)


def summarize(votes: list[Vote], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Every figure of the Results tab and ``stats --json`` as one plain dict, from the votes in the order they
    were cast (each rater's first vote per prompt counted)."""
    from evaluation.ratings import rough_note, sequential_test, votes_to_decide
    votes, dropped = count_once(votes)
    summary = win_rate_figures(votes)
    summary["duplicates_dropped"] = dropped
    summary.update(ties_half_figures(votes, resamples=resamples, seed=seed))
    alpha, items = krippendorff_alpha(votes)
    summary["krippendorff_alpha"] = alpha
    summary["agreement_items"] = items
    summary["prompts"] = len({v.prompt_id for v in votes})
    summary["raters"] = len({v.rater for v in votes})
    summary["per_rater"] = [{"rater": r, **win_rate_figures(vs)} for r, vs in _group(votes, lambda v: v.rater)]
    summary["by_label"] = [{"label": lab, **win_rate_figures(vs)}
                           for lab, vs in _group(votes, lambda v: v.label or "(no label)")]
    summary["rough_note"] = rough_note(summary["prompts"])
    summary["votes_to_decide"] = votes_to_decide(summary["wins"], summary["decisive"])
    summary["sequential"] = sequential_test(v.verdict == "finetuned" for v in votes
                                            if v.verdict in ("finetuned", "base"))
    return summary


def _group(votes: list[Vote], key) -> list[tuple[str, list[Vote]]]:
    groups: dict[str, list[Vote]] = defaultdict(list)
    for v in votes:
        groups[key(v)].append(v)
    return sorted(groups.items())


# -- text -------------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _p(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.3f}" if x >= 0.001 else f"{x:.1e}")


def notes_lines(s: dict[str, Any]) -> list[str]:
    """What a reader must know beside the figures: the rough-interval caveat, duplicates dropped, how many votes
    would settle it and the sequential test's decision (one line each, shared by the CLI, the report and the tab)."""
    from evaluation.ratings import decision_lines
    lines = [f"⚠️ {s['rough_note']}"] if s.get("rough_note") else []
    if s.get("duplicates_dropped"):
        lines.append(f"{s['duplicates_dropped']} repeated vote(s) by a rater on the same prompt were counted once "
                     f"(their first vote), in the win rate and in alpha alike")
    return lines + decision_lines(s["votes_to_decide"], s["sequential"], s.get("wilson_low"), s.get("wilson_high"))


def format_summary(s: dict[str, Any], label_field: str | None = None) -> str:
    """The figures as a short plain-text report; the per-label part is titled by ``label_field`` (the meta field
    the labels came from, e.g. Dolly's ``category``)."""
    lines = [
        f"votes {s['votes']} on {s['prompts']} prompts by {s['raters']} rater(s): fine-tuned wins {s['wins']}, "
        f"base wins {s['losses']}, ties {s['ties']}, both bad {s['both_bad']}",
        f"win rate (decisive votes, n={s['decisive']}): {_pct(s['win_rate'])} "
        f"[Wilson 95%: {_pct(s['wilson_low'])}, {_pct(s['wilson_high'])}], sign test p = {_p(s['sign_test_p'])}",
        f"win rate with ties as half: {_pct(s['win_rate_ties_half'])} "
        f"[bootstrap over prompts 95%: {_pct(s['bootstrap_low'])}, {_pct(s['bootstrap_high'])}]",
        f"left side (A) won {_pct(s['left_win_rate'])} of decisive votes, position test p = {_p(s['position_p'])}",
        f"fine-tuned answer on the left in {s['finetuned_left']} of {s['votes']} votes "
        f"({_pct(s['finetuned_left_share'])}), side balance test p = {_p(s['side_balance_p'])}",
        f"agreement (Krippendorff's alpha, nominal, {s['agreement_items']} prompts with ≥ 2 raters): "
        f"{_pct(s['krippendorff_alpha'])}",
        *notes_lines(s),
    ]
    for title, key, rows in (("per rater", "rater", s["per_rater"]),
                             (f"by {label_field or 'label'}", "label", s["by_label"])):
        if rows:
            lines.append(f"{title}:")
            for r in rows:
                lines.append(f"  {r[key]}: {r['votes']} votes, wins {r['wins']}, losses {r['losses']}, "
                             f"ties {r['ties']}, both bad {r['both_bad']}, win rate {_pct(r['win_rate'])} "
                             f"[{_pct(r['wilson_low'])}, {_pct(r['wilson_high'])}], "
                             f"left side won {_pct(r['left_win_rate'])}")
    return "\n".join(lines)
