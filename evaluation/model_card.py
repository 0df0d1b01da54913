"""The model card of a run: one Markdown page that says what the adapter is and how good it is.

Training writes what the adapter is made of (``training.card``: base model, dataset version with its
content hash and lineage, the run config and training figures); this module adds what evaluation
measured: the automatic metrics (base and fine-tuned side by side), the human evaluation with its
intervals, the regression suites, the PII leak check (values masked), and the known limits that follow
from those figures.
``write_model_card`` puts the whole card beside the adapter as ``README.md`` (what the Hugging Face
hub shows), so it travels with every export.

Example::

    text = model_card(ws, 3)
    write_model_card(ws, 3)                      # runs/run-3/adapter/README.md
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.workspace import Workspace, atomic_write
from evaluation.metrics import format_metric
from training.card import CARD_FILE, training_card_lines


def human_evaluations(ws: Workspace, run_id: str | int, rated: dict[int, Any] | None = None) -> list[dict[str, Any]]:
    """Every blind evaluation the run is an arm of (``eval_arms.run_id``, or ``evaluations.run_id`` for one that
    rated it), oldest first, with the run's own figures there: ``arm`` (its name in that evaluation), ``rating``
    (its Bradley–Terry rating against the base with the bootstrap interval, when the base is an arm and the run is
    not it), ``pairwise`` (its win rate with the Wilson interval against each other arm) and ``stats`` (the two-arm
    figures against ``against``: the base when the base is an arm, else the one other arm of a two-arm evaluation;
    None when neither). ``rated`` keeps each evaluation's ratings for the other runs of the same call."""
    from evaluation.arena import evaluation_arms, evaluation_comparisons, evaluation_votes, get_evaluation, run_key
    from evaluation.ratings import arm_ratings, count_once, rough_note, win_matrix
    from evaluation.stats import summarize, votes_from_rows, wilson_interval
    rated = {} if rated is None else rated
    run = run_key(ws, run_id)
    found = ws.db.execute(
        "select evaluation_id, name from eval_arms where run_id=:run union"
        " select e.id, a.name from evaluations e join eval_arms a on a.evaluation_id=e.id and a.kind='run'"
        " where e.run_id=:run and (a.run_id is null or a.run_id=:run)"
        " and (select count(*) from eval_arms o where o.evaluation_id=e.id and o.kind='run')=1"
        " order by 1, 2", {"run": run}).fetchall()
    out = []
    for evaluation_id, arm in found:
        evaluation, arms = get_evaluation(ws, evaluation_id), evaluation_arms(ws, evaluation_id)
        names = [a.name for a in arms]
        base = next((a.name for a in arms if a.kind == "base"), None)
        against = base if base is not None and base != arm else (
            next(n for n in names if n != arm) if len(names) == 2 else None)
        comparisons = evaluation_comparisons(ws, evaluation_id)
        counted, _ = count_once(comparisons)
        pairwise = []
        for t in win_matrix(comparisons):
            if t.first != arm:
                continue
            low, high = wilson_interval(t.wins, t.decisive)
            prompts = len({c.prompt_id for c in counted if c.gold is None and set(c.arms) == {arm, t.second}
                           and c.winner})
            pairwise.append({"other": t.second, "wins": t.wins, "losses": t.losses, "ties": t.ties,
                             "both_bad": t.both_bad, "decisive": t.decisive, "win_rate": t.win_rate,
                             "wilson_low": low, "wilson_high": high, "prompts": prompts,
                             "rough_note": rough_note(prompts) if t.decisive else None})
        pairwise.sort(key=lambda p: (p["other"] != base, names.index(p["other"]) if p["other"] in names else 0))
        rating = None
        if base is not None and arm != base and comparisons:
            if evaluation_id not in rated:
                rated[evaluation_id] = arm_ratings(comparisons, reference=base)
            ratings = rated[evaluation_id]
            mine = next((r for r in ratings.arms if r.arm == arm), None)
            if mine is not None and mine.rating is not None and mine.comparisons:
                chance, chance_low, chance_high = mine.against_reference
                rating = {"rating": mine.rating, "low": mine.low, "high": mine.high, "chance": chance,
                          "chance_low": chance_low, "chance_high": chance_high, "votes": mine.comparisons,
                          "reference": base, "prompts": ratings.prompts, "note": ratings.rough_note}
        rows = [v.to_stats_row() for v in evaluation_votes(ws, evaluation_id, arms=(against, arm))] if against else []
        out.append({"evaluation": evaluation.id, "name": evaluation.name, "pairs": evaluation.num_pairs,
                    "dataset_version": evaluation.dataset_version, "arm": arm, "arms": names, "base": base,
                    "against": against, "rating": rating, "pairwise": pairwise,
                    "raters": len({c.rater for c in comparisons}),
                    "stats": summarize(votes_from_rows(rows), resamples=1000) if rows else None})
    return out


