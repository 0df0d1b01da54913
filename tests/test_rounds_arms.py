"""A run's human figures are read from every evaluation it is an arm of, not from ``evaluations.run_id`` alone: an
evaluation of several runs (``run_id`` null), and one where the run is the reference arm, show up in the rounds
view's win-rate and rating columns and in the model card, each with that run's own figures."""
from __future__ import annotations

import pytest

from evaluation.arena import Arm, EvalItem, create_evaluation, next_pair, record_vote
from evaluation.model_card import human_evaluations, model_card
from evaluation.rounds import round_rows, rounds_table
from tests.test_arena import register_run


def items(arms: list[Arm], quality: dict[str, int], n: int) -> list[EvalItem]:
    return [EvalItem(f"q{i}", [{"role": "user", "content": f"Where is parcel {i}?"}],
                     responses={a.name: f"Parcel {i} is on its way, code {quality[a.name]}." for a in arms})
            for i in range(n)]


def code(text: str) -> int:
    return int(text.rsplit("code ", 1)[1].rstrip("."))


def vote_for_the_better(ws, eid: int, rater: str = "ana") -> None:
    while (pair := next_pair(ws, eid, rater)) is not None:
        record_vote(ws, pair.assignment_id, rater, "A" if code(pair.response_a) > code(pair.response_b) else "B")


def table(ws) -> dict[str, dict]:
    return {row["run"].split()[0]: row for row in rounds_table(round_rows(ws))}


def test_an_evaluation_of_several_runs_gives_each_run_its_rating_and_win_rates(ws):
    register_run(ws, 7, "round one")
    register_run(ws, 8, "round two")
    arms = [Arm("base", "base"), Arm("round 1", "run", run_id=7), Arm("round 2", "run", run_id=8)]
    eid = create_evaluation(ws, "rounds side by side", items(arms, {"base": 0, "round 1": 1, "round 2": 2}, 12),
                            arms=arms, base_model="tiny")
    assert ws.db.execute("select run_id from evaluations where id=?", (eid,)).fetchone()[0] is None
    vote_for_the_better(ws, eid)
    found = human_evaluations(ws, 8)
    assert [(h["evaluation"], h["arm"], h["against"]) for h in found] == [(eid, "round 2", "base")]
    two = found[0]
    assert [(p["other"], p["wins"], p["losses"]) for p in two["pairwise"]] == [("base", 12, 0), ("round 1", 12, 0)]
    assert two["stats"]["win_rate"] == 1.0 and two["stats"]["votes"] == 12
    assert two["rating"]["reference"] == "base" and two["rating"]["rating"] > 0
    cells = table(ws)
    assert cells["#7"]["human (win rate, 95% CI)"].startswith("100% [") and \
        cells["#7"]["human (win rate, 95% CI)"].endswith(f"of 12 votes vs base, evaluation #{eid}")
    assert f"vs base (beats it" in cells["#8"]["human rating (Bradley–Terry vs base)"]
    card = model_card(ws, 7)
    assert "No blind evaluation yet." not in card and "No human votes yet" not in card
    assert f"- #{eid} rounds side by side (this run is the arm 'round 1' of base vs round 1 vs round 2):" in card
    assert "  - Bradley–Terry rating against base: +" in card
    assert "  - Against base: won 12, lost 0, ties 0, both bad 0; win rate 100.0%" in card
    assert "  - Against round 2: won 0, lost 12, ties 0, both bad 0; win rate 0.0%" in card
    assert "round 1 won 12, base won 0" in card


def test_a_run_that_is_the_reference_arm_shows_its_win_rate_against_the_other_arm(ws):
    register_run(ws, 7, "round one")
    register_run(ws, 8, "round two")
    arms = [Arm("round 1", "run", run_id=7), Arm("round 2", "run", run_id=8)]    # no base: round 1 is the reference
    eid = create_evaluation(ws, "round 2 against round 1", items(arms, {"round 1": 1, "round 2": 2}, 6), arms=arms,
                            base_model="tiny")
    vote_for_the_better(ws, eid)
    one = human_evaluations(ws, 7)
    assert [(h["arm"], h["against"], h["rating"]) for h in one] == [("round 1", "round 2", None)]
    assert one[0]["stats"]["win_rate"] == 0.0 and one[0]["stats"]["decisive"] == 6
    rows = {r.run_id: r for r in round_rows(ws)}
    assert rows[7].figures["win_rate"] == 0.0 and rows[8].figures["win_rate"] == 1.0
    assert "human_rating" not in rows[7].figures          # no base among the arms: no rating against it
    cells = table(ws)
    assert cells["#7"]["human (win rate, 95% CI)"].startswith("0% [0–") and \
        cells["#7"]["human (win rate, 95% CI)"].endswith(f"of 6 votes vs round 2, evaluation #{eid}")
    assert cells["#8"]["human (win rate, 95% CI)"].endswith(f"of 6 votes vs round 1, evaluation #{eid}")
    assert cells["#7"]["human rating (Bradley–Terry vs base)"] == "–"
    import gradio as gr

    from evaluation import rounds_ui
    with gr.Blocks():
        w = rounds_ui.layout_rounds()
    shown = rounds_ui.show_rounds(ws, w)
    assert "Human figures come from every blind evaluation a run is an arm of" in shown[w.summary]
    assert list(shown[w.table]["human (win rate, 95% CI)"]) == [cells["#7"]["human (win rate, 95% CI)"],
                                                               cells["#8"]["human (win rate, 95% CI)"]]
    card = model_card(ws, 7)
    assert "  - Against round 2: won 0, lost 6, ties 0, both bad 0; win rate 0.0%" in card
    assert "⚠️ Only 6 prompts: this interval is rough." in card


