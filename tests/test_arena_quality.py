"""Rater quality in the arena: gold pairs, repeats with the sides swapped, a vote cap and answers that name their
model, all decided on the server, and nothing in what a rater gets before the vote that tells them apart."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import TuneloopError
from evaluation import arena
from evaluation.arena import (GOLD_BETTER, Arm, BlindPair, EvalItem, GoldItem, RaterChecks, VoteCapReached,
                              create_evaluation, evaluation_comparisons, evaluation_votes, model_named, next_pair,
                              rater_progress, read_gold_items, record_vote)
from evaluation.ratings import count_once
from tests.tiny_model import build_tiny_model

ARMS = [Arm("base", "base"), Arm("shop bot", "endpoint", settings={"model": "m"})]


def items(n: int, *, answers=("the parcel left the depot", "the parcel is on its way")) -> list[EvalItem]:
    return [EvalItem(f"q{i}", [{"role": "user", "content": f"Where is parcel {i}?"}],
                     responses={ARMS[0].name: f"Parcel {i}: {answers[0]}.", ARMS[1].name: f"Parcel {i}: {answers[1]}."})
            for i in range(n)]


def gold(n: int) -> list[GoldItem]:
    """Known better answers (the right order number) against worse ones (a wrong one), worded like the others."""
    return [GoldItem(f"g{i}", [{"role": "user", "content": f"Where is parcel {100 + i}?"}],
                     better=f"Parcel {100 + i}: the parcel left the depot.",
                     worse=f"Parcel {200 + i}: the parcel is on its way.") for i in range(n)]


def rate_all(ws, eid, rater, choose=lambda pair: "A") -> list[BlindPair]:
    got = []
    while (pair := next_pair(ws, eid, rater)) is not None:
        got.append(pair)
        record_vote(ws, pair.assignment_id, rater, choose(pair))
    return got


def kinds(ws, got: list[BlindPair]) -> list[str]:
    """What each pair really was (server side): arms, gold or repeat."""
    out = []
    for pair in got:
        row = ws.db.execute("select p.gold, a.repeat from eval_assignments a join eval_pairs p on p.id=a.pair_id"
                            " where a.id=?", (pair.assignment_id,)).fetchone()
        out.append("gold" if row["gold"] else "repeat" if row["repeat"] else "arms")
    return out


def test_gold_pairs_come_at_the_set_rate_and_each_vote_s_correctness_is_stored(ws):
    eid = create_evaluation(ws, "gold", items(20), arms=ARMS, base_model="tiny", gold=gold(6), overlap=2,
                            checks=RaterChecks(gold_rate=0.2))
    got = rate_all(ws, eid, "ana", lambda p: "A" if p.response_a.startswith("Parcel 10") else "B")
    assert kinds(ws, got).count("gold") == 4 and len(got) == 24           # 0.2 per arm pair: 4 for 20
    rate_all(ws, eid, "bob", lambda p: "tie")
    stored = ws.db.execute("select a.rater, v.gold_correct from eval_votes v join eval_assignments a"
                           " on a.id=v.assignment_id join eval_pairs p on p.id=a.pair_id where p.gold=1").fetchall()
    assert sorted(tuple(r) for r in stored) == [("ana", 1)] * 4 + [("bob", 0)] * 4
    on_gold = [c for c in evaluation_comparisons(ws, eid) if c.gold is not None]
    assert len(on_gold) == 8 and all(c.gold == GOLD_BETTER for c in on_gold)
    assert [c.winner == c.gold for c in on_gold if c.rater == "ana"] == [True] * 4
    assert len(evaluation_votes(ws, eid)) == 40                          # the two-arm figures leave gold out
    with pytest.raises(TuneloopError, match="needs gold pairs"):
        create_evaluation(ws, "no gold", items(2), arms=ARMS, base_model="tiny", checks=RaterChecks(gold_rate=0.1))


def test_repeats_come_later_with_the_sides_swapped_and_never_next_to_their_original(ws):
    eid = create_evaluation(ws, "repeats", items(16), arms=ARMS, base_model="tiny",
                            checks=RaterChecks(repeat_rate=0.25))
    got = rate_all(ws, eid, "ana", lambda p: "A")
    assert len(got) == 20 and kinds(ws, got).count("repeat") == 4
    for n, (pair, kind) in enumerate(zip(got, kinds(ws, got))):
        if kind != "repeat":
            continue
        first = next(i for i, p in enumerate(got) if p.prompt == pair.prompt)
        assert first < n - 1                                            # earlier, and not the pair just before
        original = got[first]
        assert (pair.response_a, pair.response_b) == (original.response_b, original.response_a)
    comparisons = evaluation_comparisons(ws, eid)
    counted, dropped = count_once(comparisons)
    assert len(comparisons) == 20 and (len(counted), dropped) == (16, 4)
    assert len(evaluation_votes(ws, eid)) == 16                          # the two-arm figures: once per prompt
    repeated = {c.prompt_id for c in comparisons if sum(d.prompt_id == c.prompt_id for d in comparisons) == 2}
    for prompt in repeated:
        both = [c for c in comparisons if c.prompt_id == prompt]
        assert both[0].left == both[1].right and both[0].winner != both[1].winner   # always A: inconsistent


def test_a_repeat_waits_for_another_pair_between_it_and_its_original(ws):
    # two prompts, one repeat each: the only order that keeps a pair between a repeat and its original is x, y, x
    eid = create_evaluation(ws, "gap", items(2), arms=ARMS, base_model="tiny", overlap=12,
                            checks=RaterChecks(repeat_rate=0.5))
    for rater in range(12):
        got = rate_all(ws, eid, f"rater {rater}")
        assert [p.prompt for p in got][::2] == [got[0].prompt] * 2 and got[1].prompt != got[0].prompt


def test_a_rater_cannot_tell_gold_pairs_or_repeats_from_any_other_pair(ws):
    eid = create_evaluation(ws, "blind", items(20), arms=ARMS, base_model="tiny", gold=gold(5), overlap=6,
                            checks=RaterChecks(gold_rate=0.15, repeat_rate=0.15))
    positions = set()
    for rater in ("ana", "bob", "cy", "dee", "eve", "fay"):
        got = rate_all(ws, eid, rater)
        assert [(p.done, p.total) for p in got] == [(n, 26) for n in range(26)]   # the total never moves
        assert [p.assignment_id for p in got] == sorted(p.assignment_id for p in got)
        assert all(type(p) is BlindPair and p.evaluation_id == eid and p.context == [] for p in got)
        positions.add(tuple(n for n, kind in enumerate(kinds(ws, got)) if kind != "arms"))
        for pair in got:
            payload = json.dumps(dataclasses.asdict(pair)).lower()
            assert not any(word in payload for word in ("gold", "repeat", "better", "worse", "shop bot", "base"))
    assert len(positions) > 1                                            # drawn at random, not at fixed places
    assert {f.name for f in dataclasses.fields(BlindPair)} == {
        "assignment_id", "evaluation_id", "context", "prompt", "response_a", "response_b", "done", "total"}


def test_a_rater_past_the_vote_cap_is_refused_with_the_cap_named(ws):
    eid = create_evaluation(ws, "cap", items(6), arms=ARMS, base_model="tiny", checks=RaterChecks(vote_cap=3))
    assert rater_progress(ws, eid, "ana").total == 3
    got = []
    with pytest.raises(VoteCapReached, match="You have rated 3, the cap the admin set"):
        while True:
            pair = next_pair(ws, eid, "ana")
            got.append((pair.done, pair.total))
            record_vote(ws, pair.assignment_id, "ana", "B")
    assert got == [(0, 3), (1, 3), (2, 3)] and len(evaluation_votes(ws, eid)) == 3
    assert len(rate_all(ws, eid, "bob")) == 3                            # the cap is per rater
    with pytest.raises(TuneloopError, match="vote_cap: 0 is too small"):
        create_evaluation(ws, "zero", items(1), arms=ARMS, base_model="tiny", checks=RaterChecks(vote_cap=0))


def test_the_rate_tab_takes_the_vote_that_reaches_the_cap_and_then_says_so(ws):
    import gradio as gr
    from evaluation import ui as rate_ui
    from tests.tab_page import page
    eid = create_evaluation(ws, "cap", items(6), arms=ARMS, base_model="tiny", checks=RaterChecks(vote_cap=2))
    with gr.Blocks(), gr.Tabs():
        w = rate_ui.build_rate_tab(ws)
    shown = rate_ui.start_clicked(ws, w, page(w, evaluation=eid, name="ana"), None)
    for _ in range(2):
        shown = rate_ui.vote_clicked(ws, w, "A", page(w, assignment=shown[w.assignment], name="ana"), None)
        assert shown[w.reveal].startswith("✅")
    assert shown[w.assignment] is None and "You have rated 2, the cap the admin set" in shown[w.conversation]
    assert len(evaluation_votes(ws, eid)) == 2
    again = rate_ui.start_clicked(ws, w, page(w, evaluation=eid, name="ana"), None)
    assert "You have rated 2, the cap the admin set" in again[w.conversation]


def test_an_answer_that_names_its_model_is_flagged_on_its_pair_and_the_vote_still_counts(ws):
    ws.db.execute("insert into runs (id, name, status, config, output_dir, dataset, base_model) values"
                  " (4, 'Parcel-Pal v2', 'finished', '{}', '/runs/4', 'v1', 'tiny')")
    arms = [Arm("base", "base"), Arm("run 4", "run", run_id=4)]
    talk = [EvalItem("q0", [{"role": "user", "content": "Who are you?"}],
                     responses={"base": "As SmolLM2, I cannot see parcels.", "run 4": "Parcel 7 left today."}),
            EvalItem("q1", [{"role": "user", "content": "Name?"}],
                     responses={"base": "A tiny delay, sorry.", "run 4": "I am Parcel-Pal v2, here to help."}),
            EvalItem("q2", [{"role": "user", "content": "Where?"}],
                     responses={"base": "At the base of the hill.", "run 4": "On its way."})]
    eid = create_evaluation(ws, "names", talk, arms=arms, base_model="SmolLM2-135M-Instruct")
    rate_all(ws, eid, "ana")
    flagged = {c.prompt_id: c.flagged for c in evaluation_comparisons(ws, eid)}
    assert flagged == {"q0": "base's answer says 'As SmolLM2'", "q1": "run 4's answer says 'I am Parcel-Pal v2'",
                       "q2": None}
    assert len(evaluation_votes(ws, eid)) == 3


def test_model_named_finds_self_naming_and_leaves_ordinary_words_alone():
    assert model_named("Sure! I am Qwen, a model made by Alibaba.") == "I am Qwen"
    assert model_named("I'm a Llama-3 model") == "I'm a Llama-3"
    assert model_named("Reply from qwen2.5-0.5b: fine") == "qwen2.5-0.5b"
    assert model_named("This is round 2 speaking.", ["round 2"]) == "This is round 2"
    for text in ("The llama farm ships wool.", "Use this as the base for your claim.", "A tiny delay.",
                 "The phi of the angle", "I am sorry, as a rule we refund in 14 days."):
        assert model_named(text, ["base", "tiny"]) is None, text


def test_gold_pairs_are_read_from_a_file_with_each_bad_line_named(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text('{"prompt": "Refund for LM-1?", "better": "Yes, within 30 days.", "worse": "No."}\n\n'
                    '{"prompt_id": "g9", "messages": [{"role": "user", "content": "Hi?"}], "better": "Hello!",'
                    ' "worse": "Go away.", "label": "greeting"}\n')
    assert read_gold_items(path) == [
        GoldItem("gold-1", [{"role": "user", "content": "Refund for LM-1?"}], "Yes, within 30 days.", "No."),
        GoldItem("g9", [{"role": "user", "content": "Hi?"}], "Hello!", "Go away.", label="greeting")]
    path.write_text('{"prompt": "Refund?", "better": "Yes."}\nnot json\n')
    with pytest.raises(TuneloopError, match="line 1: missing worse; line 2: not JSON"):
        read_gold_items(path)


def test_the_quality_settings_are_checked(ws):
    for kwargs, message in (({"checks": RaterChecks(gold_rate=1.5), "gold": gold(1)}, "gold_rate: 1.5 is too large"),
                            ({"checks": RaterChecks(repeat_rate=-0.1)}, "repeat_rate: -0.1 is too small"),
                            ({"gold": [GoldItem("g", [{"role": "user", "content": "?"}], "same", " same ")]},
                             "same better and worse")):
        with pytest.raises(TuneloopError, match=message):
            create_evaluation(ws, "bad", items(2), arms=ARMS, base_model="tiny", **kwargs)
    assert arena.list_evaluations(ws) == []


def test_the_generate_command_takes_the_pairs_gold_pairs_and_rater_checks(ws, tmp_path):
    from curation.data.records import Record
    from curation.data.versions import create_version
    tiny = build_tiny_model(tmp_path / "tiny")
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": "Soon."}],
                      {"split": split}) for i, (q, split) in enumerate([("Where is my order?", "test"),
                                                                         ("Refund?", "test"), ("Hi?", "train")])]
    version = create_version(ws, records, parent=None, step="split")
    gold_file = tmp_path / "gold.jsonl"
    gold_file.write_text("".join(json.dumps({"prompt": f"Parcel {i}?", "better": "It left today.", "worse": "Dunno."})
                                 + "\n" for i in range(3)))
    command = [sys.executable, "-m", "evaluation", "generate", "--arm", "base", "--arm", "prompted:0",
               "--system-prompt", "Be brief.", "--base", str(tiny), "--split", version.name, "--max-new-tokens", "3",
               "--pairs-per-prompt", "1", "--gold", str(gold_file), "--gold-rate", "0.5", "--repeat-rate", "0.5",
               "--vote-cap", "3", "--workspace", str(ws.root)]
    done = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    evaluation = arena.get_evaluation(ws, 1)
    assert (evaluation.pairs_per_prompt, evaluation.gold_rate, evaluation.repeat_rate, evaluation.vote_cap) == (
        1, 0.5, 0.5, 3)
    assert evaluation.num_pairs == 2 + 3 and rater_progress(ws, 1, "ana").total == 3
    wrong = subprocess.run(command[:-6] + ["--gold-rate", "2", "--workspace", str(ws.root)],
                           cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    assert wrong.returncode == 2 and "gold_rate: 2.0 is too large" in wrong.stderr
