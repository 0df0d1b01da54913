"""The automatic judge: blind, side-swapped readings stored apart from the votes, its agreement with the experts
(Cohen's kappa and percent agreement against a worked example and scikit-learn), the threshold gate for the rest
of the test split, a real default-model judge, and an endpoint judge against tuneloop's own server."""
from __future__ import annotations

import json

import pytest

from core.errors import TuneloopError
from evaluation import judge as J
from evaluation.arena import (EvalItem, create_evaluation, evaluation_arms, evaluation_votes, get_evaluation, next_pair,
                              record_vote)

GOOD = "Refunds are possible within 30 days; open Orders and press Refund."
BAD = "I cannot help with that."


def small_evaluation(ws, n=6, *, rated=4, guidelines="Prefer the answer a customer can act on.") -> int:
    """``n`` prompts, the fine-tuned answer the good one on even prompts, the base's on odd ones; an expert
    ("ana") votes for the good answer on the first ``rated`` pairs she is given."""
    items = [EvalItem(f"p{i}", [{"role": "user", "content": f"Can I get a refund for order {100 + i}?"}],
                      base_response=BAD if i % 2 == 0 else GOOD, finetuned_response=GOOD if i % 2 == 0 else BAD,
                      label=("billing", "orders")[i % 2]) for i in range(n)]
    eid = create_evaluation(ws, "refunds", items, base_model="SmolLM2", guidelines=guidelines)
    for _ in range(rated):
        pair = next_pair(ws, eid, "ana")
        record_vote(ws, pair.assignment_id, "ana", "A" if pair.response_a == GOOD else "B")
    return eid


def answers_in(prompt: str) -> tuple[str, str]:
    """Answer A and answer B as the judge's prompt shows them."""
    a = prompt.split("Answer A:\n", 1)[1].split("\n\nAnswer B:\n", 1)
    return a[0], a[1].split("\n\nWhich answer", 1)[0]


class ReadingJudge:
    """A judge that prefers the answer that is the good one (it reads the prompt as a model would)."""
    name = "reader"

    def __init__(self):
        self.prompts: list[str] = []

    def read(self, conversation):
        text = conversation[-1]["content"]
        self.prompts.append(text)
        a, b = answers_in(text)
        return J.Reading("A" if a == GOOD else "B" if b == GOOD else "tie", 0.9)


class LeftJudge:
    """A judge that always says A: it follows the side, not the answer."""
    name = "left"

    def read(self, conversation):
        return J.Reading("A", 0.6)


def test_kappa_and_agreement_match_a_worked_example_and_sklearn():
    from sklearn.metrics import cohen_kappa_score
    # experts (rows) x judge (columns), outcomes first / second / tie:
    #   first  [4, 1, 1]  = 6     observed agreement (4 + 3 + 2) / 12 = 0.75
    #   second [0, 3, 1]  = 4     chance (6*4 + 4*4 + 2*4) / 12^2 = 48/144 = 1/3
    #   tie    [0, 0, 2]  = 2     kappa (0.75 - 1/3) / (1 - 1/3) = 0.625
    cells = {("first", "first"): 4, ("first", "second"): 1, ("first", "tie"): 1, ("second", "second"): 3,
             ("second", "tie"): 1, ("tie", "tie"): 2}
    items = [(f"p{n}", e, j) for n, (e, j) in enumerate(pair for pair, k in cells.items() for _ in range(k))]
    figures = J.agreement_figures(items)
    assert figures.votes == 12 and figures.prompts == 12
    assert figures.agreement == pytest.approx(0.75) and figures.kappa == pytest.approx(0.625)
    assert figures.kappa == pytest.approx(cohen_kappa_score([e for _, e, _ in items], [j for _, _, j in items]))
    assert figures.agreement_low <= 0.75 <= figures.agreement_high and 0 <= figures.agreement_low
    assert -1 <= figures.kappa_low <= 0.625 <= figures.kappa_high <= 1
    # the bootstrap resamples prompts: 12 votes on one prompt have no interval
    one_prompt = J.agreement_figures([("p", e, j) for _, e, j in items])
    assert one_prompt.kappa == pytest.approx(0.625) and one_prompt.kappa_low is None and one_prompt.few_prompts
    assert J.cohen_kappa([[3, 0, 0], [0, 0, 0], [0, 0, 0]]) is None     # all one outcome: chance agreement is 1


