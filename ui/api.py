"""The automation API: the steps a user scripts, as small typed functions with real parameter names.

``register(ws)``, called inside the admin app's Blocks, exposes each one under its own ``api_name``
(``/import_records``, ``/build_split``, ``/run_status`` ...) through ``gr.api``; ``hide_unnamed`` then
takes every other event of the app out of the API description, so that a gradio_client user sees only
these. Versions and runs are plain strings ("v3", "current", "7"), never dropdown choices frozen at
start-up. Results are plain dicts (JSON). In hosted mode ``ui.access.guard_handlers`` wraps these like
every other handler, so only admins may call them; the rater and playground apps register none.

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    made = client.predict(text=open("chats.jsonl").read(), filename="chats.jsonl", api_name="/import_records")
    split = client.predict(version=made["version"], options={"test": 0.1}, api_name="/build_split")
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from core.errors import TuneloopError
from ui.kit import bind, caller_name, show_errors

CURRENT = "current"


def _version(ws, ref: str):
    from curation.data.versions import get_version, require_current
    ref = (ref or "").strip()
    return require_current(ws) if ref in ("", CURRENT) else get_version(ws, ref)


def version_summary(v) -> dict:
    """A dataset version as the API returns it."""
    return {"version": v.name, "parent": f"v{v.parent_id}" if v.parent_id else None, "step": v.step,
            "records": v.num_records, "counts": v.counts, "content_hash": v.content_hash}


def list_versions(ws, request: gr.Request = None) -> list[dict]:
    """Every dataset version, oldest first, with its parent, the step that made it and its counts;
    "current" names the one a step without a version works on."""
    from curation.data.versions import current_version, list_versions as versions
    current = current_version(ws)
    return [{**version_summary(v), "current": bool(current and v.id == current.id)} for v in versions(ws)]


def import_records(ws, text: str, filename: str = "records.jsonl", append: bool = False, format: str = "",
                   columns: str = "", skip_bad: bool = False, request: gr.Request = None) -> dict:
    """Import records as a new current version (a preference version for prompt/chosen/rejected pairs).
    ``text`` is the file's content; ``filename`` names its file type (.jsonl, .json, .csv by extension);
    ``format`` forces a schema (dolly, alpaca, sharegpt, messages, prompt_completion, preference, oasst; empty:
    detected); ``columns`` maps fields to columns ("prompt=question,completion=answer"); ``append`` keeps the
    current version's records and adds these; ``skip_bad`` imports the good records and lists the bad ones
    under ``skipped`` (stored with the version) instead of refusing the file."""
    from curation.data.formats import parse_column_map
    from curation.data.imports import import_file, skipped_lines
    name = Path(filename or "records.jsonl").name
    from core.workspace import served_files_folder
    staging = served_files_folder(ws)
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="api-import-", dir=staging) as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        made, result = import_file(ws, path, append=bool(append), created_by=caller_name(ws, request),
                                   display_name=name, format=(format or "").strip() or None,
                                   column_map=parse_column_map(columns), skip_bad=bool(skip_bad))
    return {**version_summary(made), "format": result.format, "imported": result.count,
            "warnings": result.warnings, "skipped": skipped_lines(result.skipped)}


def scrub_pii(ws, version: str = CURRENT, request: gr.Request = None) -> dict:
    """Find personal data in a version with the workspace's saved PII settings (the PII tab's) and make
    the scrubbed version, every finding replaced as proposed. For a record-by-record review use the tab."""
    from curation.pii.review import apply_scan, run_scan
    source = _version(ws, version)
    who = caller_name(ws, request)
    scan = run_scan(ws, version=source.name, actor=who)
    made = apply_scan(ws, scan.id, actor=who, branch=True)
    return {**version_summary(made), "found": scan.counts}


def deduplicate(ws, version: str = CURRENT, options: dict | None = None, request: gr.Request = None) -> dict:
    """Drop exact and near duplicates from a version (each cluster keeps one record by the keeper policy)
    and make the new version. ``options`` are the Dedup tab's (``python -m curation.dedup --help``)."""
    from curation.dedup.clusters import DedupOptions, apply_dedup, find_duplicates_in_version
    source = _version(ws, version)
    result = find_duplicates_in_version(ws, source.name, DedupOptions.from_dict(options or {}))
    made = apply_dedup(ws, result, created_by=caller_name(ws, request))
    return {**version_summary(made), "clusters": len(result.clusters)}


