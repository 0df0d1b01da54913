"""The calibrated judge on the rest of the test split: the test prompts of the evaluation's dataset version that
are not in the evaluation, answered by its arms through the evaluation's own generation path and read by a real
judge (a tiny model made here) in both orders; refused below the threshold, resumable after a stop, figures
against hand-computed ones (Wilson from statsmodels, Bradley–Terry from ``evaluation.ratings``), the Results
tab's panel, the CLI and the report."""
from __future__ import annotations

import json
import math
import threading

import pytest

from core.errors import TuneloopError
from curation.data.records import Record
from curation.data.versions import create_version
from evaluation import judge as J
from evaluation.arena import EvalItem, create_evaluation, get_evaluation, next_pair, record_vote
from evaluation.generate import prepare_evaluation, prompts_from_version, resolve_adapter
from training.inference import DecodingSettings

QUESTIONS = ["Where is my order?", "How do I reset my password?", "Can I get a refund?", "Thank you for support",
             "The quick brown fox", "Refunds within 30 days?", "Is it open?", "Reset the order?"]
SETTINGS = DecodingSettings(max_new_tokens=4)
GUIDELINES = "Be right."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny base (also the judge) and a run folder holding a random LoRA adapter on it."""
    from tests.tiny_model import build_tiny_model, make_adapter
    root = tmp_path_factory.mktemp("split-models")
    base = build_tiny_model(root / "tiny")
    make_adapter(base, root / "run" / "adapter", seed=5)
    return base, root / "run"


def split_evaluation(ws, run_folder, *, inside: int = 3, questions: list[str] = QUESTIONS) -> int:
    """A version with the test prompts ``questions`` (8 unless told; and 2 train); an evaluation of the base against
    the run on the first ``inside`` of them; the expert votes A, B and tie on three pairs (a kappa is defined)."""
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": "ref"}],
                      {"split": "test", "label": ("orders", "billing")[i % 2]}) for i, q in enumerate(questions)]
    records += [Record(f"t{i}", [{"role": "user", "content": f"train {i}"}, {"role": "assistant", "content": "a"}],
                       {"split": "train"}) for i in range(2)]
    version = create_version(ws, records, parent=None, step="split")
    items = prompts_from_version(ws, version.id)[:inside]
    eid = prepare_evaluation(ws, items, models=resolve_adapter(ws, run_folder), dataset_version=version.id,
                             settings=SETTINGS, guidelines=GUIDELINES)
    for verdict in ("A", "B", "tie")[:inside]:
        pair = next_pair(ws, eid, "ana")
        record_vote(ws, pair.assignment_id, "ana", verdict)
    return eid


class CountedJudge(J.LocalJudge):
    """The tiny model as a judge, counting what it reads (the readings themselves are the model's)."""

    def __init__(self, ws, base):
        super().__init__(ws, str(base))
        self.reads = 0

    def read(self, conversation):
        self.reads += 1
        return super().read(conversation)


def test_below_the_threshold_nothing_outside_the_evaluation_is_answered_or_judged(ws, tiny):
    eid = split_evaluation(ws, tiny[1])
    judge = J.open_judge(ws, str(tiny[0]))
    with pytest.raises(TuneloopError, match="kappa undefined on 0 rated pairs, below the threshold 0.4"):
        J.judge_test_split(ws, eid, judge, threshold=0.4)           # not calibrated yet
    J.judge_evaluation(ws, eid, judge)
    kappa = J.calibrate(ws, eid, judge.name).overall.kappa
    assert kappa is not None and kappa <= 1
    with pytest.raises(TuneloopError, match=rf"kappa {kappa:.2f} on 3 rated pairs, below the threshold 1.5; it may "
                                            rf"not rate the rest of the test split"):
        J.judge_test_split(ws, eid, judge, threshold=1.5)
    assert ws.db.execute("select count(*) from judge_split_pairs").fetchone()[0] == 0
    assert ws.db.execute("select count(*) from judge_split_readings").fetchone()[0] == 0
    figures = J.split_figures(ws, eid, judge.name, threshold=1.5)
    assert figures.pairs == 0 and figures.outside == 5 and not figures.passes
    assert "has not rated the rest of the test split yet (5 test prompts are outside" in J.format_split(figures)


def test_the_arms_answer_prompts_outside_the_evaluation_and_the_judge_reads_both_orders_resuming_after_a_stop(
        ws, tiny):
    from tests.tiny_model import plain_replies
    base, run_folder = tiny
    eid = split_evaluation(ws, run_folder)
    judge = CountedJudge(ws, base)
    J.judge_evaluation(ws, eid, judge)
    calibration_reads = judge.reads
    inside = {r[0] for r in ws.db.execute("select prompt_id from eval_pairs where evaluation_id=?", (eid,))}
    outside = [item.prompt_id for item in J.outside_prompts(ws, eid)]
    assert outside == ["r3", "r4", "r5", "r6", "r7"] and not inside & set(outside)

    stop, said = threading.Event(), []

    def progress(done, total, what):
        said.append(what)
        if what.startswith("judging:") and done == 1:
            stop.set()                          # Cancel pressed while the first reading was under way

    with pytest.raises(J.JudgeStopped, match="stopped after 1 of 4 readings"):
        J.judge_test_split(ws, eid, judge, threshold=-1, limit=2, progress=progress, cancel=stop)
    assert any(w.startswith("answering:") for w in said)
    assert judge.reads - calibration_reads == 1
    first_reading = ws.db.execute("select id, split_pair_id, order_shown from judge_split_readings").fetchall()
    assert len(first_reading) == 1

    said.clear()
    figures = J.judge_test_split(ws, eid, judge, threshold=-1, limit=2, progress=lambda d, t, w: said.append(w))
    assert judge.reads - calibration_reads == 4                 # the stored reading was not read again
    assert not any(w.startswith("answering:") for w in said)    # nor were the answers generated again
    assert said[0] == "judging: 1 of 4 readings already stored"
    assert [tuple(r) for r in ws.db.execute("select id, split_pair_id, order_shown from judge_split_readings"
                                            " order by id limit 1")] == [tuple(first_reading[0])]

    pairs = ws.db.execute("select * from judge_split_pairs order by id").fetchall()
    assert [p["prompt_id"] for p in pairs] == ["r3", "r4"]
    assert {(p["first_arm"], p["second_arm"]) for p in pairs} == {("base", "adapter run")}
    # the evaluation's own generation path and decoding settings (4 new tokens), base and adapter
    conversations = [json.loads(p["messages"]) for p in pairs]
    assert [p["first_response"] for p in pairs] == plain_replies(base, None, conversations, SETTINGS)
    assert [p["second_response"] for p in pairs] == plain_replies(base, run_folder / "adapter", conversations,
                                                                  SETTINGS)
    readings = ws.db.execute("select split_pair_id, order_shown, arm_a, arm_b, verdict, score from "
                             "judge_split_readings order by split_pair_id, order_shown").fetchall()
    assert [(r["order_shown"], r["arm_a"], r["arm_b"]) for r in readings] == [
        ("first", "base", "adapter run"), ("swapped", "adapter run", "base")] * 2
    assert all(r["verdict"] in J.CHOICES and 1 / 3 <= r["score"] <= 1 for r in readings)
    # the readings are the judge's, never votes, never calibration
    assert get_evaluation(ws, eid).num_votes == 3 and get_evaluation(ws, eid).num_pairs == 3
    assert ws.db.execute("select count(*) from judge_verdicts").fetchone()[0] == calibration_reads
    assert J.calibrate(ws, eid, judge.name).pairs == 3

    # the figures, by hand from the stored readings
    by_pair = {}
    for r in readings:
        by_pair.setdefault(r["split_pair_id"], {})[r["order_shown"]] = {"A": r["arm_a"], "B": r["arm_b"]}.get(
            r["verdict"], r["verdict"])
    winners = [o["first"] if o["first"] == o["swapped"] and o["first"] not in ("tie", "unreadable") else None
               for o in by_pair.values()]
    flipped = sum(o["first"] != o["swapped"] and "tie" not in o.values() and "unreadable" not in o.values()
                  for o in by_pair.values())
    [tally] = figures.tallies
    assert (tally.first_wins, tally.second_wins) == (winners.count("base"), winners.count("adapter run"))
    assert tally.ties == 2 - tally.first_wins - tally.second_wins - tally.unreadable and tally.flipped == flipped
    assert figures.prompts == 2 and figures.pairs == 2 and figures.outside == 5 and figures.few_prompts
    assert figures.kappa == J.calibrate(ws, eid, judge.name).overall.kappa and figures.ratings is None
    text = J.format_split(figures)
    assert text.startswith(f"The judge's verdicts, not votes (judge {base}; calibration kappa")
    assert "Caveat: fewer than 10 prompts" in text

    more = J.judge_test_split(ws, eid, judge, threshold=-1)     # no limit: the rest of them
    assert more.prompts == more.outside == 5 and judge.reads - calibration_reads == 10


def test_an_evaluation_without_a_dataset_version_has_no_rest_of_the_split(ws, tiny):
    items = [EvalItem("p0", [{"role": "user", "content": "hi"}], base_response="a", finetuned_response="b")]
    eid = create_evaluation(ws, "typed", items, base_model="tiny")
    with pytest.raises(TuneloopError, match="typed, uploaded or served prompts, not from a dataset version"):
        J.outside_prompts(ws, eid)
    assert J.split_figures(ws, eid, "x").outside == 0


def three_arm_evaluation(ws) -> int:
    """Three arms on two of six test prompts of a version (answers typed: the figures do not need a model)."""
    from evaluation.arena import Arm
    records = [Record(f"r{i}", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
                      {"split": "test"}) for i in range(6)]
    version = create_version(ws, records, parent=None, step="split")
    arms = [Arm("base", "base"), Arm("prompted base", "prompted", settings={"system_prompt": "Be brief."}),
            Arm("adapter x", "run", settings={"adapter": "/nowhere"})]
    items = [EvalItem(f"r{i}", [{"role": "user", "content": f"q{i}"}],
                      responses={"base": "b", "prompted base": "p", "adapter x": "x"}) for i in range(2)]
    return create_evaluation(ws, "three", items, arms=arms, base_model="tiny", dataset_version=version.id)


def store_readings(ws, eid, judge, verdicts):
    """Readings as a judge would store them: (prompt, first arm, second arm, verdict first, verdict swapped)."""
    with ws.transaction() as db:
        for prompt, first, second, v1, v2 in verdicts:
            db.execute("insert or ignore into judge_split_pairs (evaluation_id, prompt_id, messages, first_arm,"
                       " second_arm, first_response, second_response) values (?,?,'[]',?,?,'1','2')",
                       (eid, prompt, first, second))
            pid = db.execute("select id from judge_split_pairs where evaluation_id=? and prompt_id=? and"
                             " first_arm=? and second_arm=?", (eid, prompt, first, second)).fetchone()[0]
            for order, a, b, v in (("first", first, second, v1), ("swapped", second, first, v2)):
                db.execute("insert into judge_split_readings (evaluation_id, split_pair_id, judge, order_shown,"
                           " arm_a, arm_b, verdict) values (?,?,?,?,?,?,?)", (eid, pid, judge, order, a, b, v))


def test_the_figures_match_hand_computed_ones_per_pair_and_bradley_terry_across_arms(ws):
    from statsmodels.stats.proportion import proportion_confint

    from evaluation.ratings import Comparison, bradley_terry
    eid = three_arm_evaluation(ws)
    B, P, X = "base", "prompted base", "adapter x"
    store_readings(ws, eid, "j", [
        # base vs adapter x: x wins r2, r3, r4 (both orders name it), base wins r5; 3 of 4 decisive
        ("r2", B, X, "B", "A"), ("r3", B, X, "B", "A"), ("r4", B, X, "B", "A"), ("r5", B, X, "A", "B"),
        # base vs prompted: a flip on r2 (both orders said A: a tie), one-sided on r3 (a tie), unreadable on r4
        ("r2", B, P, "A", "A"), ("r3", B, P, "A", "tie"), ("r4", B, P, "unreadable", "B"),
        # prompted vs adapter x: x wins r2, prompted wins r3, a tie on r4
        ("r2", P, X, "B", "A"), ("r3", P, X, "A", "B"), ("r4", P, X, "tie", "tie"),
    ])
    figures = J.split_figures(ws, eid, "j", resamples=200)
    tallies = {(t.first, t.second): t for t in figures.tallies}
    bx = tallies[(B, X)]
    assert (bx.prompts, bx.first_wins, bx.second_wins, bx.ties, bx.flipped, bx.unreadable) == (4, 1, 3, 0, 0, 0)
    low, high = proportion_confint(3, 4, alpha=0.05, method="wilson")
    assert bx.win_rate == 0.75 and bx.wilson_low == pytest.approx(low) and bx.wilson_high == pytest.approx(high)
    bp = tallies[(B, P)]
    assert (bp.first_wins, bp.second_wins, bp.ties, bp.flipped, bp.one_sided, bp.unreadable) == (0, 0, 2, 1, 1, 1)
    assert bp.win_rate is None and bp.wilson_low is None
    px = tallies[(P, X)]
    assert (px.first_wins, px.second_wins, px.ties) == (1, 1, 1) and px.win_rate == 0.5
    assert figures.prompts == 4 and figures.pairs == 10 and figures.outside == 4
    # Bradley–Terry over the readable verdicts, ties (flipped and one-sided included) half a win each way
    expected = [Comparison(p, "j", B, X, "right") for p in ("r2", "r3", "r4")] + [Comparison("r5", "j", B, X, "left")]
    expected += [Comparison("r2", "j", B, P, "tie"), Comparison("r3", "j", B, P, "tie")]
    expected += [Comparison("r2", "j", P, X, "right"), Comparison("r3", "j", P, X, "left"),
                 Comparison("r4", "j", P, X, "tie")]
    fitted = {r["arm"]: r["rating"] for r in figures.ratings}
    assert fitted == pytest.approx(bradley_terry(expected, reference=B), abs=1e-4)
    assert fitted[B] == 0 and fitted[X] > fitted[P] and all(r["low"] is not None for r in figures.ratings)
    assert "Bradley–Terry over the judge's 9 verdicts from 4 prompts, base at 0" in figures.ratings_note
    text = J.format_split(figures)
    assert "- base vs adapter x on 4 prompts: base 1, adapter x 3, tie 0" in text
    assert f"adapter x won 75% of the decisive verdicts [{100 * low:.0f}%, {100 * high:.0f}%] (Wilson 95%)" in text
    assert "Bradley–Terry ratings from the judge's verdicts: " in text and "Caveat: fewer than 10 prompts" in text
    assert J.split_rows(figures)[0][:8] == [B, P, 3, 0, 0, 2, 1, 1]         # r4 counts, unreadable


def test_a_cycle_of_wins_rates_every_arm_equal(ws):
    eid = three_arm_evaluation(ws)
    B, P, X = "base", "prompted base", "adapter x"
    store_readings(ws, eid, "j", [("r2", B, P, "A", "B"), ("r2", P, X, "A", "B"), ("r2", B, X, "B", "A")])
    ratings = {r["arm"]: r["rating"] for r in J.split_figures(ws, eid, "j", resamples=10).ratings}
    assert all(math.isclose(v, 0, abs_tol=1e-4) for v in ratings.values())


def test_the_results_tab_judges_the_rest_of_the_split_only_above_the_threshold(ws, tiny):
    import gradio as gr

    from evaluation import judge_ui, ui
    from tests.tab_page import page
    eid = split_evaluation(ws, tiny[1])
    with gr.Blocks(), gr.Tabs():
        w = ui.build_results_tab(ws).judge
    base, quiet = str(tiny[0]), (lambda *a, **k: None)
    shown = judge_ui.show_judge(ws, w, page(w, evaluation=eid, judge=base))
    assert shown[w.split]["interactive"] is False
    assert "Judging the rest of the test split is off" in shown[w.split_summary]
    assert "has undefined on 0 rated pairs" in shown[w.split_summary]
    judge_ui.calibrate_clicked(ws, w, page(w, evaluation=eid, judge=base, threshold=-1), None, progress=quiet)
    refused = judge_ui.split_clicked(ws, w, page(w, evaluation=eid, judge=base, threshold=1, limit=1), None,
                                     progress=quiet)
    assert "below the threshold 1; it may not rate the rest of the test split" in refused[w.split_summary]
    assert refused[w.split]["interactive"] is False
    bad = judge_ui.split_clicked(ws, w, page(w, evaluation=eid, judge=base, threshold=-1, limit=0), None,
                                 progress=quiet)
    assert "the limit is a whole number of prompts, at least 1" in bad[w.split_summary]
    seen = []
    done = judge_ui.split_clicked(ws, w, page(w, evaluation=eid, judge=base, threshold=-1, limit=1), None,
                                  progress=lambda fraction, desc: seen.append((fraction, desc)))
    assert seen[-1] == (1.0, "judging: 2 of 2 readings (prompt r3, swapped order)")
    assert "The judge&#x27;s verdicts, not votes" in done[w.split_summary]
    assert "on 1 test prompts outside the evaluation (5 in all)" in done[w.split_summary]
    assert done[w.split_table][0][:3] == ["base", "adapter run", 1] and done[w.split]["interactive"] is True
    assert judge_ui.cancel_clicked(ws, w, None)[w.split_summary] == "Nothing is being judged."

    from ui.api import evaluation_report
    [judged] = evaluation_report(ws, str(eid), judge_threshold=-1)["judges"]
    assert judged["rest_of_split"]["pairs"] == 1 and judged["rest_of_split"]["few_prompts"] is True
    assert judged["rest_of_split"]["kappa"] == judged["calibration"]["overall"]["kappa"]


def test_the_cli_judges_the_rest_of_the_split(ws, tiny, capsys):
    from evaluation.cli import main
    eid = split_evaluation(ws, tiny[1])
    common = ["judge", str(eid), "--workspace", str(ws.root), "--judge", str(tiny[0])]
    assert main([*common, "--limit", "2"]) == 2
    assert "--limit and --base go with --rest-of-split" in capsys.readouterr().err
    assert main([*common, "--rest-of-split", "--threshold", "1.5"]) == 1
    captured = capsys.readouterr()
    assert "on 3 rated pairs is below the threshold 1.5" in captured.err
    assert ws.db.execute("select count(*) from judge_split_readings").fetchone()[0] == 0
    assert main([*common, "--rest-of-split", "--limit", "2", "--threshold", "-1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"]["prompts"] == 2 and out["split"]["outside"] == 5 and out["split"]["few_prompts"]
    assert out["split"]["tallies"][0]["first"] == "base" and out["split"]["kappa"] == out["calibration"]["overall"][
        "kappa"]
    assert main([*common, "--rest-of-split", "--threshold", "-1"]) == 0
    text = capsys.readouterr().out
    assert "The judge's verdicts, not votes" in text and "on 5 test prompts outside the evaluation (5 in all)" in text
    assert ws.db.execute("select count(*) from judge_split_readings").fetchone()[0] == 10


def test_ctrl_c_on_the_cli_keeps_the_readings_so_far_and_the_same_command_resumes(ws, tiny, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from evaluation.cli import main
    # 20 prompts outside the evaluation, 40 readings: the judge is still reading when the signal comes
    eid = split_evaluation(ws, tiny[1], questions=[f"{q} ({n})" for n in range(4) for q in QUESTIONS[:7]][:23])
    command = ["judge", str(eid), "--workspace", str(ws.root), "--judge", str(tiny[0]), "--rest-of-split",
               "--threshold", "-1"]
    cli = subprocess.Popen([sys.executable, "-m", "evaluation", *command], cwd=Path(__file__).resolve().parent.parent,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           # SIGINT as a terminal's process has it: an ignored signal stays ignored across exec,
                           # and in the full suite something in the test process leaves SIGINT ignored
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    read = lambda: ws.db.execute("select id, split_pair_id, order_shown from judge_split_readings"  # noqa: E731
                                 " order by id").fetchall()
    deadline = time.monotonic() + 300
    while len(read()) < 2:
        assert cli.poll() is None and time.monotonic() < deadline, cli.communicate()
        time.sleep(0.02)
    os.kill(cli.pid, signal.SIGINT)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 130, (out, err)
    assert err.rstrip().endswith("stopped; the answers and verdicts read so far are kept, and the same command "
                                 "continues from there") and "Traceback" not in err
    kept = [tuple(r) for r in read()]
    pairs = [tuple(r) for r in ws.db.execute("select id, prompt_id from judge_split_pairs order by id")]
    assert len(pairs) == 20 and 2 <= len(kept) < 40, len(kept)          # every answer was stored before judging

    assert main(command) == 0
    assert f"{len(kept)} of 40 readings already stored" in capsys.readouterr().err
    readings = [tuple(r) for r in read()]
    assert readings[:len(kept)] == kept and len(readings) == 40          # nothing read twice, the rest read once
    assert len({(pair, order) for _, pair, order in readings}) == 40
    assert [tuple(r) for r in ws.db.execute("select id, prompt_id from judge_split_pairs order by id")] == pairs


@pytest.mark.slow
def test_the_default_model_answers_and_judges_the_rest_of_a_small_split(ws):
    """End to end with the default model (SmolLM2-135M): the base and the prompted base answer one test prompt
    outside a two-prompt evaluation, and the default judge reads the pair in both orders."""
    from evaluation.generate import parse_arm, resolve_arms
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": "ref"}],
                      {"split": "test"}) for i, q in enumerate(QUESTIONS[:4])]
    version = create_version(ws, records, parent=None, step="split")
    items = prompts_from_version(ws, version.id)[:2]
    base, arms = resolve_arms(ws, [parse_arm("base"), parse_arm("prompted:0", system_prompt="Answer in one line.")],
                              items=items, version=version.id)
    eid = prepare_evaluation(ws, items, arms=arms, base_model=base, dataset_version=version.id,
                             settings=DecodingSettings(max_new_tokens=6), guidelines=GUIDELINES)
    for verdict in ("A", "B"):          # votes for both sides: the kappa is defined whatever the judge says
        pair = next_pair(ws, eid, "ana")
        record_vote(ws, pair.assignment_id, "ana", verdict)
    judge = J.open_judge(ws, "default")
    J.judge_evaluation(ws, eid, judge)
    figures = J.judge_test_split(ws, eid, judge, threshold=-1, limit=1)
    [stored] = ws.db.execute("select * from judge_split_pairs").fetchall()
    assert stored["prompt_id"] == "r2" and stored["first_arm"] == "base" and stored["second_arm"] == arms[1].name
    assert stored["first_response"] and stored["second_response"]
    readings = ws.db.execute("select order_shown, verdict from judge_split_readings").fetchall()
    assert sorted(r["order_shown"] for r in readings) == ["first", "swapped"]
    assert all(r["verdict"] in J.CHOICES for r in readings)
    assert figures.prompts == 1 and figures.outside == 2 and figures.judge == "default"