def human_lines(h: dict[str, Any]) -> list[str]:
    """One evaluation of ``human_evaluations`` as the card's Markdown: the run's arm among the evaluation's arms, its
    Bradley–Terry rating against the base, its win rate against each other arm, and the two-arm figures."""
    arm, s, r = h["arm"], h["stats"], h["rating"]
    head = f"- #{h['evaluation']} {h['name']}"
    if len(h["arms"]) > 2 or arm != h["arms"][-1]:
        head += f" (this run is the arm '{arm}' of {' vs '.join(h['arms'])})"
    if not h["pairwise"]:
        return [f"{head}: {h['pairs']} pairs, no votes yet"]
    out = [f"{head}:"]
    if r is not None:
        out.append(f"  - Bradley–Terry rating against {r['reference']}: {r['rating']:+.2f} (95%: "
                   + ("n/a" if r["low"] is None else f"{r['low']:+.2f} to {r['high']:+.2f}")
                   + f"), so it beats {r['reference']} {_pct(r['chance'])} of the time ("
                   + ("n/a" if r["chance_low"] is None else f"{_pct(r['chance_low'])}–{_pct(r['chance_high'])}")
                   + f"); {r['votes']} votes on {r['prompts']} prompts."
                   + (f" ⚠️ {r['note'].capitalize()}." if r["note"] else ""))
    for p in h["pairwise"]:
        out.append(f"  - Against {p['other']}: won {p['wins']}, lost {p['losses']}, ties {p['ties']}, both bad "
                   f"{p['both_bad']}; win rate {_pct(p['win_rate'])} (Wilson 95%: {_pct(p['wilson_low'])}–"
                   f"{_pct(p['wilson_high'])}) of {p['decisive']} decisive votes."
                   + (f" ⚠️ {p['rough_note'].capitalize()}." if p["rough_note"] and p["other"] != h["against"]
                      else ""))
    if s:
        out.append(f"  - Against {h['against']}, all figures: {s['votes']} votes on {s['prompts']} prompts by "
                   f"{s['raters']} rater(s). {arm} won {s['wins']}, {h['against']} won {s['losses']}, ties "
                   f"{s['ties']}, both bad {s['both_bad']}. Win rate {_pct(s['win_rate'])} (Wilson 95%: "
                   f"{_pct(s['wilson_low'])}–{_pct(s['wilson_high'])}, sign test p = "
                   f"{'n/a' if s['sign_test_p'] is None else format(s['sign_test_p'], '.3g')}); ties as half: "
                   f"{_pct(s['win_rate_ties_half'])} (bootstrap 95%: {_pct(s['bootstrap_low'])}–"
                   f"{_pct(s['bootstrap_high'])}); agreement (Krippendorff's alpha): "
                   f"{'n/a' if s['krippendorff_alpha'] is None else format(s['krippendorff_alpha'], '.2f')}."
                   + (f" ⚠️ {s['rough_note'].capitalize()}." if s.get("rough_note") else ""))
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def known_limits(run, auto, humans: list[dict[str, Any]], regression: list) -> list[str]:
    """Limits the figures themselves show: small samples, wide intervals, failed checks, what was not measured."""
    limits = []
    if auto is None:
        limits.append("No automatic evaluation yet: run `python -m evaluation auto --run "
                      f"{run.id} --split {run.dataset}` for ROUGE-L, BLEU and perplexity.")
    else:
        answers = auto.metrics["finetuned"]["answers"]
        if answers < 100:
            limits.append(f"Automatic metrics rest on {answers} test answers; differences of a few points can be noise.")
        base, tuned = auto.figure("base", "rouge_l"), auto.figure("finetuned", "rouge_l")
        if base is not None and tuned is not None and tuned < base:
            limits.append(f"ROUGE-L is lower than the base model's ({tuned:.3f} vs {base:.3f}): the adapter moved "
                          f"answers away from the reference style.")
        if auto.figure("finetuned", "exact_match") is None:
            limits.append("No classification or extraction records in the test split, so exact match was not measured.")
        limits.append("ROUGE-L and BLEU reward word overlap with one reference answer; a correct answer worded "
                      "differently scores low, so they are a proxy for quality, not a judgement of it.")
    decided = [h for h in humans if any(p["decisive"] for p in h["pairwise"])]
    if not decided:
        limits.append("No human votes yet: nobody has compared this adapter with the base model blind.")
    for h in decided:
        for p in h["pairwise"]:
            if p["decisive"] and p["wilson_low"] <= 0.5 <= p["wilson_high"]:
                limits.append(f"Evaluation #{h['evaluation']}: against {p['other']}, the 95% interval of the win "
                              f"rate ({_pct(p['wilson_low'])} to {_pct(p['wilson_high'])}) includes 50%, so raters "
                              f"did not clearly prefer either model.")
        if h["raters"] < 2:
            limits.append(f"Evaluation #{h['evaluation']} had a single rater; agreement could not be measured.")
    for result in regression:
        failed = [r.name for r in result.results if not r.passed]
        if failed:
            limits.append(f"Regression suite '{result.suite}': {len(failed)} of {result.total} cases fail "
                          f"({', '.join(failed[:5])}{'…' if len(failed) > 5 else ''}).")
    if run.config.stage == "dpo" and run.metrics.get("train_pairs") is not None and run.metrics["train_pairs"] < 200:
        limits.append(f"DPO learned from {run.metrics['train_pairs']} preference pairs; with so few, the "
                      f"preference it learned may not carry beyond those prompts.")
    limits.append(f"Only evaluated on {run.dataset}'s domain; behaviour on other topics is unknown.")
    return limits