def test_without_a_base_or_a_single_other_arm_the_win_rate_is_against_each_other_arm(ws):
    register_run(ws, 7, "round one")
    register_run(ws, 8, "round two")
    arms = [Arm("prompted", "prompted", settings={"system": "Be brief."}), Arm("round 1", "run", run_id=7),
            Arm("round 2", "run", run_id=8)]
    eid = create_evaluation(ws, "three without the base", items(arms, {"prompted": 0, "round 1": 1, "round 2": 2}, 4),
                            arms=arms, base_model="tiny")
    vote_for_the_better(ws, eid)
    (h,) = human_evaluations(ws, 7)
    assert h["against"] is None and h["stats"] is None and h["rating"] is None
    assert [(p["other"], p["wins"], p["losses"], p["prompts"]) for p in h["pairwise"]] == \
        [("prompted", 4, 0, 4), ("round 2", 0, 4, 4)]
    cell = table(ws)["#7"]["human (win rate, 95% CI)"]
    assert cell.startswith("vs prompted 100% [") and "; vs round 2 0% [0–" in cell
    assert cell.endswith(f"of 4 (as 'round 1'), evaluation #{eid}")
    card = model_card(ws, 7)
    assert "No human votes yet" not in card
    assert "  - Against prompted: won 4, lost 0, ties 0, both bad 0; win rate 100.0%" in card
    assert "Only 4 prompts: this interval is rough." in card


@pytest.mark.parametrize("evaluations", [0, 2])
def test_a_run_rated_in_two_evaluations_lists_both_and_takes_the_newest(ws, evaluations):
    register_run(ws, 7, "round one")
    arms = [Arm("base", "base"), Arm("round 1", "run", run_id=7)]
    made = [create_evaluation(ws, f"e{n}", items(arms, {"base": 2 * n, "round 1": 1}, 3), arms=arms,
                              base_model="tiny") for n in range(evaluations)]
    for eid in made:
        vote_for_the_better(ws, eid)
    found = human_evaluations(ws, 7)
    assert [h["evaluation"] for h in found] == made
    figures = {r.run_id: r for r in round_rows(ws)}[7].figures
    if made:
        assert figures["win_rate"] == 0.0 and figures["win_evaluation"] == made[-1]   # the newest: base better
        assert figures["human_evaluation"] == made[-1]
    else:
        assert "win_rate" not in figures and "No blind evaluation yet." in model_card(ws, 7)


def test_corrections_from_an_evaluation_of_several_arms_make_its_newest_run_the_next_runs_previous_round(ws):
    from curation.data.records import Record
    from curation.data.versions import create_version
    register_run(ws, 6, "round one, other recipe")
    register_run(ws, 7, "round one")
    arms = [Arm("base", "base"), Arm("round 1b", "run", run_id=6), Arm("round 1", "run", run_id=7)]
    eid = create_evaluation(ws, "three arms", items(arms, {"base": 0, "round 1b": 1, "round 1": 2}, 3), arms=arms,
                            base_model="tiny")
    assert ws.db.execute("select run_id from evaluations where id=?", (eid,)).fetchone()[0] is None
    record = Record("r1", [{"role": "user", "content": "Where is parcel 1?"},
                           {"role": "assistant", "content": "On its way."}], {"split": "train"})
    first = create_version(ws, [record], parent=None, step="import")
    merged = create_version(ws, [record], parent=first.id, step="feedback", also=lambda db, vid: db.execute(
        "insert into feedback_versions (version_id, evaluation_id, kind, policy) values (?, ?, 'corrections',"
        " 'majority')", (vid, eid)))
    register_run(ws, 8, "round two")
    ws.db.execute("update runs set dataset_version=? where id=8", (merged.id,))
    rows = {r.run_id: r for r in round_rows(ws)}
    assert rows[8].previous_run == 7 and rows[8].round == rows[7].round + 1
