"""A rater of a closed evaluation is told it was closed (when, by whom, why) and what to do, not that nothing is
left for them."""
from __future__ import annotations

from evaluation import arena, ui
from tests.tab_page import page
from tests.test_rate_handlers import tab  # noqa: F401  (the Rate tab on a seeded evaluation)


def test_a_rater_of_a_closed_evaluation_reads_when_and_by_whom_it_was_closed(tab):
    ws, w, eid = tab
    shown = ui.start_clicked(ws, w, page(w, evaluation=eid, name="ana"), None)
    closed = arena.close_evaluation(ws, eid, closed_by="maria", reason="the sequential test decided")
    voted = ui.vote_clicked(ws, w, "A", page(w, assignment=shown[w.assignment], name="ana"), None)
    assert voted[w.assignment] is None and len(arena.evaluation_votes(ws, eid)) == 1   # the pair on screen counted
    started = ui.start_clicked(ws, w, page(w, evaluation=eid, name="ben"), None)
    for note in (voted[w.conversation], started[w.conversation]):
        assert f"closed to new votes at {closed.settings['closed']['at']} by maria" in note
        assert "the sequential test decided" in note and "Ask the admin for a new evaluation" in note
        assert "Nothing is left" not in note and "You have rated all" not in note


def test_an_open_evaluation_with_nothing_left_keeps_the_finished_note(tab):
    ws, w, eid = tab
    shown = ui.start_clicked(ws, w, page(w, evaluation=eid, name="lena"), None)
    while shown.get(w.assignment) is not None:
        shown = ui.vote_clicked(ws, w, "tie", page(w, assignment=shown[w.assignment], name="lena"), None)
    assert "You have rated all" in shown[w.conversation] and "closed" not in shown[w.conversation]