def build_split(ws, version: str = CURRENT, options: dict | None = None, request: gr.Request = None) -> dict:
    """Split a version into train/val/test and make the split version. ``options`` are the Splits tab's
    (shape, sizes, stratify or group field, seed: ``python -m curation.splits --help``)."""
    from curation.splits.build import split_version, version_split_options
    source = _version(ws, version)
    _, made = split_version(ws, source.name, version_split_options(ws, source.name, options),
                            created_by=caller_name(ws, request))
    return version_summary(made)


def launch_training(ws, split: str, preset: str = "", base_model: str = "default", name: str = "",
                    config: dict | None = None, request: gr.Request = None) -> dict:
    """Launch a fine-tuning run on a split version (in its own process; poll ``run_status``). ``preset``
    is one of the Train tab's presets (default: the first), ``config`` overrides its keys."""
    from training.config import PRESETS, preset_config
    from training.registry import launch_run
    run_config = preset_config(preset or next(iter(PRESETS)), **{**(config or {}), "base_model": base_model or "default",
                                          "datasets": _version(ws, split).name})
    run = launch_run(ws, run_config, name=name or None)
    return run_status(ws, str(run.id), request)


def run_status(ws, run: str = "", request: gr.Request = None) -> dict:
    """Where a run stands (default: the newest): status, step, losses, ETA, its adapter once written."""
    from training.registry import get_run_status, list_runs
    from training.run_views import progress_of
    if not (run or "").strip():
        runs = list_runs(ws)
        if not runs:
            raise TuneloopError("there is no run yet; launch one with launch_training or in the Train tab")
        run = str(runs[0].id)
    current = get_run_status(ws, run)
    return {"run": str(current.id), "label": current.label, "status": current.status, "error": current.error,
            "adapter": current.artefacts.get("adapter"), "progress": progress_of(current)}


def generate_pairs(ws, run: str, split: str, max_prompts: int = 40, overlap: int = 1, name: str = "",
                   arms: list[str] | None = None, base_model: str = "", system_prompt: str = "",
                   examples_seed: int = 0, max_new_tokens: int = 200, request: gr.Request = None) -> dict:
    """Generate answers to a split's test prompts and make a blind evaluation of them, ready for raters
    (``overlap`` raters per pair): the base against ``run``, or with ``arms`` (then ``run`` may be empty) any
    set of them as the generate command takes them (base, prompted:K, run:N, endpoint:URL#MODEL; the prompted
    base's ``system_prompt`` and K examples from the split's train part drawn by ``examples_seed``), answered
    with ``base_model`` when no run is among them (runs carry their own base); each answer at most
    ``max_new_tokens`` tokens."""
    from evaluation.generate import parse_arm, prepare_evaluation, prompts_from_version, resolve_arms
    from training.inference import DecodingSettings
    source = _version(ws, split)
    items = prompts_from_version(ws, source.id, limit=int(max_prompts) or None)
    asked = [parse_arm(a, system_prompt=system_prompt, seed=int(examples_seed or 0)) for a in arms or []]
    if not asked:
        if not (run or "").strip():
            raise TuneloopError("name the run to compare with its base, or the arms (e.g. ['base', 'prompted:2'])")
        asked = [parse_arm("base"), parse_arm(f"run:{run.strip()}")]
    elif (run or "").strip():
        raise TuneloopError("give either the run (compared with its base) or the arms, not both; add run:N to arms")
    base, chosen = resolve_arms(ws, asked, items=items, version=source.id, base_model=base_model.strip() or None)
    evaluation_id = prepare_evaluation(ws, items, arms=chosen, base_model=base, name=name or None,
                                       dataset_version=source.id, overlap=int(overlap or 1),
                                       settings=DecodingSettings(max_new_tokens=int(max_new_tokens)),
                                       created_by=caller_name(ws, request))
    return {"evaluation": evaluation_id, "pairs": len(items), "arms": [a.name for a in chosen]}


