"""``python -m evaluation``: generate pairs for rating, report on an evaluation, export feedback, stats.

Commands::

    generate (--run RUN | --arm ARM ...) [--split VERSION] [--purpose measure|improve]
             [--prompts-from test|train|typed|file:PATH|served] [--overlap K] [--limit N] [--workspace DIR]
    report EVAL [--json] [--workspace DIR]
    export-preferences EVAL [OUT] [--single-file] [--policy majority|unanimous] [--workspace DIR]
    export-kto EVAL [OUT] [--single-file] [--policy majority|unanimous] [--workspace DIR]
    export-votes EVAL OUT.jsonl [--workspace DIR]
    merge-feedback EVAL [--policy majority|unanimous] [--workspace DIR]
    release-stale EVAL [--hours 24] [--workspace DIR]
    merge-served-feedback [--workspace DIR]
    stats VOTES.jsonl [--reference ARM] [--json]
    close EVAL [--reason TEXT] [--workspace DIR]
    card RUN [--out DIR] [--workspace DIR]
    auto --run RUN --split VERSION [--which test] [--limit N] [--json] [--workspace DIR]
    pii-leak --run RUN [--max-values K] [--samples S] [--json] [--workspace DIR]
    judge EVAL [--judge default|MODEL|endpoint:URL#MODEL] [--key-env NAME] [--threshold 0.4] [--rest]
          [--rest-of-split [--limit N] [--base MODEL]] [--json]

``pii-leak`` exits with status 1 when the fine-tuned model reproduces a scrubbed value the base model does not
(a training leak), 0 when it reproduces none or the run's data went through no PII step, 2 on an error.
``judge --rest`` and ``judge --rest-of-split`` exit with status 1 when the judge's kappa is below the threshold
(nothing more is judged); Ctrl-C stops judging with status 130 and keeps every reading.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path

from core.errors import TuneloopError
from core.options import add_arguments, flag_of, from_args
from evaluation.arena import RaterChecks, read_gold_items
from evaluation.generate import PROMPT_SOURCES, PURPOSES
from evaluation.pii_leak import LeakCheckOptions
from training.inference import DecodingSettings


def cmd_guard(args) -> int:
    from evaluation.guard import main as guard_main
    return guard_main((["--workspace", args.workspace] if args.workspace else []) +
                      (["--run", args.run] if args.run else []))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args) or 0
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation",
                                description="Blind side-by-side rating of a fine-tuned run against its base model.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def command(name, fn, help_text, workspace=True, **kw):
        # argparse %-formats a help text (not a description): "95% intervals" would end the listing in a TypeError.
        c = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text, **kw)
        c.set_defaults(command=fn)
        if workspace:
            c.add_argument("--workspace", help="workspace folder (default: $TUNELOOP_WORKSPACE or ./workspace)")
        return c

    g = command("generate", cmd_generate,
                "answer prompts with every arm (the base, the prompted base, runs, an endpoint) and create an "
                "evaluation ready for rating",
                epilog="Arms (--arm, repeatable; --run RUN is --arm base --arm run:RUN): base | prompted:K (the base "
                       "with --system-prompt and K examples from the version's train split, drawn by --examples-seed) "
                       "| run:N (a run id or adapter folder) | endpoint:URL#MODEL (an OpenAI-compatible endpoint, "
                       "e.g. endpoint:http://127.0.0.1:8000/v1#run-3; its API key from the environment variable "
                       "--api-key-env names). Purposes: measure (--prompts-from test: held-out prompts, the votes "
                       "feed the statistics only) or improve (--prompts-from train | typed (with --prompt) | "
                       "file:PATH | served (requests the endpoint logged with --log-text): the votes and corrections "
                       "become training data).")
    g.add_argument("--arm", action="append", default=[], metavar="ARM",
                   help="an arm to compare: base | prompted:K | run:N | endpoint:URL#MODEL (repeat it)")
    g.add_argument("--run", help="the run to compare with its base (the same as --arm base --arm run:RUN)")
    g.add_argument("--split", "--version", dest="version", metavar="VERSION",
                   help="the dataset version whose test or train split holds the prompts, and the prompted base's "
                        "examples (v4)")
    g.add_argument("--purpose", choices=tuple(PURPOSES),
                   help="measure or improve (default: what --prompts-from serves)")
    g.add_argument("--prompts-from", default="test", metavar="SOURCE",
                   help="test | train | typed | file:PATH | served (default: test)")
    g.add_argument("--prompt", action="append", default=[],
                   help="a typed prompt (with --prompts-from typed; repeat it)")
    g.add_argument("--system-prompt", default="", help="the prompted base's system prompt")
    g.add_argument("--examples-seed", type=int, default=0, help="the seed that draws the prompted base's examples")
    g.add_argument("--api-key-env", default="", metavar="NAME",
                   help="the environment variable holding the endpoint's API key (the key is never stored)")
    g.add_argument("--base", help="base model, when the adapter folder does not name it (or for arms without a run)")
    g.add_argument("--name", help="a name for the evaluation")
    g.add_argument("--overlap", type=int, default=1, help="raters per pair (default 1)")
    g.add_argument("--limit", type=int, help="rate only the first N prompts")
    g.add_argument("--guidelines", default="", help="guidelines shown to raters beside each pair")
    g.add_argument("--pairs-per-prompt", type=int, metavar="N",
                   help="pairs of arms each prompt gets (default: every pair of arms); fewer are spread so that every "
                        "pair of arms is compared on as many prompts")
    g.add_argument("--gold", metavar="FILE", help="gold pairs that test the raters: JSONL, one object per line with "
                                                  "prompt (or messages), better and worse")
    g.add_argument("--gold-from-references", action="store_true",
                   help="also make gold pairs from the split's reference answers (each prompt's own answer against "
                        "another prompt's), as many as --gold-rate needs")
    for f in dataclasses.fields(RaterChecks):
        g.add_argument(flag_of(f), dest=f.name, default=argparse.SUPPRESS, metavar=f.name.upper(),
                       help=f.metadata["help"])
    add_arguments(g, DecodingSettings)
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--4bit", dest="load_in_4bit", action="store_true", help="load the base model in 4-bit NF4")

    r = command("report", cmd_report, "figures, feedback and disagreements of an evaluation")
    r.add_argument("evaluation", metavar="EVAL")
    r.add_argument("--json", action="store_true", help="print JSON instead of text")
    r.add_argument("--policy", choices=("majority", "unanimous"), default="majority")

    e = command("export-preferences", cmd_export_preferences,
                "make the evaluation's preference pairs a preference dataset version (what a DPO run names), "
                "and optionally write it as JSONL (prompt/chosen/rejected, trl's format)")
    e.add_argument("evaluation", metavar="EVAL")
    e.add_argument("out", metavar="OUT", nargs="?",
                   help="also write the version here: a folder or .zip / .tar.gz of train, validation and test JSONL "
                        "(OUT.jsonl, one file, when no pair has a split or with --single-file)")
    e.add_argument("--single-file", action="store_true",
                   help="write OUT.jsonl even when pairs come from test prompts (meta.split marks them)")
    e.add_argument("--policy", choices=("majority", "unanimous"), default="majority",
                   help="raters who disagree: keep the majority side, or drop the pair (default majority)")

    k = command("export-kto", cmd_export_kto,
                "make every answer the evaluation's votes judged a KTO dataset version (what a KTO run names): a vote "
                "for one side makes it desirable and the other undesirable, both bad makes both undesirable, a "
                "corrected answer is desirable; optionally write it as JSONL (prompt/completion/label, trl's format)")
    k.add_argument("evaluation", metavar="EVAL")
    k.add_argument("out", metavar="OUT", nargs="?",
                   help="also write the version here, as export-preferences does")
    k.add_argument("--single-file", action="store_true",
                   help="write OUT.jsonl even when examples come from test prompts (meta.split marks them)")
    k.add_argument("--policy", choices=("majority", "unanimous"), default="majority",
                   help="raters who disagree on an answer: keep the majority, or drop it (default majority)")

    v = command("export-votes", cmd_export_votes, "write the evaluation's votes in the format `stats` reads")
    v.add_argument("evaluation", metavar="EVAL")
    v.add_argument("out", metavar="OUT.jsonl")

    m = command("merge-feedback", cmd_merge_feedback,
                "add corrected answers and answered prompts to the current dataset as a new version")
    m.add_argument("evaluation", metavar="EVAL")
    m.add_argument("--policy", choices=("majority", "unanimous"), default="majority")

    command("merge-served-feedback", cmd_merge_served_feedback,
            "feedback from use of a served run (`python -m training serve`): corrections into a new dataset version, "
            "thumbs as preference pairs and a KTO version, uncorrected thumbs-down into the needs-an-answer queue")

    rs = command("release-stale", cmd_release_stale,
                 "free pairs issued to raters long ago and never voted on, so other raters can take them")
    rs.add_argument("evaluation", metavar="EVAL")
    rs.add_argument("--hours", type=float, default=24, help="issued more than this many hours ago (default 24)")

    s = command("stats", cmd_stats, "figures for votes gathered anywhere (JSONL: prompt_id, rater, verdict "
                                    "finetuned|base|tie|both_bad, finetuned_side A|B, optional label; or votes on "
                                    "any arms: prompt_id, rater, left, right, outcome left|right|tie|both_bad, "
                                    "optional label, gold, flagged)", workspace=False)
    s.add_argument("votes", metavar="VOTES.jsonl")
    s.add_argument("--reference", metavar="ARM", help="votes on arms: the arm rated 0 (default: base, else the "
                                                     "first arm of the file)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")

    cl = command("close", cmd_close, "close an evaluation to new votes (stop early, e.g. once the sequential test in "
                                     "`report` has decided); pairs already on a rater's screen can still be voted")
    cl.add_argument("evaluation", metavar="EVAL")
    cl.add_argument("--reason", default="", help="why, shown with the evaluation's figures")

    c = command("card", cmd_card, "write a run's model card (training facts and every evaluation figure) as "
                                  "README.md beside its adapter, so the next `python -m training export` carries it")
    c.add_argument("run", metavar="RUN")
    c.add_argument("--out", metavar="DIR", help="write README.md into this folder instead")

    gs = command("guard", cmd_guard, "the general-skills guard: 12 general prompts outside the domain (instruction "
                                     "following, refusals) answered by the base and a run, and what the run lost "
                                     "(the app runs it by itself after each run)")
    gs.add_argument("--run", help="check this run (default: every finished run not checked yet)")

    a = command("auto", cmd_auto, "automatic evaluation of a run on a split: ROUGE-L, BLEU, exact match, "
                                  "perplexity and the regression suites, for the base model and the run")
    a.add_argument("--run", help="run id from the run registry, a run folder, or an adapter folder")
    a.add_argument("--split", metavar="VERSION", help="dataset version holding the splits (v4)")
    a.add_argument("--missing", action="store_true",
                   help="instead of --run/--split: every finished run without an automatic evaluation, each on the "
                        "split it trained on (the rounds view's Measure automatically)")
    a.add_argument("--which", default="test", help="which split's reference answers to score (default: test)")
    a.add_argument("--limit", type=int, help="answer and score only the first N conversations of each split")
    a.add_argument("--max-new-tokens", type=int, default=DecodingSettings.max_new_tokens)
    a.add_argument("--batch-size", type=int, default=8)
    a.add_argument("--json", action="store_true", help="print JSON instead of text")

    k = command("pii-leak", cmd_pii_leak, "ask a run's fine-tuned model (and its base) for every PII value scrubbed "
                                          "from its training data; exit status 1 when the fine-tuned model "
                                          "reproduces one the base does not")
    k.add_argument("--run", required=True, help="run id from the run registry")
    add_arguments(k, LeakCheckOptions)
    k.add_argument("--json", action="store_true", help="print JSON (values masked) instead of text")

    j = command("judge", cmd_judge, "an automatic judge reads the rated pairs blind in both orders and reports its "
                                    "agreement with the experts (Cohen's kappa, percent agreement, 95% intervals); "
                                    "with --rest, above the threshold, it also judges the pairs nobody rated")
    j.add_argument("evaluation", metavar="EVAL")
    j.add_argument("--judge", default="default",
                   help="default (SmolLM2-135M), a base model (folder, .gguf file, hub id), or endpoint:URL#MODEL "
                        "for an OpenAI-compatible endpoint (URL: its /v1 base)")
    j.add_argument("--key-env", default="TUNELOOP_JUDGE_KEY", metavar="NAME",
                   help="environment variable holding the endpoint's API key (default TUNELOOP_JUDGE_KEY)")
    j.add_argument("--threshold", type=float, default=0.4,
                   help="the kappa the judge must reach before it may judge the rest (default 0.4)")
    j.add_argument("--rest", action="store_true", help="then judge the pairs nobody rated (only above the threshold)")
    j.add_argument("--rest-of-split", action="store_true",
                   help="then have the evaluation's arms answer the test prompts of its dataset version that are not "
                        "in it, and judge every pair of arms in both orders (only above the threshold; the judge's "
                        "figures, never votes)")
    j.add_argument("--limit", type=int, metavar="N",
                   help="with --rest-of-split: answer and judge the first N such prompts (default: all)")
    j.add_argument("--base", metavar="MODEL",
                   help="with --rest-of-split, for an evaluation without a run arm: the base model its arms answered "
                        "with (default: the one it was generated with, which it stores; 'default' for one made "
                        "before it did)")
    j.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def stopped(bar, stop: threading.Event, message: str) -> int:
    """Ctrl-C: tell the work under way to stop, close the progress bar, then say what was kept (the last line
    the terminal shows); the exit status of an interrupted command."""
    stop.set()
    bar.close()
    print(message, file=sys.stderr)
    return 130


def _workspace(args):
    from core.workspace import Workspace
    return Workspace.open(args.workspace)


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from curation.data.versions import get_version
    from evaluation.generate import ArmRequest, parse_arm, prepare_evaluation, prompts_for, resolve_arms
    from evaluation.gold import reference_gold

    requests = [parse_arm(a, system_prompt=args.system_prompt, seed=args.examples_seed, api_key_env=args.api_key_env)
                for a in args.arm]
    if args.run:
        requests = [ArmRequest("base"), ArmRequest("run", run=args.run)] + requests
    ws = _workspace(args)
    source, _, path = args.prompts_from.partition(":")
    purpose = args.purpose or PROMPT_SOURCES.get(source, ("measure",))[0]
    version = get_version(ws, args.version).id if args.version else None
    items = prompts_for(ws, source, purpose=purpose, version=version, texts=args.prompt, path=path or None,
                        limit=args.limit)
    base_model, arms = resolve_arms(ws, requests, items=items, version=version, base_model=args.base)
    settings = from_args(DecodingSettings, args)
    checks = RaterChecks.from_dict({f.name: getattr(args, f.name) for f in dataclasses.fields(RaterChecks)
                                    if hasattr(args, f.name)}).validate()
    gold = read_gold_items(args.gold) if args.gold else []
    if args.gold_from_references:
        gold += reference_gold(ws, source, version, items, len(arms), args.pairs_per_prompt, checks.gold_rate)
    bar = tqdm(total=len(arms) * len(items), unit="response", desc="generating")

    def progress(done, total, _what):
        bar.total = total
        bar.n = done
        bar.refresh()

    stop = threading.Event()
    try:
        eid = prepare_evaluation(ws, items, arms=arms, base_model=base_model, name=args.name, purpose=purpose,
                                 prompt_source=source, dataset_version=version if source in ("test", "train") else None,
                                 overlap=args.overlap, guidelines=args.guidelines, settings=settings,
                                 batch_size=args.batch_size, load_in_4bit=args.load_in_4bit, progress=progress,
                                 cancel=stop, pairs_per_prompt=args.pairs_per_prompt, gold=gold, checks=checks)
    except KeyboardInterrupt:
        return stopped(bar, stop, "stopped; the responses generated so far are cached")
    finally:
        bar.close()
    print(f"evaluation {eid}: {len(items)} prompts from {args.prompts_from}, arms {', '.join(a.name for a in arms)}; "
          f"rate to {purpose}, {args.overlap} rater(s) per pair; rate them in the Rate tab")
    return 0


def cmd_report(args) -> int:
    from curation.review.labels import label_field
    from evaluation.arena import evaluation_arms, evaluation_comparisons, evaluation_votes, get_evaluation
    from evaluation.feedback import collect_feedback
    from evaluation.ratings import arms_summary, format_arms
    from evaluation.stats import format_summary, summarize, votes_from_rows

    ws = _workspace(args)
    evaluation = get_evaluation(ws, args.evaluation)
    rows = [v.to_stats_row() for v in evaluation_votes(ws, evaluation.id)]
    summary = summarize(votes_from_rows(rows)) if rows else None
    comparisons = evaluation_comparisons(ws, evaluation.id)
    names = [a.name for a in evaluation_arms(ws, evaluation.id)]
    arms = arms_summary(comparisons, reference=names[0], arms=names) if comparisons else None
    fb = collect_feedback(ws, evaluation.id, policy=args.policy)
    field = label_field(ws, evaluation.dataset_version) if evaluation.dataset_version else None
    if args.json:
        print(json.dumps({"evaluation": evaluation.id, "name": evaluation.name, "run": evaluation.run_id,
                          "pairs": evaluation.num_pairs, "overlap": evaluation.overlap, "label_field": field,
                          "stats": summary, "arms": arms, "closed": evaluation.settings.get("closed"),
                          "gold_rate": evaluation.gold_rate, "gold": evaluation.settings.get("gold"),
                          "feedback": fb.counts(), "disagreements": fb.disagreements}, indent=2))
        return 0
    print(evaluation.describe())
    if evaluation.settings.get("closed"):
        print(f"closed to new votes at {evaluation.settings['closed']['at']}")
    print(format_summary(summary, field) if summary else "no votes yet")
    if arms:
        print(format_arms(arms))
    counts = fb.counts()
    print(f"feedback ({args.policy}): {counts['preference_pairs']} preference pairs, {counts['corrected']} corrected "
          f"answers, {counts['needs_answer']} prompts need an answer, {counts['disagreements']} disagreements "
          f"({counts['disagreements_excluded']} excluded)" + (f"; {counts['identical_answers']} voted pairs left out: "
                                                             f"both answers the same text"
                                                             if counts["identical_answers"] else ""))
    for d in fb.disagreements:
        votes = ", ".join(f"{r}: {o}" for r, o in d["votes"].items())
        print(f"  {d['prompt_id']} [{d['resolution']}]: {votes}")
    return 0


def cmd_export_preferences(args) -> int:
    from evaluation.arena import parse_evaluation_id
    from evaluation.feedback import export_preferences
    ws = _workspace(args)
    version = export_preferences(ws, parse_evaluation_id(args.evaluation), args.out, policy=args.policy,
                                 single_file=args.single_file)
    print(f"made {version.describe()}" + (f"; wrote {version.num_records} preference pairs to {args.out}"
                                          if args.out else ""))
    return 0


def cmd_export_kto(args) -> int:
    from evaluation.arena import parse_evaluation_id
    from evaluation.feedback import export_kto
    ws = _workspace(args)
    version = export_kto(ws, parse_evaluation_id(args.evaluation), args.out, policy=args.policy,
                         single_file=args.single_file)
    print(f"made {version.describe()} (a KTO run names it: kto_data: {version.name})"
          + (f"; wrote {version.num_records} KTO examples to {args.out}" if args.out else ""))
    return 0


def cmd_export_votes(args) -> int:
    from core.workspace import atomic_write
    from evaluation.arena import evaluation_votes, parse_evaluation_id
    ws = _workspace(args)
    votes = evaluation_votes(ws, parse_evaluation_id(args.evaluation))
    atomic_write(Path(args.out), "".join(json.dumps(v.to_stats_row()) + "\n" for v in votes).encode("utf-8"))
    print(f"wrote {len(votes)} votes to {args.out}")
    return 0


def cmd_merge_feedback(args) -> int:
    from evaluation.arena import parse_evaluation_id
    from evaluation.feedback import merge_feedback
    ws = _workspace(args)
    version = merge_feedback(ws, parse_evaluation_id(args.evaluation), policy=args.policy)
    print(f"made {version.describe()}\n{version.note}")
    return 0


def cmd_merge_served_feedback(args) -> int:
    from evaluation.production_feedback import merge_served_feedback
    print(merge_served_feedback(_workspace(args)).describe())
    return 0


def cmd_release_stale(args) -> int:
    from evaluation.arena import release_stale_assignments
    ws = _workspace(args)
    n = release_stale_assignments(ws, args.evaluation, older_than_hours=args.hours)
    print(f"released {n} pair(s) issued more than {args.hours:g} hours ago and never voted on")
    return 0


def cmd_stats(args) -> int:
    from evaluation.ratings import arms_summary, comparisons_from_rows, format_arms
    from evaluation.stats import format_summary, read_jsonl_rows, summarize, votes_from_rows
    rows = read_jsonl_rows(args.votes)
    if isinstance(rows[0], dict) and "left" in rows[0]:
        comparisons = comparisons_from_rows(rows, source=Path(args.votes).name)
        arms = [a for c in comparisons for a in (c.left, c.right)]
        summary = arms_summary(comparisons, reference=args.reference or ("base" if "base" in arms else arms[0]))
        print(json.dumps(summary, indent=2) if args.json else format_arms(summary))
        return 0
    summary = summarize(votes_from_rows(rows, source=Path(args.votes).name))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_close(args) -> int:
    from evaluation.arena import close_evaluation
    evaluation = close_evaluation(_workspace(args), args.evaluation, reason=args.reason)
    print(f"closed evaluation #{evaluation.id} to new votes at {evaluation.settings['closed']['at']}")
    return 0


def cmd_card(args) -> int:
    from evaluation.model_card import write_model_card
    path = write_model_card(_workspace(args), args.run, args.out)
    print(f"wrote {path}")
    return 0


def cmd_auto(args) -> int:
    from dataclasses import asdict

    from tqdm import tqdm

    from evaluation.auto import auto_evaluate, format_auto_evaluation

    bar = tqdm(unit="response", desc="answering", file=sys.stderr)

    def progress(done, total, what):
        if total:
            bar.total, bar.n = total, done
        bar.set_postfix_str(what)

    stop = threading.Event()
    if args.missing:
        from evaluation.auto import MEASURE_LIMIT, measure_missing, runs_without_figures
        ws = _workspace(args)
        try:
            results = measure_missing(ws, limit=args.limit or MEASURE_LIMIT, progress=progress, cancel=stop)
        except KeyboardInterrupt:
            return stopped(bar, stop, "stopped; the runs measured so far keep their figures, "
                                      f"{len(runs_without_figures(ws))} run(s) still lack them (run auto --missing "
                                      "again for those)")
        finally:
            bar.close()
        for result in results:
            print(json.dumps(asdict(result)) if args.json else format_auto_evaluation(result))
        if not results:
            print("every finished run already has its automatic evaluation", file=sys.stderr)
        return 0
    if not (args.run and args.split):
        bar.close()
        raise TuneloopError("auto needs --run RUN and --split VERSION, or --missing")
    try:
        result = auto_evaluate(_workspace(args), args.run, args.split, split=args.which, limit=args.limit,
                               settings=DecodingSettings(max_new_tokens=args.max_new_tokens),
                               batch_size=args.batch_size, progress=progress, cancel=stop)
    except KeyboardInterrupt:
        return stopped(bar, stop, "stopped; the answers generated so far are cached")
    finally:
        bar.close()
    print(json.dumps(asdict(result), indent=2) if args.json else format_auto_evaluation(result))
    return 0


def cmd_pii_leak(args) -> int:
    from dataclasses import asdict

    from tqdm import tqdm

    from evaluation.pii_leak import check_pii_leaks, format_leak_check

    bar = tqdm(unit="answer", desc="probing", file=sys.stderr)

    def progress(done, total, what):
        bar.total, bar.n = total, done
        bar.set_postfix_str(what)

    stop = threading.Event()
    try:
        check = check_pii_leaks(_workspace(args), args.run, from_args(LeakCheckOptions, args), progress=progress,
                                cancel=stop)
    except KeyboardInterrupt:
        return stopped(bar, stop, "stopped; nothing was stored")
    finally:
        bar.close()
    print(json.dumps(asdict(check), indent=2) if args.json else format_leak_check(check))
    return 1 if check.training_leaks else 0


def cmd_judge(args) -> int:
    from dataclasses import asdict

    from tqdm import tqdm

    from evaluation.judge import (calibrate, format_calibration, format_rest, format_split, judge_evaluation,
                                  judge_rest, judge_test_split, open_judge)

    if (args.limit is not None or args.base) and not args.rest_of_split:
        raise TuneloopError("--limit and --base go with --rest-of-split (the test prompts outside the evaluation)")
    ws = _workspace(args)
    judge = open_judge(ws, args.judge, key_env=args.key_env)
    bar = tqdm(unit="step", desc="judging", file=sys.stderr)

    def progress(done, total, what):
        bar.total, bar.n = total, done
        bar.set_description_str(what.split(":", 1)[0] if what.startswith(("answering:", "judging:")) else "judging")
        bar.set_postfix_str(what)
        bar.refresh()

    stop = threading.Event()
    rest = split = None
    try:
        judge_evaluation(ws, args.evaluation, judge, progress=progress, cancel=stop)
        cal = calibrate(ws, args.evaluation, judge.name, threshold=args.threshold)
        if cal.passes and args.rest:
            rest = judge_rest(ws, args.evaluation, judge, threshold=args.threshold, progress=progress, cancel=stop)
        if cal.passes and args.rest_of_split:
            split = judge_test_split(ws, args.evaluation, judge, threshold=args.threshold, limit=args.limit,
                                     base_model=args.base, progress=progress, cancel=stop)
    except KeyboardInterrupt:
        return stopped(bar, stop, "stopped; the answers and verdicts read so far are kept, and the same command "
                                  "continues from there")
    finally:
        bar.close()
    if args.json:
        print(json.dumps({"calibration": {**asdict(cal), "passes": cal.passes},
                          "rest": asdict(rest) if rest else None,
                          "split": {**asdict(split), "few_prompts": split.few_prompts} if split else None}, indent=2))
    else:
        print(format_calibration(cal))
        if rest:
            print(format_rest(rest))
        if split:
            print(format_split(split))
    if (args.rest or args.rest_of_split) and not cal.passes:
        shown = "undefined" if cal.overall.kappa is None else f"{cal.overall.kappa:.2f}"
        print(f"not judging the rest: kappa {shown} on {cal.pairs} rated pairs is below the threshold "
              f"{args.threshold:g}", file=sys.stderr)
        return 1
    return 0
