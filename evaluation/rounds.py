"""Rounds: dataset version → run → automatic and human evaluation → feedback → next version, in order.

Every run is one step of a chain, read from the lineage rows: a run's dataset version and its
ancestors (``dataset_versions.parent_id``), the evaluation each feedback merge came from
(``feedback_versions``), the run that evaluation rated (``evaluations.run_id``) and a DPO or KTO run's
parent (``runs.parent_run_id``). A run's round is 1 plus the feedback it stands on: an SFT run on a
version made by merging feedback is one round after the run that feedback was about; a DPO or KTO run
is one round after the SFT run it starts from. Each run is compared with the run before it in its
chain (its *previous run*), figure by figure, so the view can say where a round helped and where it
regressed, down to the regression cases that passed before and fail now. A run's next versions are the
feedback versions (merged corrections, preference pairs, KTO examples) made from every evaluation it was
rated in, as the evaluation's run or as one of its arms. A run's human figures come from every evaluation it
is an arm of (``evaluation.model_card.human_evaluations``), whatever other arms it met there: its rating is
its Bradley–Terry rating against the base in the newest of them the base is an arm of (``human_rating``), so
rounds rated in one evaluation stand on one scale; its win rate is against the base, or against the one other
arm of a two-arm evaluation (a round 1 that was the reference of round 1 vs round 2 too), else against each
other arm in turn.

Example::

    for row in round_rows(ws):
        print(row.round, row.run_id, row.figures["rouge_l"], [c.text for c in row.changes])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.workspace import Workspace

# (key, title, higher is better, smallest change worth calling)
COMPARED = (("rouge_l", "ROUGE-L", True, 0.005), ("bleu", "BLEU", True, 0.5), ("exact_match", "exact match", True, 0.005),
            ("perplexity_test", "perplexity (test)", False, 0.01), ("win_rate", "human win rate", True, 0.005),
            ("regression_pass_rate", "regression pass rate", True, 1e-9),
            ("guard_pass_rate", "general skills (guard)", True, 1e-9))


@dataclass(frozen=True)
class Change:
    figure: str
    before: float
    after: float
    verdict: str            # helped | regressed | unchanged
    text: str


@dataclass
class RoundRow:
    round: int
    run_id: int
    run_name: str
    stage: str
    status: str
    version: int | None
    version_text: str
    previous_run: int | None
    figures: dict[str, Any] = field(default_factory=dict)      # fine-tuned figures, human, regression, guard
    base_figures: dict[str, Any] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, int] = field(default_factory=dict)
    next_versions: list[int] = field(default_factory=list)
    failing_cases: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    newly_failing: list[str] = field(default_factory=list)
    newly_passing: list[str] = field(default_factory=list)
    measured_by: str = ""         # where ROUGE-L and the rest come from: "automatic evaluation", "the run itself"
    guard: Any = None             # evaluation.guard.GuardResult, once the guard has checked the run

    @property
    def label(self) -> str:
        return f"R{self.round} · #{self.run_id} {self.stage.upper()}"


# For each run, the feedback merges in its dataset version's lineage, nearest first, with the run rated.
_FEEDBACK_BEHIND = """
    with recursive chain(run_id, version_id, depth) as (
        select id, dataset_version, 0 from runs where dataset_version is not null
        union all
        select c.run_id, v.parent_id, c.depth + 1 from chain c join dataset_versions v on v.id = c.version_id
        where v.parent_id is not null
    )
    select * from (
        select c.run_id, c.depth,
               -- the run the evaluation was made for; in an evaluation of several arms, its newest run arm
               coalesce(e.run_id, (select max(a.run_id) from eval_arms a where a.evaluation_id = e.id)) as rated_run
        from chain c join feedback_versions f on f.version_id = c.version_id and f.kind = 'corrections'
        join evaluations e on e.id = f.evaluation_id)
    where rated_run is not null
    order by run_id, depth"""

# For each run, the evaluations it was rated in: the one it was made for, and those it is an arm of.
_RATED_IN = """
    select run_id, id as evaluation_id from evaluations where run_id is not null
    union select run_id, evaluation_id from eval_arms where run_id is not null"""

# For each run, the versions made from its evaluations (merged corrections, preference pairs, KTO examples).
_VERSIONS_AFTER = f"""
    select distinct r.run_id, f.version_id from feedback_versions f join ({_RATED_IN}) r
    on r.evaluation_id = f.evaluation_id order by r.run_id, f.version_id"""


def runs_apart(ws: Workspace) -> list:
    """Runs that are not rounds (failed, stopped, still training or waiting), newest first: listed apart."""
    from training.registry import list_runs
    return [run for run in list_runs(ws) if run.status != "finished"]


def round_rows(ws: Workspace) -> list[RoundRow]:
    """Every finished run as a row of the rounds view, in round order, each compared with its previous run
    (a failed or stopped run is no round: ``runs_apart`` lists those)."""
    from curation.data.versions import get_version
    from evaluation.auto import latest_auto_evaluation
    from evaluation.feedback import collect_feedback
    from evaluation.guard import GUARD_SUITE, guard_result
    from evaluation.model_card import human_evaluations
    from evaluation.regression import latest_results
    from training.registry import list_runs

    runs = sorted([r for r in list_runs(ws) if r.status == "finished"], key=lambda r: r.id)
    behind: dict[int, list[int | None]] = {}
    for r in ws.db.execute(_FEEDBACK_BEHIND):
        behind.setdefault(r["run_id"], []).append(r["rated_run"])
    after: dict[int, list[int]] = {}
    for r in ws.db.execute(_VERSIONS_AFTER):
        after.setdefault(r["run_id"], []).append(r["version_id"])
    rated_in: dict[int, list[int]] = {}
    for r in ws.db.execute(f"{_RATED_IN} order by evaluation_id"):
        rated_in.setdefault(r["run_id"], []).append(r["evaluation_id"])
    rows: dict[int, RoundRow] = {}
    rated: dict[int, Any] = {}          # each evaluation's ratings, fitted once for all its runs
    for run in runs:
        merges = behind.get(run.id, [])
        second_stage = run.config.stage in ("dpo", "kto")      # starts from an SFT run's adapter
        previous = run.parent_run_id if second_stage else (merges[0] if merges else None)
        version_text = run.dataset
        trained_on = run.preference_version if second_stage else run.dataset_version
        if trained_on:
            v = get_version(ws, trained_on)
            what = {"preference": "pairs", "kto": "KTO examples"}.get(v.kind, "records")
            version_text = f"{v.name} ({v.step}, {v.num_records} {what})"
        row = RoundRow(round=1 + len(merges), run_id=run.id, run_name=run.name, stage=run.config.stage,
                       status=run.status, version=run.dataset_version, version_text=version_text,
                       previous_run=previous)
        if second_stage and previous in rows:
            row.round = rows[previous].round + 1
        auto = latest_auto_evaluation(ws, run.id)
        if auto is not None:
            for key in ("rouge_l", "bleu", "exact_match", "perplexity_val", "perplexity_test"):
                row.figures[key] = auto.figure("finetuned", key)
                row.base_figures[key] = auto.figure("base", key)
            row.figures["answers"] = auto.metrics["finetuned"]["answers"]
            row.measured_by = "automatic evaluation"
        elif run.metrics.get("rouge_l_tuned") is not None:
            # the run measured ROUGE-L itself at its end, on its first test conversations
            row.figures.update(rouge_l=run.metrics["rouge_l_tuned"], answers=run.metrics.get("rouge_samples"))
            row.base_figures["rouge_l"] = run.metrics.get("rouge_l_base")
            row.measured_by = "the run itself"
        row.evaluations = human_evaluations(ws, run.id, rated)
        row.figures.update(human_rating(row.evaluations))
        decided = [h for h in row.evaluations if h["stats"] and h["stats"]["decisive"]]
        if decided:
            last, s = decided[-1], decided[-1]["stats"]
            row.figures.update(win_rate=s["win_rate"], wilson_low=s["wilson_low"], wilson_high=s["wilson_high"],
                               votes=s["votes"], win_against=last["against"], win_evaluation=last["evaluation"])
        tuned = [r for r in latest_results(ws, run.id) if r.suite != GUARD_SUITE]
        if tuned:
            passed, total = sum(r.passed for r in tuned), sum(r.total for r in tuned)
            row.figures.update(regression_passed=passed, regression_total=total,
                               regression_pass_rate=passed / total if total else None)
            row.failing_cases = [f"{r.suite}: {c.name}" for r in tuned for c in r.results if not c.passed]
            base = [r for r in latest_results(ws, run.id, model="base") if r.suite != GUARD_SUITE]
            if base:
                row.base_figures["regression_passed"] = sum(r.passed for r in base)
        row.guard = guard_result(ws, run.id)
        if row.guard is not None:
            row.figures["guard_pass_rate"] = row.guard.pass_rate
            row.base_figures["guard_pass_rate"] = row.guard.base_passed / row.guard.total if row.guard.total else None
        for evaluation_id in rated_in.get(run.id, []):
            counts = collect_feedback(ws, evaluation_id).counts()
            for key in ("preference_pairs", "corrected", "kto_examples", "needs_answer"):
                row.feedback[key] = row.feedback.get(key, 0) + counts[key]
        row.next_versions = after.get(run.id, [])
        rows[run.id] = row
    for row in rows.values():
        before = rows.get(row.previous_run) if row.previous_run is not None else None
        if before is not None:
            compare_rows(before, row)
    return sorted(rows.values(), key=lambda r: (r.round, r.run_id))


def human_rating(evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's Bradley–Terry rating against the base from the newest of its evaluations (``human_evaluations``)
    that rates it so, as figures: ``human_rating``, ``human_low``/``human_high`` (bootstrap 95%), ``human_chance``
    (of beating the base), ``human_reference``, ``human_evaluation``, ``human_note`` (the rough-interval caveat).
    Runs rated in the same evaluation (round 1 and round 2 as arms) share one scale."""
    for h in reversed(evaluations):
        r = h["rating"]
        if r is not None:
            return {"human_rating": r["rating"], "human_low": r["low"], "human_high": r["high"],
                    "human_chance": r["chance"], "human_reference": r["reference"],
                    "human_evaluation": h["evaluation"], "human_note": r["note"]}
    return {}