def test_the_orders_combine_and_a_verdict_that_flips_with_the_sides_is_a_tie():
    assert J.combine_readings(("base", "finetuned", "B"), ("finetuned", "base", "A")) == ("finetuned", "agreed")
    assert J.combine_readings(("base", "finetuned", "tie"), ("finetuned", "base", "tie")) == (None, "agreed")
    assert J.combine_readings(("base", "finetuned", "A"), ("finetuned", "base", "A")) == (None, "flipped")
    assert J.combine_readings(("base", "finetuned", "B"), ("finetuned", "base", "tie")) == (None, "one_sided")
    assert J.combine_readings(("base", "finetuned", "B"), ("finetuned", "base", "unreadable")) == (None, "unreadable")


def test_the_judge_reads_every_rated_pair_blind_in_both_orders_and_agrees_as_computed(ws):
    eid = small_evaluation(ws)
    reader = ReadingJudge()
    assert J.judge_evaluation(ws, eid, reader) == 8              # 4 rated pairs, two orders each
    assert J.judge_evaluation(ws, eid, reader) == 0              # stored readings are not read again
    rows = ws.db.execute("select pair_id, order_shown, arm_a, arm_b, verdict from judge_verdicts").fetchall()
    arms = [arm.name for arm in evaluation_arms(ws, eid)]
    assert sorted({(r["order_shown"], r["arm_a"], r["arm_b"]) for r in rows}) == [("first", *arms),
                                                                                  ("swapped", *arms[::-1])]
    for prompt in reader.prompts:
        assert "Prefer the answer a customer can act on." in prompt and "Can I get a refund" in prompt
        assert not any(name.lower() in prompt.lower() for name in [*arms, "SmolLM2"])
    assert {answers_in(p) for p in reader.prompts} == {(GOOD, BAD), (BAD, GOOD)}
    cal = J.calibrate(ws, eid, "reader")
    assert cal.pairs == 4 and cal.how["agreed"] == 4 and cal.overall.agreement == 1.0
    assert cal.overall.kappa == pytest.approx(1.0) and cal.passes and cal.overall.few_prompts

    J.judge_evaluation(ws, eid, LeftJudge())
    left = J.calibrate(ws, eid, "left")
    assert left.how == {"agreed": 0, "one_sided": 0, "flipped": 4, "unreadable": 0}
    assert left.overall.agreement == 0.0 and left.overall.kappa == pytest.approx(0.0) and not left.passes
    assert [row[:2] for row in left.confusion] == [[0, 0]] * 3 and sum(row[2] for row in left.confusion) == 4
    text = J.format_calibration(left)
    assert "4 flipped with the sides" in text and "below the threshold 0.4" in text
    assert "kappa 0.00 on 24 demo pairs" in text


def test_judge_verdicts_are_never_counted_as_votes(ws):
    from evaluation.feedback import collect_feedback
    from evaluation.stats import summarize, votes_from_rows
    eid = small_evaluation(ws)
    votes_before = evaluation_votes(ws, eid)
    summary_before = summarize(votes_from_rows([v.to_stats_row() for v in votes_before]))
    feedback_before = collect_feedback(ws, eid).counts()
    J.judge_evaluation(ws, eid, ReadingJudge(), which="all")
    assert ws.db.execute("select count(*) from judge_verdicts").fetchone()[0] == 12
    assert evaluation_votes(ws, eid) == votes_before and get_evaluation(ws, eid).num_votes == 4
    assert summarize(votes_from_rows([v.to_stats_row() for v in evaluation_votes(ws, eid)])) == summary_before
    assert collect_feedback(ws, eid).counts() == feedback_before


def test_only_a_judge_above_the_threshold_rates_the_rest_and_its_figures_stay_its_own(ws):
    eid = small_evaluation(ws)
    with pytest.raises(TuneloopError, match="kappa undefined on 0 rated pairs, below the threshold"):
        J.judge_rest(ws, eid, ReadingJudge(), threshold=0.4)    # not calibrated yet
    J.judge_evaluation(ws, eid, LeftJudge())
    with pytest.raises(TuneloopError, match="kappa 0.00 on 4 rated pairs, below the threshold 0.4"):
        J.judge_rest(ws, eid, LeftJudge(), threshold=0.4)
    assert ws.db.execute("select count(*) from judge_verdicts where judge='left'").fetchone()[0] == 8

    reader = ReadingJudge()
    J.judge_evaluation(ws, eid, reader)
    with pytest.raises(TuneloopError, match="below the threshold 1.5"):
        J.judge_rest(ws, eid, reader, threshold=1.5)
    rest = J.judge_rest(ws, eid, reader, threshold=0.4)
    rated = {v.pair_id for v in evaluation_votes(ws, eid)}
    judged = {r[0] for r in ws.db.execute("select pair_id from judge_verdicts where judge='reader'")}
    assert len(judged - rated) == 2 and rest.pairs == 2 and sum(rest.wins.values()) == 2 and rest.ties == 0
    assert "not votes" in J.format_rest(rest) and get_evaluation(ws, eid).num_votes == 4
    assert J.calibrate(ws, eid, "reader").pairs == 4          # the rest never enters the calibration


