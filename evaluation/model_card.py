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


def human_evaluations(ws: Workspace, run_id: str | int) -> list[dict[str, Any]]:
    """Every blind evaluation of the run with its statistics (votes, win rate, Wilson and bootstrap intervals)."""
    from evaluation.arena import evaluation_votes, get_evaluation, run_key
    from evaluation.stats import summarize, votes_from_rows
    out = []
    ids = [r[0] for r in ws.db.execute("select id from evaluations where run_id=? order by id",
                                       (run_key(ws, run_id),))]
    for evaluation in (get_evaluation(ws, eid) for eid in ids):
        rows = [v.to_stats_row() for v in evaluation_votes(ws, evaluation.id)]
        out.append({"evaluation": evaluation.id, "name": evaluation.name, "pairs": evaluation.num_pairs,
                    "dataset_version": evaluation.dataset_version,
                    "stats": summarize(votes_from_rows(rows), resamples=1000) if rows else None})
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
    decided = [h for h in humans if h["stats"] and h["stats"]["decisive"]]
    if not decided:
        limits.append("No human votes yet: nobody has compared this adapter with the base model blind.")
    for h in decided:
        s = h["stats"]
        if s["wilson_low"] is not None and s["wilson_low"] <= 0.5 <= s["wilson_high"]:
            limits.append(f"Evaluation #{h['evaluation']}: the 95% interval of the win rate "
                          f"({_pct(s['wilson_low'])} to {_pct(s['wilson_high'])}) includes 50%, so raters did not "
                          f"clearly prefer either model.")
        if s["raters"] < 2:
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
        s = h["stats"]
        if not s:
            lines.append(f"- #{h['evaluation']} {h['name']}: {h['pairs']} pairs, no votes yet")
            continue
        lines.append(f"- #{h['evaluation']} {h['name']}: {s['votes']} votes on {s['prompts']} prompts by "
                     f"{s['raters']} rater(s). Fine-tuned won {s['wins']}, base won {s['losses']}, ties {s['ties']}, "
                     f"both bad {s['both_bad']}. Win rate {_pct(s['win_rate'])} (Wilson 95%: "
                     f"{_pct(s['wilson_low'])}–{_pct(s['wilson_high'])}, sign test p = "
                     f"{'n/a' if s['sign_test_p'] is None else format(s['sign_test_p'], '.3g')}); ties as half: "
                     f"{_pct(s['win_rate_ties_half'])} (bootstrap 95%: {_pct(s['bootstrap_low'])}–"
                     f"{_pct(s['bootstrap_high'])}); agreement (Krippendorff's alpha): "
                     f"{'n/a' if s['krippendorff_alpha'] is None else format(s['krippendorff_alpha'], '.2f')}."
                     + (f" ⚠️ {s['rough_note'].capitalize()}." if s.get("rough_note") else ""))
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
