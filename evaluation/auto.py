"""Automatic evaluation of a run: the same figures for the base model and the run's adapter.

On one split version: the base model and the adapter answer the test prompts (greedy, through the
generation cache, from the process's one warm base model with the adapter switched off and on); their answers are
scored against the reference answers (ROUGE-L, BLEU, exact match on classification/extraction
records); perplexity of the reference answers is measured on the val and test splits; every
regression suite with cases is run. The result is stored with the run id and the version (id and
content hash), so rounds can be compared, and the run's model card is rewritten with it.

Example::

    result = auto_evaluate(ws, "3", "v4", limit=40)
    result.metrics["finetuned"]["rouge_l"], result.metrics["base"]["perplexity_test"]

``python -m evaluation auto --run RUN --split VERSION [--json]``
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.errors import TuneloopError
from core.workspace import Workspace
from evaluation.arena import run_key
from evaluation.metrics import format_metric
from training.inference import DecodingSettings, default_pool

Progress = Callable[[int, int, str], None]
MODELS = ("base", "finetuned")
# Test prompts a "Measure automatically" evaluation answers per run: enough for a figure, quick on a CPU.
MEASURE_LIMIT = 24
# (key, what the tables call it, higher is better)
FIGURES = (("rouge_l", "ROUGE-L", True), ("bleu", "BLEU", True), ("exact_match", "exact match", True),
           ("perplexity_val", "perplexity (val)", False), ("perplexity_test", "perplexity (test)", False))


@dataclass
class AutoEvaluation:
    id: int
    run_id: int | None
    adapter: str
    base_model: str
    dataset_version: int
    dataset_hash: str
    split: str
    settings: dict[str, Any]
    metrics: dict[str, Any]
    regression: list[int] = field(default_factory=list)
    created_at: str = ""

    @classmethod
    def from_row(cls, row) -> "AutoEvaluation":
        d = dict(row)
        for key in ("settings", "metrics", "regression"):
            d[key] = json.loads(d[key])
        return cls(**d)

    def figure(self, model: str, key: str) -> float | None:
        return self.metrics.get(model, {}).get(key)


def auto_evaluate(ws: Workspace, run: str, version: int | str, *, split: str = "test", limit: int | None = None,
                  settings=None, batch_size: int = 8, load_in_4bit: bool = False, sequence_len: int = 512,
                  suites: list[str] | None = None, write_card: bool = True, progress: Progress | None = None,
                  cancel: threading.Event | None = None) -> AutoEvaluation:
    """Evaluate a run (id, run folder or adapter folder) on a split version; store and return the result.

    ``limit`` caps the prompts answered and the conversations scored for perplexity per split;
    ``suites`` names the regression suites to run (all suites with cases when None).
    """
    from curation.data.versions import get_version, load_records
    from curation.review.labels import label_field
    from evaluation.generate import PromptItem, generate_pairs, record_label, resolve_adapter
    from evaluation.guard import GUARD_SUITE
    from evaluation.metrics import answer_metrics, perplexity, reference_pairs, wants_exact_match
    from evaluation.regression import get_suite, list_suites, run_suite

    settings = (settings or DecodingSettings()).validate()
    models = resolve_adapter(ws, run)
    v = get_version(ws, version)
    records = load_records(ws, v.id)
    by_split = {name: [r for r in records if r.meta.get("split") == name] for name in ("val", "test", split)}
    refs = [(conv, ref, rec) for conv, ref, rec in reference_pairs(by_split[split]) if conv[-1]["role"] == "user"]
    if not refs:
        raise TuneloopError(f"{v.name} has no '{split}' records with a reference answer; choose a split version "
                            f"(Splits tab) whose {split} split holds conversations")
    refs = refs[:limit] if limit else refs
    label = label_field(ws, v.id)
    items = [PromptItem(rec.id, conv, record_label(rec, label), split) for conv, _, rec in refs]
    answers = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=settings,
                             batch_size=batch_size, load_in_4bit=load_in_4bit, progress=progress, cancel=cancel)
    references = [ref for _, ref, _ in refs]
    exact = [wants_exact_match(rec) for _, _, rec in refs]
    metrics: dict[str, Any] = {model: answer_metrics([pair[n] for pair in answers], references, exact=exact)
                               for n, model in enumerate(MODELS)}
    from training.data import adapter_run_config, apply_system_prompt
    trained_with = adapter_run_config(models.adapter)      # the run's reference answers under its system prompt
    with default_pool().hold(ws, models.base_model, load_in_4bit=load_in_4bit) as warm:
        adapters = {"base": None, "finetuned": warm.add_adapter(models.adapter)}
        for name in ("val", "test"):
            scored = by_split[name][:limit] if limit else by_split[name]
            for side in MODELS:
                if cancel is not None and cancel.is_set():
                    raise TuneloopError("the automatic evaluation was stopped; the answers generated so far are cached")
                if progress:
                    progress(0, 0, f"perplexity of the {side} model on {len(scored)} {name} conversations")
                with warm.using(adapters[side]) as (model, tokenizer):
                    seen = apply_system_prompt(tokenizer, scored, trained_with) if side == "finetuned" else scored
                    result = perplexity(model, tokenizer, seen, sequence_len=sequence_len, batch_size=batch_size)
                metrics[side][f"perplexity_{name}"] = result["perplexity"]
                metrics[side][f"perplexity_{name}_tokens"] = result["tokens"]
    metrics["examples"] = [{"prompt": conv[-1]["content"], "reference": ref, "base": pair[0], "finetuned": pair[1]}
                           for (conv, ref, _), pair in list(zip(refs, answers))[:3]]
    # the general-skills guard runs on its own, after each run, with its own settings (evaluation.guard)
    chosen = ([get_suite(ws, s) for s in suites] if suites is not None
              else [s for s in list_suites(ws) if s.cases and s.name != GUARD_SUITE])
    regression_ids, metrics["regression"] = [], []
    for suite in chosen:
        if progress:
            progress(0, 0, f"regression suite '{suite.name}'")
        results = run_suite(ws, suite.id, run=run, settings=settings, batch_size=batch_size,
                            load_in_4bit=load_in_4bit, cancel=cancel)
        regression_ids += [r.regression_run_id for r in results.values()]
        metrics["regression"].append({"suite": suite.name, "total": results["base"].total,
                                      "base_passed": results["base"].passed,
                                      "finetuned_passed": results["finetuned"].passed})
    with ws.transaction() as db:
        eid = db.execute(
            "insert into auto_evaluations (run_id, adapter, base_model, dataset_version, dataset_hash, split, settings,"
            " metrics, regression) values (?,?,?,?,?,?,?,?,?)",
            (run_key(ws, models.run_id), models.adapter, models.base_model, v.id, v.content_hash, split,
             json.dumps(settings.to_dict()), json.dumps(metrics), json.dumps(regression_ids))).lastrowid
    if write_card and models.run_id is not None:
        from evaluation.model_card import write_model_card
        write_model_card(ws, models.run_id, Path(models.adapter))
    return get_auto_evaluation(ws, eid)


def runs_without_figures(ws: Workspace) -> list:
    """Finished runs with an adapter and a split version that no automatic evaluation has measured, oldest first."""
    from training.registry import list_runs
    return [run for run in sorted(list_runs(ws), key=lambda r: r.id)
            if run.status == "finished" and run.dataset_version is not None
            and (run.adapter_dir / "adapter_config.json").is_file() and latest_auto_evaluation(ws, run.id) is None]


def measure_missing(ws: Workspace, *, limit: int | None = MEASURE_LIMIT, progress: Progress | None = None,
                    cancel: threading.Event | None = None) -> list[AutoEvaluation]:
    """The automatic evaluation of every run that lacks one, each on the split version it trained on (what the
    rounds view's "Measure automatically" button does); stops between answers when ``cancel`` is set."""
    runs = runs_without_figures(ws)
    done = []
    for n, run in enumerate(runs, start=1):
        def told(i: int, total: int, text: str, run=run, n=n) -> None:
            if progress:
                progress(i, total, f"run {run.label} ({n} of {len(runs)}): {text}")
        done.append(auto_evaluate(ws, str(run.id), run.dataset_version, limit=limit, progress=told, cancel=cancel))
    return done


def get_auto_evaluation(ws: Workspace, evaluation_id: int) -> AutoEvaluation:
    row = ws.db.execute("select * from auto_evaluations where id=?", (int(evaluation_id),)).fetchone()
    if row is None:
        raise TuneloopError(f"there is no automatic evaluation #{evaluation_id}")
    return AutoEvaluation.from_row(row)


def latest_auto_evaluation(ws: Workspace, run_id: str | int, version: int | None = None) -> AutoEvaluation | None:
    """The newest automatic evaluation of a run (on one version when given), or None."""
    sql, args = "select * from auto_evaluations where run_id=?", [run_key(ws, run_id)]
    if version is not None:
        sql += " and dataset_version=?"
        args.append(int(version))
    row = ws.db.execute(sql + " order by id desc limit 1", args).fetchone()
    return AutoEvaluation.from_row(row) if row else None


def format_auto_evaluation(result: AutoEvaluation) -> str:
    """The figures side by side as plain text, with the change the adapter makes."""
    who = f"run {result.run_id}" if result.run_id else result.adapter
    answers = result.metrics["finetuned"]["answers"]
    lines = [f"{who} on v{result.dataset_version}/{result.split} ({answers} answers; base model {result.base_model})",
             f"{'figure':<18} {'base':>10} {'fine-tuned':>11} {'change':>9}"]
    for key, title, _ in FIGURES:
        base, tuned = result.figure("base", key), result.figure("finetuned", key)
        change = "" if base is None or tuned is None else f"{tuned - base:+.3f}"
        lines.append(f"{title:<18} {format_metric(key, base):>10} {format_metric(key, tuned):>11} {change:>9}")
    for row in result.metrics.get("regression", []):
        lines.append(f"regression '{row['suite']}': base {row['base_passed']}/{row['total']}, "
                     f"fine-tuned {row['finetuned_passed']}/{row['total']} cases pass")
    return "\n".join(lines)
