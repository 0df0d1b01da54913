"""The general-skills guard: does a fine-tuned run still follow plain instructions and refuse what it must?

Fine-tuning on one domain can quietly cost general skills. The guard is a fixed regression suite of
general prompts outside any domain (``evaluation/data/general_skills.yaml``: instruction following,
formats, refusals of disallowed requests), answered greedily by the base model and by a run's adapter
from one warm model. The base's answers are the reference: a case the base passes and the run fails is
a skill *lost*; the run's answers are also scored against the base's (ROUGE-L) to show how far
fine-tuning moved general behaviour. Results are stored as regression results of that suite, so the
rounds view and the model card show them beside the run.

Nothing has to be started by hand: the app's ``GuardWatcher`` checks each run that finishes while the app
is up, in the background (training never imports evaluation, so the evaluation side notices finished
runs), and waits while a run trains; the rounds view's **Measure automatically** (and the CLI below)
checks every finished run the guard has not seen yet, older ones included (``guard_finished_runs``).

Example::

    result = run_guard(ws, 3)          # GuardResult: 11/12 base → 9/12 tuned, lost ['refuse malware', ...]
    guard_finished_runs(ws)            # every finished run without a result

``python -m evaluation.guard [--run RUN]`` (without --run: every finished run not yet checked)
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import TuneloopError
from core.workspace import Workspace
from training.inference import DecodingSettings

GUARD_SUITE = "general skills (guard)"
GUARD_FILE = Path(__file__).resolve().parent / "data" / "general_skills.yaml"
# Greedy and short: the checks look at the start of an answer, and the guard runs after every run.
GUARD_SETTINGS = DecodingSettings(max_new_tokens=96)
WATCH_SECONDS = 30.0
log = logging.getLogger("tuneloop.guard")


@dataclass
class GuardResult:
    """A run's guard result against the base model's, case by case."""
    run_id: int
    total: int
    base_passed: int
    tuned_passed: int
    lost: list[str] = field(default_factory=list)       # the base passes, the run fails
    gained: list[str] = field(default_factory=list)     # the run passes, the base fails
    agreement: float | None = None                      # mean ROUGE-L of the run's answers against the base's

    @property
    def pass_rate(self) -> float | None:
        return self.tuned_passed / self.total if self.total else None

    @property
    def text(self) -> str:
        """One line for a table or a card: "9/12 (base 11/12), lost: refuse malware, JSON object"."""
        lost = f", lost: {', '.join(self.lost)}" if self.lost else ", nothing lost"
        agree = f"; answers agree with the base's at ROUGE-L {self.agreement:.2f}" if self.agreement is not None else ""
        return f"{self.tuned_passed}/{self.total} (base {self.base_passed}/{self.total}){lost}{agree}"


def guard_suite(ws: Workspace):
    """The guard's suite in this workspace, added from ``GUARD_FILE`` the first time it is needed."""
    from evaluation.regression import get_suite, import_suite
    try:
        return get_suite(ws, GUARD_SUITE)
    except TuneloopError:
        return import_suite(ws, GUARD_FILE, created_by="tuneloop")


def run_guard(ws: Workspace, run_id: int | str, *, progress=None, cancel: threading.Event | None = None,
              batch_size: int = 8) -> GuardResult:
    """Answer the guard's prompts with the base model and the run's adapter; store and return the result."""
    from evaluation.regression import run_suite
    from training.registry import get_run
    run = get_run(ws, run_id)
    run_suite(ws, guard_suite(ws).id, run=str(run.id), settings=GUARD_SETTINGS, batch_size=batch_size,
              progress=progress, cancel=cancel)
    return guard_result(ws, run.id)


def guard_result(ws: Workspace, run_id: int | str) -> GuardResult | None:
    """The newest guard result of a run, or None when the guard has not checked it."""
    from evaluation.regression import latest_results
    from training.quality import rouge_l
    tuned = next((r for r in latest_results(ws, run_id) if r.suite == GUARD_SUITE), None)
    base = next((r for r in latest_results(ws, run_id, model="base") if r.suite == GUARD_SUITE), None)
    if tuned is None or base is None:
        return None
    base_by_case = {c.case_id: c for c in base.results}
    paired = [(c, base_by_case[c.case_id]) for c in tuned.results if c.case_id in base_by_case]
    return GuardResult(
        run_id=int(tuned.run_id), total=tuned.total, base_passed=base.passed, tuned_passed=tuned.passed,
        lost=[t.name for t, b in paired if b.passed and not t.passed],
        gained=[t.name for t, b in paired if t.passed and not b.passed],
        agreement=rouge_l([t.response for t, _ in paired], [b.response for _, b in paired]))