def evaluation_report(ws, evaluation: str, policy: str = "majority", judge_threshold: float = 0.4,
                      request: gr.Request = None) -> dict:
    """What the raters said: win rate with its interval and test, position bias and agreement, and what the
    votes would feed back under ``policy``; across the arms, the Bradley–Terry ratings with their intervals, the
    win matrix and the raters' quality (``arms``: what ``python -m evaluation report --json`` prints); and each
    judge that read the pairs, its agreement with the experts against ``judge_threshold`` and its own verdicts
    on the pairs nobody rated and on the rest of the test split (``judges``: the judge's, never votes)."""
    from dataclasses import asdict

    from evaluation.arena import evaluation_arms, evaluation_comparisons, evaluation_votes, get_evaluation
    from evaluation.feedback import collect_feedback
    from evaluation.judge import calibrate, judges_used, rest_figures, split_figures
    from evaluation.ratings import arms_summary
    from evaluation.stats import summarize, votes_from_rows
    chosen = get_evaluation(ws, evaluation)
    rows = [v.to_stats_row() for v in evaluation_votes(ws, chosen.id)]
    feedback = collect_feedback(ws, chosen.id, policy=policy)
    comparisons = evaluation_comparisons(ws, chosen.id)
    names = [a.name for a in evaluation_arms(ws, chosen.id)]
    judges = []
    for name in judges_used(ws, chosen.id):
        cal = calibrate(ws, chosen.id, name, threshold=float(judge_threshold))
        split = split_figures(ws, chosen.id, name, threshold=float(judge_threshold), calibration=cal)
        judges.append({"judge": name, "calibration": {**asdict(cal), "passes": cal.passes},
                       "rest": asdict(rest_figures(ws, chosen.id, name)),
                       "rest_of_split": {**asdict(split), "few_prompts": split.few_prompts} if split.pairs else None})
    return {"evaluation": chosen.id, "name": chosen.name, "run": chosen.run_id, "pairs": chosen.num_pairs,
            "stats": summarize(votes_from_rows(rows)) if rows else None, "feedback": feedback.counts(),
            "arms": arms_summary(comparisons, reference=names[0], arms=names) if comparisons else None,
            "judges": judges, "closed": chosen.settings.get("closed")}


def merge_feedback(ws, evaluation: str, policy: str = "majority", request: gr.Request = None) -> dict:
    """Merge an evaluation's feedback (corrected answers; both-bad prompts go to curation's answer
    requests) into a new current version."""
    from evaluation.arena import parse_evaluation_id
    from evaluation.feedback import merge_feedback as merge
    return version_summary(merge(ws, parse_evaluation_id(evaluation), policy=policy,
                                 created_by=caller_name(ws, request)))


ENDPOINTS = (list_versions, import_records, scrub_pii, deduplicate, build_split, launch_training, run_status,
             generate_pairs, evaluation_report, merge_feedback)


def register(ws) -> None:
    """Expose every function of ``ENDPOINTS`` under its own name, inside the caller's Blocks. Call it before
    the tabs are built: Gradio gives a name to the first event that asks for it, and a tab's handler may
    share one (a later one gets ``name_1``, which ``hide_unnamed`` then hides)."""
    for fn in ENDPOINTS:
        endpoint = show_errors(bind(fn, ws))
        endpoint.tuneloop_api = True
        gr.api(endpoint, api_name=fn.__name__, api_description=fn.__doc__)


def hide_unnamed(blocks) -> None:
    """Take every event that is not one of ``ENDPOINTS`` out of the API description: the widgets' events
    stay callable by the page itself, but a script sees only the functions meant for it."""
    fns = blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns
    for block_fn in fns:
        if not getattr(block_fn.fn, "tuneloop_api", False):
            block_fn.api_visibility = "undocumented"