def compare_rows(before: RoundRow, after: RoundRow) -> None:
    """Fill ``after.changes`` and the regression cases that flipped, against the run before it."""
    changes = []
    for key, title, higher, tolerance in COMPARED:
        a, b = before.figures.get(key), after.figures.get(key)
        if a is None or b is None:
            continue
        delta = b - a
        if abs(delta) <= tolerance:
            verdict = "unchanged"
        else:
            verdict = "helped" if (delta > 0) == higher else "regressed"
        changes.append(Change(title, a, b, verdict, f"{title} {_fmt(key, a)} → {_fmt(key, b)} ({verdict})"))
    after.changes = changes
    before_failing, after_failing = set(before.failing_cases), set(after.failing_cases)
    after.newly_failing = sorted(after_failing - before_failing) if before.figures.get("regression_total") else []
    after.newly_passing = sorted(before_failing - after_failing) if after.figures.get("regression_total") else []


def _fmt(key: str, value: float) -> str:
    if key == "bleu":
        return f"{value:.1f}"
    if key.startswith("perplexity"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cell(key: str, value: Any) -> str:
    return "–" if value is None else _fmt(key, value)


def win_rate_cell(row: RoundRow) -> str:
    """The run's human win rate as the rounds table shows it: against the base (or the one other arm) in its newest
    decided evaluation; where no such figure exists, against each other arm of its newest evaluation with votes."""
    f = row.figures
    if f.get("win_rate") is not None:
        return (f"{100 * f['win_rate']:.0f}% [{100 * f['wilson_low']:.0f}–{100 * f['wilson_high']:.0f}] "
                f"of {f['votes']} votes vs {f['win_against']}, evaluation #{f['win_evaluation']}")
    voted = [h for h in row.evaluations if any(p["decisive"] for p in h["pairwise"])]
    if not voted:
        return "–"
    h = voted[-1]
    return "; ".join(f"vs {p['other']} {100 * p['win_rate']:.0f}% [{100 * p['wilson_low']:.0f}–"
                     f"{100 * p['wilson_high']:.0f}] of {p['decisive']}" for p in h["pairwise"] if p["decisive"]) \
        + f" (as '{h['arm']}'), evaluation #{h['evaluation']}"


def rounds_table(rows: list[RoundRow]) -> list[dict[str, Any]]:
    """One flat dict per run: the columns of the rounds table, figures side by side (base → fine-tuned)."""
    out = []
    for row in rows:
        f, b = row.figures, row.base_figures
        human = win_rate_cell(row)
        rating = "–"
        if f.get("human_rating") is not None:
            interval = "" if f["human_low"] is None else f" [{f['human_low']:+.2f}, {f['human_high']:+.2f}]"
            rating = (f"{f['human_rating']:+.2f}{interval} vs {f['human_reference']} (beats it "
                      f"{100 * f['human_chance']:.0f}%), evaluation #{f['human_evaluation']}"
                      + (f"; ⚠️ {f['human_note']}" if f["human_note"] else ""))
        regression = (f"{b.get('regression_passed', '–')} → {f['regression_passed']}/{f['regression_total']}"
                      if f.get("regression_total") else "–")
        verdicts = [c.verdict for c in row.changes if c.verdict != "unchanged"]
        out.append({
            "round": row.round,
            "dataset": row.version_text,
            "run": f"#{row.run_id} {row.stage.upper()} ({row.status})"
                   + (f" ← #{row.previous_run}" if row.previous_run else ""),
            "ROUGE-L": f"{_cell('rouge_l', b.get('rouge_l'))} → {_cell('rouge_l', f.get('rouge_l'))}",
            "BLEU": f"{_cell('bleu', b.get('bleu'))} → {_cell('bleu', f.get('bleu'))}",
            "perplexity (test)": f"{_cell('perplexity_test', b.get('perplexity_test'))} → "
                                 f"{_cell('perplexity_test', f.get('perplexity_test'))}",
            "regression": regression,
            "general skills (guard)": row.guard.text if row.guard is not None else "–",
            "human (win rate, 95% CI)": human,
            "human rating (Bradley–Terry vs base)": rating,
            "feedback": (f"{row.feedback.get('preference_pairs', 0)} pairs, {row.feedback.get('corrected', 0)} "
                         f"corrections, {row.feedback.get('kto_examples', 0)} KTO examples" if row.feedback else "–"),
            "next version": ", ".join(f"v{v}" for v in row.next_versions) or "–",
            "vs previous round": ("helped" if verdicts and all(v == "helped" for v in verdicts) else
                                  "regressed" if verdicts and all(v == "regressed" for v in verdicts) else
                                  "mixed" if verdicts else "–" if row.previous_run is None or not row.changes
                                  else "unchanged"),
        })
    return out


def round_summaries(rows: list[RoundRow]) -> list[str]:
    """One sentence per compared run: what helped, what regressed, which cases flipped, and the two runs' human
    ratings when one evaluation rated both (the same scale)."""
    out = []
    by_id = {r.run_id: r for r in rows}
    for row in rows:
        if row.previous_run is None:
            continue
        parts = [c.text for c in row.changes]
        before = by_id.get(row.previous_run)
        together = before is not None and before.figures.get("human_evaluation") is not None and \
            before.figures["human_evaluation"] == row.figures.get("human_evaluation")
        if together:
            a, b = before.figures["human_rating"], row.figures["human_rating"]
            parts.append(f"human rating (Bradley–Terry vs {row.figures['human_reference']}, both in evaluation "
                         f"#{row.figures['human_evaluation']}) {a:+.2f} → {b:+.2f} ({'higher' if b > a else 'lower'})")
        parts = parts or ["no figure measured on both runs yet"]
        if row.newly_failing:
            parts.append("now failing: " + ", ".join(row.newly_failing))
        if row.newly_passing:
            parts.append("now passing: " + ", ".join(row.newly_passing))
        out.append(f"Round {row.round}, run #{row.run_id} ({row.stage.upper()}) vs run #{row.previous_run}: "
                   + "; ".join(parts) + ".")
    return out


PLOTTED = (("rouge_l", "ROUGE-L"), ("bleu", "BLEU ÷ 100"), ("exact_match", "exact match"),
           ("win_rate", "human win rate"), ("regression_pass_rate", "regression pass rate"),
           ("guard_pass_rate", "general skills (guard)"))


def plot_points(rows: list[RoundRow]) -> list[dict[str, Any]]:
    """Long-form points for the line plot: one per run and 0..1 figure, in round order."""
    points = []
    for order, row in enumerate(rows, start=1):
        for key, title in PLOTTED:
            value = row.figures.get(key)
            if value is not None:
                points.append({"order": order, "run": row.label, "figure": title,
                               "value": value / 100 if key == "bleu" else value})
    return points


def perplexity_points(rows: list[RoundRow]) -> list[dict[str, Any]]:
    """Bars side by side: perplexity of the test references, the base model's and each run's."""
    points = []
    for row in rows:
        for model, figures in (("base", row.base_figures), ("fine-tuned", row.figures)):
            if figures.get("perplexity_test") is not None:
                points.append({"bar": f"{row.label} · {model}", "run": row.label, "model": model,
                               "perplexity": figures["perplexity_test"]})
    return points