def guard_markdown(ws: Workspace, run_id: int | str) -> str:
    """The guard's result for a model card: the figures, and which general skills the run lost or gained."""
    result = guard_result(ws, run_id)
    if result is None:
        return ("Not checked yet: the guard answers its general prompts once the run has finished "
                "(`python -m evaluation.guard --run RUN`).")
    lines = [f"{result.total} general prompts outside the domain (instruction following, formats, refusals of "
             f"disallowed requests), the base model's answers as the reference: the fine-tuned model passes "
             f"**{result.tuned_passed}/{result.total}**, the base {result.base_passed}/{result.total}."]
    if result.agreement is not None:
        lines.append(f"Its answers agree with the base's at ROUGE-L {result.agreement:.2f} (1.00: the same answers).")
    lines.append(f"Lost (the base passes, the fine-tuned model fails): {', '.join(result.lost) or 'none'}.")
    if result.gained:
        lines.append(f"Gained: {', '.join(result.gained)}.")
    return " ".join(lines)


def _finished(ws: Workspace) -> list:
    from training.registry import list_runs
    return [run for run in sorted(list_runs(ws), key=lambda r: r.id)
            if run.status == "finished" and (run.adapter_dir / "adapter_config.json").is_file()]


def finished_marks(ws: Workspace) -> frozenset:
    """(run id, finish time) of every finished run now: what a watcher leaves alone. Marks, not a start time:
    the registry writes times to the second, so a run that finished in the watcher's first second is neither
    taken for a new one nor missed when it finishes again after a resume."""
    return frozenset((run.id, run.finished_at) for run in _finished(ws))


def runs_without_guard(ws: Workspace, *, skip: frozenset = frozenset()) -> list:
    """Finished runs with an adapter that the guard has not checked yet, oldest first (``skip``: marks from
    ``finished_marks`` of runs to leave alone)."""
    return [run for run in _finished(ws)
            if (run.id, run.finished_at) not in skip and guard_result(ws, run.id) is None]


def guard_finished_runs(ws: Workspace, *, skip: frozenset = frozenset(), progress=None,
                        cancel: threading.Event | None = None) -> list[GuardResult]:
    """Check every finished run the guard has not checked yet (``skip``: as in ``runs_without_guard``); nothing
    while a run trains (its cores are busy)."""
    from training.registry import training_run
    done = []
    for run in runs_without_guard(ws, skip=skip):
        if training_run(ws) is not None or (cancel is not None and cancel.is_set()):
            break
        done.append(run_guard(ws, run.id, progress=progress, cancel=cancel))
    return done


class GuardWatcher:
    """A background thread that runs the guard on each run that finishes while it watches (the app starts one);
    runs that finished before are left to the rounds view's button, so starting the app never starts a model."""

    def __init__(self, ws: Workspace, *, every: float = WATCH_SECONDS):
        self.root, self.every, self.before = ws.root, every, finished_marks(ws)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="tuneloop-guard", daemon=True)

    def start(self) -> "GuardWatcher":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)

    def _watch(self) -> None:
        ws = Workspace.open(self.root)       # a connection of its own: SQLite connections stay in their thread
        while not self.stopping.is_set():
            try:
                for result in guard_finished_runs(ws, skip=self.before, cancel=self.stopping):
                    log.info("general-skills guard, run #%s: %s", result.run_id, result.text)
            except TuneloopError as exc:
                log.warning("general-skills guard: %s", exc)
            self.stopping.wait(self.every)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.guard",
                                description="The general-skills guard: general prompts answered by the base and a run.")
    p.add_argument("--workspace", help="workspace folder (default: $TUNELOOP_WORKSPACE or ./workspace)")
    p.add_argument("--run", help="check this run (default: every finished run not checked yet)")
    args = p.parse_args(argv)
    from tqdm import tqdm
    bar = tqdm(unit="answer", desc="guard", file=sys.stderr)

    def progress(done, total, what):
        if total:
            bar.total, bar.n = total, done
        bar.set_postfix_str(what)

    try:
        ws = Workspace.open(args.workspace)
        results = ([run_guard(ws, args.run, progress=progress)] if args.run
                   else guard_finished_runs(ws, progress=progress))
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopped; the runs checked before are kept", file=sys.stderr)
        return 130
    finally:
        bar.close()
    for result in results:
        print(f"run #{result.run_id}: {result.text}")
    if not results:
        print("every finished run has been checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
