"""Retake the README's tab screenshots on the demo workspace: ``python docs/screenshots.py [TAB ...]``.

Starts the app on a fresh temporary workspace (demo data, made on first start), opens each named tab
(default: every tab that needs no trained run: Data, Review, PII, Dedup, Splits, Train) in headless
Chromium and writes ``docs/screenshots/<tab>.png``.

``python docs/screenshots.py --with-run [--workspace DIR]`` takes the Rate, Results and Playground pictures
from a real round on the default model instead: it imports the demo data, splits it (stratified by label),
trains round 1 with the "Quick CPU demo" preset (``--steps``), prepares an evaluation of the run against its
base on ``--prompts`` test prompts with two raters per pair, lets two simulated raters vote through the arena
API (each prefers the answer closer to the support team's reference answer: "ana" by ROUGE-L, "ben" by
ROUGE-1), measures the run automatically (BLEU, perplexity) and then photographs the three tabs: the Rate tab
with ben's last pair on screen, the Results tab with both raters' figures and the rounds view, and the
Playground answering a test question. Every step is the headless command a user would run
(``python -m curation demo``, ``python -m curation.splits``, ``python -m training run``,
``python -m evaluation generate`` / ``auto``); a step already done in ``--workspace DIR`` is skipped, so a
second call only retakes the pictures (name the tabs: ben's last vote is cast after the first Rate picture, so a
second Rate picture finds no pair left to him). What it did, with the figures, goes to
``docs/screenshots/with-run.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, CHROMIUM_FLAGS, start_app  # noqa: E402

TABS = ["Data", "Review", "PII", "Dedup", "Splits", "Train", "Playground", "Rate", "Results"]
SHOTS = ROOT / "docs" / "screenshots"
RATERS = ("ana", "ben")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/screenshots.py", description=__doc__.split("\n")[0])
    parser.add_argument("tabs", nargs="*", help=f"tabs to take (of {', '.join(TABS)}; default: "
                                                f"{', '.join(TABS[:6])}, or with --with-run Rate, Results, Playground)")
    parser.add_argument("--workspace", help="an existing workspace to show (default: a fresh demo one); with "
                                            "--with-run, where the round is made (kept, and reused when run again)")
    parser.add_argument("--with-run", action="store_true",
                        help="make a real round first (split, train, evaluate, two raters vote) and take Rate, "
                             "Results and Playground from it")
    parser.add_argument("--steps", type=int, default=6,
                        help="with --with-run: training steps (default 6: on 2 cores shared with other jobs a step "
                             "of the Quick CPU demo preset took 2-4 minutes; the preset itself takes 24)")
    parser.add_argument("--prompts", type=int, default=16, help="with --with-run: test prompts to rate (default 16)")
    parser.add_argument("--no-auto", action="store_true",
                        help="with --with-run: leave out the automatic evaluation (BLEU, perplexity): the rounds view "
                             "then shows the run's own ROUGE-L and no perplexity bars")
    args = parser.parse_args(argv)
    tabs = args.tabs or (["Rate", "Results", "Playground"] if args.with_run else TABS[:6])
    unknown = [t for t in tabs if t not in TABS]
    if unknown:
        parser.error(f"unknown tab {unknown[0]!r}; choose from {', '.join(TABS)}")
    if args.steps < 1 or args.prompts < 2:
        parser.error("--steps must be at least 1 and --prompts at least 2")
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(args.workspace) if args.workspace else Path(tmp) / "workspace"
        if args.with_run:
            facts = make_round(workspace, steps=args.steps, prompts=args.prompts, auto=not args.no_auto)
            take(workspace, tabs, round_facts=facts)
            (SHOTS / "with-run.json").write_text(json.dumps(facts, indent=2) + "\n")
            print((SHOTS / "with-run.json").relative_to(ROOT))
        else:
            take(workspace, tabs)
    return 0


# -- the round ------------------------------------------------------------------------------------

def tool(workspace: Path, module: str, *args: str, capture: bool = False) -> str:
    """Run one of Tuneloop's headless commands on the workspace; its output goes to this terminal (or is
    returned); a failure stops the script with the command's own message."""
    where = ["--workspace", str(workspace)]
    cmd = [sys.executable, "-m", module, *(where + list(args) if module == "curation" else list(args) + where)]
    print("$", " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE if capture else None)
    if done.returncode:
        raise SystemExit(f"`{' '.join(cmd[1:])}` failed (exit {done.returncode}); the round stops here")
    return done.stdout or ""


def make_round(workspace: Path, *, steps: int, prompts: int, auto: bool = True) -> dict:
    """Demo data → split → round-1 run → evaluation (overlap 2) → two raters' votes → automatic metrics, each
    step skipped when the workspace already has it; the facts the README quotes."""
    from core.workspace import Workspace
    workspace.mkdir(parents=True, exist_ok=True)
    ws = Workspace.open(workspace)
    facts: dict = {"steps": steps, "prompts": prompts}
    from curation.data.versions import list_versions
    if not list_versions(ws):
        tool(workspace, "curation", "demo")
    split = next((v for v in list_versions(ws) if v.step == "split"), None)
    if split is None:
        # a small val split: on 2 loaded cores one evaluation of 60 val conversations took 12 minutes
        tool(workspace, "curation.splits", list_versions(ws)[0].name, "--stratify", "label", "--val", "0.02",
             "--test", "0.1")
        split = next(v for v in list_versions(ws) if v.step == "split")
    facts["split"] = f"{split.name} ({split.num_records} records)"

    from training.registry import list_runs
    run = next((r for r in list_runs(ws) if r.status == "finished"), None)
    if run is None:
        config = tool(workspace, "training", "config", "--preset", "Quick CPU demo", "--datasets", split.name,
                      capture=True)
        config_file = workspace / "round-1.yaml"
        # the val loss at the start and the end only (the preset also measures it half way)
        config_file.write_text(config.replace("max_steps: 24", f"max_steps: {steps}")
                               .replace("eval_steps: 12", f"eval_steps: {steps}")
                               .replace("save_steps: 12", f"save_steps: {steps}"))
        tool(workspace, "training", "run", str(config_file), "--name", "round 1")
        run = next(r for r in list_runs(ws) if r.status == "finished")
    facts["run"] = {"id": run.id, "name": run.name, "steps": run.metrics.get("last_step"),
                    **{k: run.metrics.get(k) for k in ("train_loss", "base_eval_loss", "final_eval_loss",
                                                       "rouge_l_base", "rouge_l_tuned", "rouge_samples")}}

    from evaluation.arena import list_evaluations
    evaluation = next(iter(list_evaluations(ws)), None)
    if evaluation is None:
        tool(workspace, "evaluation", "generate", "--run", str(run.id), "--split", split.name, "--overlap", "2",
             "--limit", str(prompts), "--name", "round 1 vs base")
        evaluation = list_evaluations(ws)[0]
    facts["evaluation"] = {"id": evaluation.id, "name": evaluation.name}

    facts["votes"] = vote(ws, evaluation.id, split.name, leave={"ben": 1})

    from evaluation.auto import latest_auto_evaluation
    if auto and latest_auto_evaluation(ws, run.id) is None:
        tool(workspace, "evaluation", "auto", "--run", str(run.id), "--split", split.name, "--limit", str(prompts))
    measured = latest_auto_evaluation(ws, run.id)
    if measured is not None:
        facts["auto"] = {side: {k: measured.figure(side, k) for k in ("rouge_l", "bleu", "perplexity_test")}
                         for side in ("base", "finetuned")}
    return facts


def references(ws, version: str) -> dict[str, str]:
    """Each test conversation's last user turn → the support team's answer to it."""
    from curation.data.versions import load_records
    out = {}
    for record in load_records(ws, version):
        if record.meta.get("split") == "test":
            users = [m["content"] for m in record.messages if m["role"] == "user"]
            answers = [m["content"] for m in record.messages if m["role"] == "assistant"]
            if users and answers:
                out.setdefault(users[-1], answers[-1])
    return out


def simulated_verdict(rater: str, a: str, b: str, reference: str) -> str:
    """A rater who prefers the answer closer to the reference: ana by ROUGE-L, ben by ROUGE-1 (so they
    mostly, not always, agree); a difference under 0.03 is a tie, both under 0.1 are both bad."""
    from rouge_score import rouge_scorer
    kind = "rougeL" if rater == "ana" else "rouge1"
    scorer = rouge_scorer.RougeScorer([kind], use_stemmer=True)
    sa, sb = (scorer.score(reference, text)[kind].fmeasure for text in (a, b))
    if max(sa, sb) < 0.1:
        return "both_bad"
    if abs(sa - sb) < 0.03:
        return "tie"
    return "A" if sa > sb else "B"


def vote(ws, evaluation_id: int, version: str, *, leave: dict[str, int]) -> dict[str, int]:
    """Both raters vote through the arena (next pair, vote, next pair …) until nothing is left to them or only
    ``leave[rater]`` pairs are; how many votes each cast in all."""
    from evaluation.arena import next_pair, rater_progress, record_vote
    answers = references(ws, version)
    cast = {}
    for rater in RATERS:
        while True:
            progress = rater_progress(ws, evaluation_id, rater)
            if progress.total - progress.done <= leave.get(rater, 0):
                break
            pair = next_pair(ws, evaluation_id, rater)
            if pair is None:
                break
            if pair.prompt not in answers:
                raise SystemExit(f"pair {pair.assignment_id}: its prompt is not a test prompt of {version}")
            record_vote(ws, pair.assignment_id, rater,
                        simulated_verdict(rater, pair.response_a, pair.response_b, answers[pair.prompt]))
        cast[rater] = rater_progress(ws, evaluation_id, rater).done
    return cast


# -- the pictures ---------------------------------------------------------------------------------

def take(workspace: Path, tabs: list[str], *, round_facts: dict | None = None) -> None:
    """Open each tab in headless Chromium and write docs/screenshots/<tab>.png; with a round, each of Rate,
    Results and Playground is first brought to the state worth showing."""
    from playwright.sync_api import expect, sync_playwright

    app = start_app(workspace)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)
            page.goto(app.url)
            for tab in tabs:
                page.get_by_role("tab", name=tab, exact=True).click()
                page.wait_for_timeout(2500)
                if round_facts is not None and tab == "Rate":
                    page.locator("#rate-rater textarea, #rate-rater input").first.fill("ben")
                    page.locator("#rate-start").click()
                    expect(page.locator("#rate-progress")).to_contain_text(" / ", timeout=120_000)
                    page.wait_for_timeout(1500)
                elif round_facts is not None and tab == "Results":
                    finish_votes(workspace, round_facts)
                    page.locator("#rounds-refresh").click()
                    page.wait_for_timeout(1000)
                    page.locator("#results-refresh").click()
                    expect(page.locator("#rounds-summary")).to_contain_text("run(s)", timeout=120_000)
                    page.wait_for_timeout(4000)
                elif round_facts is not None and tab == "Playground":
                    ask_test_question(page)
                target = SHOTS / f"{tab.lower()}.png"
                page.screenshot(path=str(target), full_page=True)
                print(target.relative_to(ROOT))
            browser.close()
    finally:
        app.stop()


def finish_votes(workspace: Path, facts: dict) -> None:
    """ben casts the vote left for the Rate picture (the pair the Rate tab showed him)."""
    from core.workspace import Workspace
    ws = Workspace.open(workspace)
    split = facts["split"].split()[0]
    facts["votes"] = vote(ws, facts["evaluation"]["id"], split, leave={})


def ask_test_question(page) -> None:
    """The first test example's question, asked of both sides, until both answers are done."""
    from playwright.sync_api import expect
    page.get_by_text("Start from a test example").click()
    page.get_by_label("Test example").click()
    page.get_by_role("option").first.click()
    expect(page.locator("#playground-status")).to_contain_text("Example loaded")
    page.get_by_role("button", name="Ask both").click()
    expect(page.locator("#playground-status")).to_contain_text("Done", timeout=600_000)
    page.wait_for_timeout(1000)


if __name__ == "__main__":
    raise SystemExit(main())