def model_card(ws: Workspace, run_id: str | int) -> str:
    """The Markdown model card of a registered run, from what the workspace knows now."""
    from evaluation.auto import FIGURES, latest_auto_evaluation
    from evaluation.regression import latest_results
    from training.registry import get_run

    run = get_run(ws, run_id)
    auto = latest_auto_evaluation(ws, run.id)
    humans = human_evaluations(ws, run.id)
    from evaluation.guard import GUARD_SUITE
    # The guard has its own section below; the regression table holds the domain suites only.
    regression = [r for r in latest_results(ws, run.id) if r.suite != GUARD_SUITE]
    base_regression = {r.suite: r for r in latest_results(ws, run.id, model="base")}
    lines = training_card_lines(ws, run)
    lines += ["## Automatic metrics", ""]
    if auto is None:
        lines.append("Not measured yet.")
    else:
        lines += [f"On v{auto.dataset_version}/{auto.split} ({auto.metrics['finetuned']['answers']} answers, greedy "
                  f"decoding, at most {auto.settings.get('max_new_tokens')} new tokens; measured {auto.created_at}).",
                  "", "| figure | base | fine-tuned |", "|---|---|---|"]
        for key, title, higher in FIGURES:
            lines.append(f"| {title} ({'higher' if higher else 'lower'} is better) | "
                         f"{format_metric(key, auto.figure('base', key))} | "
                         f"{format_metric(key, auto.figure('finetuned', key))} |")
    lines += ["", "## Human evaluation", ""]
    if not humans:
        lines.append("No blind evaluation yet.")
    for h in humans:
        lines += human_lines(h)
    lines += ["", "## Regression suites", ""]
    if not regression:
        lines.append("No regression suite has been run for this adapter.")
    else:
        lines += ["| suite | base | fine-tuned | failing cases (fine-tuned) |", "|---|---|---|---|"]
        for r in regression:
            base = base_regression.get(r.suite)
            failed = ", ".join(c.name for c in r.results if not c.passed) or "none"
            lines.append(f"| {r.suite} | {f'{base.passed}/{base.total}' if base else 'n/a'} | {r.passed}/{r.total} "
                         f"| {failed} |")
    from evaluation.guard import guard_markdown
    lines += ["", "## General skills (guard)", "", guard_markdown(ws, run.id)]
    from evaluation.pii_leak import latest_leak_check, leak_check_markdown
    lines += ["", "## PII leak check", "", leak_check_markdown(latest_leak_check(ws, run.id), run.id)]
    lines += ["", "## Known limits", ""]
    lines += [f"- {text}" for text in known_limits(run, auto, humans, regression)]
    lines += ["", "## Use", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              f"base = AutoModelForCausalLM.from_pretrained({json.dumps(_base_path(run))})",
              "model = PeftModel.from_pretrained(base, \"path/to/this/folder\")", "```", ""]
    return "\n".join(lines)


def _base_path(run) -> str:
    config = run.adapter_dir / "adapter_config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("base_model_name_or_path") or run.base_model
    return run.base_model


def write_model_card(ws: Workspace, run_id: str | int, folder: str | Path | None = None) -> Path:
    """Write the card as README.md into ``folder`` (default: the run's adapter folder); returns the path."""
    from training.registry import get_run
    target = Path(folder) if folder is not None else get_run(ws, run_id).adapter_dir
    path = target / CARD_FILE
    atomic_write(path, model_card(ws, run_id).encode("utf-8"))
    return path