def test_an_endpoint_answer_is_read_from_its_first_word():
    assert [J.text_verdict(t) for t in ("A", "b.", " Tie!", "Answer B is better", "Both", "", "**A**")] == [
        "A", "B", "tie", "B", "unreadable", "unreadable", "A"]
    with pytest.raises(TuneloopError, match="endpoint:URL#MODEL"):
        J.open_judge(None, "endpoint:localhost:8000")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from tests.tiny_model import build_tiny_model, make_adapter
    root = tmp_path_factory.mktemp("judge-models")
    base = build_tiny_model(root / "base")
    return base, make_adapter(base, root / "adapter", seed=3)


def test_the_results_tab_judges_and_offers_the_rest_only_above_the_threshold(ws, tiny_base):
    import gradio as gr

    from evaluation import judge_ui, ui
    from tests.tab_page import page
    eid = small_evaluation(ws, n=4, rated=2, guidelines="Be right.")
    with gr.Blocks(), gr.Tabs():
        w = ui.build_results_tab(ws).judge
    base = str(tiny_base[0])
    shown = judge_ui.show_judge(ws, w, page(w, evaluation=eid, judge=base))
    assert "no verdicts on rated pairs yet (2 rated pairs to read)" in shown[w.summary]
    assert shown[w.rest]["interactive"] is False
    done = judge_ui.calibrate_clicked(ws, w, page(w, evaluation=eid, judge=base, threshold=-1), None,
                                      progress=lambda *a, **k: None)
    readings = ws.db.execute("select verdict, score from judge_verdicts where judge=?", (base,)).fetchall()
    assert len(readings) == 4 and all(r["verdict"] in J.CHOICES and 1 / 3 <= r["score"] <= 1 for r in readings)
    assert done[w.rest]["interactive"] is True and done[w.table][0][:3] == ["overall", 2, 2]
    refused = judge_ui.rest_clicked(ws, w, page(w, evaluation=eid, judge=base, threshold=1), None,
                                    progress=lambda *a, **k: None)
    assert "below the threshold 1" in refused[w.summary]
    rest = judge_ui.rest_clicked(ws, w, page(w, evaluation=eid, judge=base, threshold=-1), None,
                                 progress=lambda *a, **k: None)
    assert "The judge's, not the raters'" in rest[w.rest_summary]
    assert "on 2 pairs no expert rated" in rest[w.rest_summary]
    assert judge_ui.stop_clicked(ws, w, None)[w.summary] == "Nothing is being judged."
    assert "choose an evaluation first" in judge_ui.calibrate_clicked(ws, w, page(w, evaluation=None), None,
                                                                      progress=lambda *a, **k: None)[w.summary]


