"""The Review tab's handlers called without a browser: each takes the workspace, the tab's widgets and the
values the page would send, and returns what changes, keyed by component."""
from __future__ import annotations

import html
import json
import re

import gradio as gr
import pytest

from curation.data import versions as V
from curation.data.demo import load_demo
from curation.review.state import ReviewState
from curation.review.labels import label_schema
from curation.ui import review
from ui.kit import static_head


@pytest.fixture
def tab(ws):
    load_demo(ws)
    with gr.Blocks():
        with gr.Tabs():
            w = review.build(ws)
    return ws, w


def widgets(w) -> list:
    return [c for c in [*vars(w).values(), *w.slots] if isinstance(c, gr.components.Component)]


def page(w, **typed) -> dict:
    """What the page sends: every widget's value as the tab starts, with ``typed`` (by widget name) changed."""
    values = {c: getattr(c, "value", None) for c in widgets(w)}
    values.update({w.slots[i]: v for i, v in typed.pop("slots", {}).items()})
    values.update({getattr(w, k): v for k, v in typed.items()})
    return values


def opened(ws, w, name="ana") -> dict:
    """The page after the reviewer typed ``name`` and pressed Enter."""
    shown = review.open_review(ws, w, page(w, name=name), None)
    return page(w, name=name, cur_rid=shown[w.cur_rid], msg_pick=shown[w.msg_pick]["value"],
                msg_edit=shown[w.msg_edit], version="v1")


def test_opening_shows_the_first_record_and_the_reviewers_progress(tab):
    ws, w = tab
    shown = review.open_review(ws, w, page(w, name="ana"), None)
    assert shown[w.cur_rid] == "demo-0001" and "**demo-0001**" in shown[w.record_info]
    assert "**ana**: 0 done of 600" in shown[w.queue_info]
    assert shown[w.saved_name] == "ana"
    assert [f.name for f in label_schema(ws, "v1").fields][0] in shown[w.schema_code]


def test_approve_stores_the_label_and_moves_on_undo_takes_it_back(tab):
    ws, w = tab
    option = label_schema(ws, "v1").field("label").options[2]
    done = review.approve(ws, w, {**opened(ws, w), w.slots[0]: option}, None)
    assert "**demo-0001** approved" in done[w.action_msg] and done[w.cur_rid] == "demo-0002"
    state = ReviewState(ws, "v1")
    assert state.decisions["demo-0001"] == {"ana": "approved"}
    assert state.view("demo-0001", "ana").my_labels["label"] == option
    back = review.undo(ws, w, page(w, name="ana", version="v1", cur_rid="demo-0002"), None)
    assert back[w.cur_rid] == "demo-0001" and "Undid" in back[w.action_msg]
    assert "ana" not in ReviewState(ws, "v1").decisions.get("demo-0001", {})


def test_a_local_reviewer_without_a_name_is_asked_for_one(tab):
    ws, w = tab
    refused = review.approve(ws, w, {**opened(ws, w), w.name: ""}, None)
    assert set(refused) == {w.action_msg} and "type your name" in refused[w.action_msg]
    assert ReviewState(ws, "v1").decisions == {}


def test_a_draft_is_saved_as_typed_and_restored_on_reopening(tab):
    ws, w = tab
    typing = {**opened(ws, w), w.msg_edit: "half-written answer"}
    assert "Draft of demo-0001 saved" in review.save_typing(ws, w, typing, None)[w.draft_msg]
    again = review.open_review(ws, w, page(w, saved_name="ana"), None)
    assert again[w.name] == "ana" and "draft restored" in again[w.record_info]
    assert again[w.msg_edit] == "half-written answer"


def test_commit_asks_first_then_makes_the_new_current_version(tab):
    ws, w = tab
    review.approve(ws, w, opened(ws, w), None)
    asked = review.ask_commit(ws, w, page(w, version="v1"))
    assert "1 approved" in asked[w.commit_msg] and asked[w.commit_confirm]["visible"]
    made = review.commit(ws, w, page(w, name="ana", version="v1"), None)
    assert "Committed as **v2**" in made[w.commit_msg] and made[w.version]["value"] == "v2"
    assert made[w.version]["choices"][0][0].startswith("v2 (current)")
    assert V.current_version(ws).name == "v2"


def test_bulk_asks_how_many_change_before_it_changes_them(tab):
    ws, w = tab
    data = page(w, name="ana", version="v1", search="refund", bulk_kind="reject")
    asked = review.ask_bulk(ws, w, data, None)
    changing = asked[w.bulk_expected]
    assert changing > 0 and f"changes **{changing:,}**" in asked[w.bulk_msg]
    done = review.apply_bulk(ws, w, {**data, w.bulk_expected: changing}, None)
    assert f"Changed {changing:,} records" in done[w.bulk_msg]
    assert sum(d.get("ana") == "rejected" for d in ReviewState(ws, "v1").decisions.values()) == changing


def test_every_shortcut_reaches_a_widget_of_the_tab_and_the_script_reads_the_keymap(tab):
    ws, w = tab
    ids = {c.elem_id for c in widgets(w)}
    targets = {target for _, target in review.keymap().values()}
    assert targets and targets <= ids
    overlay = review.help_overlay_html()
    keymap = json.loads(html.unescape(re.search(r'data-keymap="([^"]*)"', overlay).group(1)))
    assert keymap == review.keymap()
    head = static_head("review")
    assert "dataset.keymap" in head and "#review-help" in head


def test_previous_after_approve_goes_back_to_the_record_just_approved(tab):
    ws, w = tab
    first = opened(ws, w)
    done = review.approve(ws, w, first, None)
    assert done[w.cur_rid] == "demo-0002"
    back = review.previous_record(ws, w, {**first, w.cur_rid: "demo-0002"}, None)
    assert back[w.cur_rid] == "demo-0001" and "not in the queue any more" in back[w.queue_info]
    onward = review.next_record(ws, w, {**first, w.cur_rid: "demo-0001"}, None)
    assert onward[w.cur_rid] == "demo-0002"
    wrapped = review.previous_record(ws, w, {**first, w.cur_rid: "demo-0001"}, None)
    assert wrapped[w.cur_rid] == "demo-0600"     # nothing before the first record: round to the last


def test_an_edited_answer_shows_in_the_conversation_when_the_editor_is_left(tab):
    ws, w = tab
    typing = {**opened(ws, w), w.msg_edit: "A corrected answer."}
    shown = review.show_typed(ws, w, typing, None)
    assert shown[w.chat][-1] == {"role": "assistant", "content": "A corrected answer."}
    review.save_typing(ws, w, typing, None)
    again = review.show_typed(ws, w, {**typing, w.msg_pick: None}, None)   # the draft's edit, editor elsewhere
    assert again[w.chat][-1]["content"] == "A corrected answer."
