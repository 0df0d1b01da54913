"""How long does the judge take to rate the rest of the test split, and with what kappa? A small run on the demo data.

    python benchmarks/judge_split.py [--inside 6] [--outside 6] [--max-new-tokens 40] [--judge default]
                                     [--threshold -1] [--workspace DIR]

1. a dataset version of single-turn demo tickets (no re-sent near-duplicates): ``--inside + --outside`` of them
   in the test split, the rest in train;
2. an evaluation as the Results tab prepares it (``evaluation.generate.prepare_evaluation``) of the base against
   the prompted base (the house system prompt and two train tickets as examples) on the first ``--inside`` test
   prompts, voted blind through the arena by a *simulated* expert (not a human judgement): the answer with the
   higher ROUGE-L against the support team's answer wins, within 0.02 a tie. Unlike ``benchmarks/judge.py`` it
   never says both bad, so the votes name arms and the judge's kappa is defined on a few prompts;
3. the judge reads the rated pairs (its calibration: kappa), then ``judge_test_split`` has both arms answer the
   ``--outside`` test prompts that are not in the evaluation and the judge reads each pair in both orders.
   ``--threshold``: the gate; the default judge's kappa is 0 on the demo data, so -1 lets it through to time it.
Prints the seconds to answer and to read (one run each, wall clock) and the judge's figures beside its kappa.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.workspace import Workspace  # noqa: E402


def expert_votes(ws, evaluation_id: int, references: dict[str, str]) -> dict[str, int]:
    """Vote every pair blind, as the module docstring says; returns the verdict counts."""
    from evaluation.arena import next_pair, record_vote
    from training.quality import rouge_l_scores
    counts = {"A": 0, "B": 0, "tie": 0}
    while (pair := next_pair(ws, evaluation_id, "simulated-expert")) is not None:
        prompt_id = ws.db.execute("select p.prompt_id from eval_assignments a join eval_pairs p on p.id=a.pair_id"
                                  " where a.id=?", (pair.assignment_id,)).fetchone()[0]
        a, b = rouge_l_scores([pair.response_a, pair.response_b], [references[prompt_id]] * 2)
        verdict = "tie" if abs(a - b) <= 0.02 else "A" if a > b else "B"
        record_vote(ws, pair.assignment_id, "simulated-expert", verdict)
        counts[verdict] += 1
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inside", type=int, default=6)
    p.add_argument("--outside", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--judge", default="default")
    p.add_argument("--threshold", type=float, default=-1.0)
    p.add_argument("--workspace")
    args = p.parse_args(argv)

    from curation.data.demo import SYSTEM, demo_records
    from curation.data.records import Record
    from curation.data.versions import create_version
    from evaluation.generate import parse_arm, prepare_evaluation, prompts_from_version, resolve_arms
    from evaluation.judge import calibrate, format_calibration, format_split, judge_evaluation, judge_test_split, \
        open_judge
    from training.inference import DecodingSettings

    ws = Workspace.open(args.workspace or Path(tempfile.mkdtemp()) / "workspace")
    records = [r for r in demo_records(400) if r.meta.get("source") != "email-resend" and len(r.messages) == 2]
    test = args.inside + args.outside
    chosen = [Record(r.id, r.messages, {**r.meta, "split": "test" if n < test else "train"})
              for n, r in enumerate(records[:test + 20])]
    version = create_version(ws, chosen, parent=None, step="split")
    items = prompts_from_version(ws, version.id)[:args.inside]
    base, arms = resolve_arms(ws, [parse_arm("base"), parse_arm("prompted:2", system_prompt=SYSTEM)], items=items,
                              version=version.id)
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens)
    eid = prepare_evaluation(ws, items, arms=arms, base_model=base, dataset_version=version.id, settings=settings,
                             guidelines="Prefer the answer that is correct, complete and follows Lumio's support "
                                        "policy, with concrete next steps.")
    votes = expert_votes(ws, eid, {r.id: r.messages[1]["content"] for r in chosen})
    print(f"evaluation {eid}: {len(items)} test prompts, arms {', '.join(a.name for a in arms)}; simulated expert: "
          + ", ".join(f"{k} {v}" for k, v in votes.items()), flush=True)

    judge = open_judge(ws, args.judge)
    judge_evaluation(ws, eid, judge)
    cal = calibrate(ws, eid, judge.name, threshold=args.threshold)
    print(format_calibration(cal), flush=True)
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def progress(done, total, what):
        phases[what.split(":", 1)[0]] = time.perf_counter() - started

    figures = judge_test_split(ws, eid, judge, threshold=args.threshold, limit=args.outside, progress=progress)
    total = time.perf_counter() - started
    answered = phases.get("answering", 0.0)
    print(f"\nrest of the test split: {figures.prompts} prompts outside the evaluation, {figures.pairs} pairs, "
          f"{2 * figures.pairs} readings; {total:.0f} s in all ({answered:.0f} s answering with both arms, "
          f"{total - answered:.0f} s reading), judge kappa {cal.overall.kappa:.3f}")
    print(format_split(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