def test_the_default_model_judges_a_small_evaluation_from_the_cli(ws, capsys):
    """The default model's verdict is its likeliest of A, B and tie after the prompt: checked against plain
    transformers on the same weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.cli import main
    from training.models import resolve_base_model
    eid = small_evaluation(ws, n=3, rated=2)
    assert main(["judge", str(eid), "--workspace", str(ws.root), "--rest", "--threshold", "0.4", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["calibration"]["pairs"] + out["calibration"]["how"]["unreadable"] == 2 and out["rest"] is None
    rows = ws.db.execute("select pair_id, order_shown, verdict, score from judge_verdicts where judge='default'"
                         " order by id").fetchall()
    assert len(rows) == 4 and all(r["verdict"] in J.CHOICES for r in rows)
    folder = resolve_base_model("default", ws).path
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    pair = next(p for p in J.evaluation_pairs(ws, eid) if p.pair_id == rows[0]["pair_id"])
    prompt = J.judge_prompt(pair, rows[0]["order_shown"], get_evaluation(ws, eid).guidelines)
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        probs = torch.softmax(model(**ids).logits[0, -1], -1)
    options = [probs[tokenizer(w, add_special_tokens=False)["input_ids"][0]].item() for w in ("A", "B", "tie")]
    assert rows[0]["verdict"] == J.CHOICES[options.index(max(options))]
    assert rows[0]["score"] == pytest.approx(max(options) / sum(options), rel=1e-3)


def test_an_endpoint_judge_reads_tuneloops_own_server(ws, tiny_base):
    import shutil

    from curation.data.records import Record
    from curation.data.versions import create_version
    from tests.test_serve import serving
    from training import registry as R
    from training import serve as S
    from training.config import RunConfig
    create_version(ws, [Record(f"r{i}", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
                               {"split": split}) for i, split in enumerate(["train"] * 4 + ["val", "test"])],
                   parent=None, step="split")
    run = R.create_run(ws, RunConfig(base_model=str(tiny_base[0]), datasets="v1"), name="judge")
    shutil.copytree(tiny_base[1], run.adapter_dir)
    R.update_run(ws, run.id, status="finished")
    eid = small_evaluation(ws, n=2, rated=2, guidelines="Be right.")
    with serving(S.Endpoint(ws, run_id=run.id, engine="transformers")) as client:
        url = str(client.base_url).rstrip("/")
        judge = J.open_judge(ws, f"endpoint:{url}/#run-{run.id}")
        assert judge.name == f"endpoint:{url}#run-{run.id}"
        assert J.judge_evaluation(ws, eid, judge) == 4
        pair = J.evaluation_pairs(ws, eid)[0]
        answer = client.post("/chat/completions", json={"model": f"run-{run.id}", "max_tokens": 4, "temperature": 0,
                                                        "messages": J.judge_prompt(pair, "swapped", "Be right.")})
    stored = ws.db.execute("select verdict, score from judge_verdicts where pair_id=? and order_shown='swapped'",
                           (pair.pair_id,)).fetchone()
    assert stored["verdict"] == J.text_verdict(answer.json()["choices"][0]["message"]["content"])
    assert stored["score"] is None                      # no logprobs from this server: read from the text
    assert [r["status"] for r in S.request_log(ws)] == [200] * 5
    with pytest.raises(TuneloopError, match="did not answer"):
        J.EndpointJudge(url, "run-1", timeout=5).read([{"role": "user", "content": "hi"}])


def test_three_arms_are_judged_pair_by_pair_and_the_rest_counts_wins_per_arm(ws):
    from evaluation.arena import Arm
    from tests.test_arena_arms import register_run
    register_run(ws, 5)
    arms = [Arm("base", "base"), Arm("prompted base", "prompted", settings={"system_prompt": "Be brief."}),
            Arm("run 5", "run", run_id=5)]
    answers = {"base": BAD, "prompted base": "Please write to us.", "run 5": GOOD}
    items = [EvalItem(f"q{i}", [{"role": "user", "content": f"Refund for order {i}?"}], responses=answers)
             for i in range(3)]
    eid = create_evaluation(ws, "three arms", items, arms=arms, base_model="tiny")
    for _ in range(6):
        pair = next_pair(ws, eid, "ana")
        record_vote(ws, pair.assignment_id, "ana",
                    "A" if pair.response_a == GOOD else "B" if pair.response_b == GOOD else "tie")
    reader = ReadingJudge()
    assert J.judge_evaluation(ws, eid, reader) == 12
    assert not any(arm.name in prompt for arm in arms for prompt in reader.prompts)
    cal = J.calibrate(ws, eid, "reader")
    assert cal.pairs == 6 and cal.overall.agreement == 1.0 and cal.passes
    assert cal.arms == ("the pair's first arm", "its second arm")
    rest = J.judge_rest(ws, eid, reader)
    assert rest.pairs == 3 and sum(rest.wins.values()) + rest.ties == 3 and rest.win_rate is None
    assert list(rest.wins) == [a.name for a in arms] and rest.wins["base"] == rest.wins["prompted base"] == 0
    assert "run 5" in J.format_rest(rest)


def test_a_stopped_judge_keeps_its_readings_and_continues_where_it_was(ws):
    import threading
    eid = small_evaluation(ws)
    stop = threading.Event()
    seen = []

    class StoppingJudge(ReadingJudge):
        def read(self, conversation):
            if len(self.prompts) == 2:
                stop.set()                  # Stop pressed while the third reading is under way
            return super().read(conversation)

    judge = StoppingJudge()
    with pytest.raises(J.JudgeStopped, match="stopped after 3 of 8 readings"):
        J.judge_evaluation(ws, eid, judge, cancel=stop, progress=lambda done, total, what: seen.append((done, total)))
    assert seen == [(0, 8), (1, 8), (2, 8), (3, 8)]
    assert J.judge_evaluation(ws, eid, judge) == 5 and len(judge.prompts) == 8
