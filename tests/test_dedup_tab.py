"""The Dedup tab's handlers without a browser: the page's values in, outputs keyed by component out."""
from __future__ import annotations

import html

import gradio as gr
import pytest

from benchmarks.planted_duplicates import planted_dataset
from curation.data import versions as V
from curation.data.records import Record
from curation.dedup.clusters import DedupOptions
from curation.ui import dedup
from tests.tab_page import page


@pytest.fixture
def tab(ws):
    planted = planted_dataset(300, seed=3)
    V.create_version(ws, planted.records, parent=None, step="import")
    with gr.Blocks():
        with gr.Tabs():
            w = dedup.build(ws)
    return ws, w, planted


def test_the_forms_are_rendered_from_the_options_classes(tab):
    ws, w, _ = tab
    assert set(w.form) == set(DedupOptions().to_dict()) and w.form["keep"].elem_id == "dedup-option-keep"
    assert w.form["threshold"].value == DedupOptions().threshold and "skip" in w.filter_form
    assert w.version.value == "v1"


def test_run_override_a_keeper_and_apply(tab):
    ws, w, planted = tab
    found = dedup.run_dedup(ws, w, page(w, version="v1", form={"keep": "longest"}))
    result = found[w.result]
    assert result.options.keep == "longest" and found[w.overrides] == {}
    assert "300 records" in found[w.summary] and "records to drop" in found[w.summary]
    assert found[w.cluster_pick]["value"] == "1" and 'data-cluster="1"' in found[w.members]
    sizes = [int(k) for k in found[w.histogram]["sort"]]               # bars in numeric order, not as text
    assert sizes == sorted(result.size_histogram()) and list(found[w.histogram]["value"]["cluster size"]) == \
        [str(k) for k in sizes]

    opened = dedup.open_cluster(ws, w, page(w, result=result, cluster_pick="2"))
    members = opened[w.member_pick]["choices"]
    member = opened[w.member_pick]["value"]
    assert member == members[-1] and member in result.drop_ids() and "DROP" in opened[w.members]

    kept = dedup.keep_member(ws, w, page(w, result=result, cluster_pick="2", member_pick=member))
    assert kept[w.overrides] == {member: "keep"} and "1 override(s)" in kept[w.summary]
    assert "overridden · <span class=\"dd-fate\">KEEP" in kept[w.members]

    applied = dedup.apply_dedup_version(ws, w, page(w, result=result, overrides=kept[w.overrides]))
    assert "Made **v2" in applied[w.apply_status] and applied[w.version]["value"] == "v2"
    assert applied[w.version]["choices"][0][0].startswith("v2 (current)")
    made = V.current_version(ws)
    assert made.step == "dedup" and made.params["overrides"] == {member: "keep"} and made.params["keep"] == "longest"
    kept_ids = {r.id for r in V.load_records(ws, made.id)}
    assert member in kept_ids and len(kept_ids) < 300 and not planted.hard_negatives - kept_ids


def test_bad_option_values_are_shown_naming_the_key(tab):
    ws, w, _ = tab
    out = dedup.run_dedup(ws, w, page(w, version="v1", form={"ngram": 0, "num_perm": 5000}))
    assert "ngram: 0 is too small" in out[w.summary] and "num_perm: 5000 is too large" in out[w.summary]
    assert w.result not in out
    out = dedup.check_filters(ws, w, page(w, version="v1", filter_form={"min_answer_words": 50,
                                                                         "max_answer_words": 10}))
    assert "max_answer_words: 10 is below min_answer_words (50)" in html.unescape(out[w.filter_status])
    refused = dedup.keep_member(ws, w, page(w, cluster_pick="1", member_pick="x"))
    assert "press &#x27;Find duplicates&#x27; first" in refused[w.summary]
    assert V.current_version(ws).name == "v1"


def test_filters_switched_off_in_the_form_are_not_applied(ws):
    answers = {"r1": "Restart the hub, then pair the bulb again from the app.", "r2": "OK.", "r3": ""}
    V.create_version(ws, [Record(id=rid, messages=[{"role": "user", "content": f"Question {rid}?"},
                                                    {"role": "assistant", "content": text}])
                          for rid, text in answers.items()], parent=None, step="import")
    with gr.Blocks():
        w = dedup.build(ws)
    checked = dedup.check_filters(ws, w, page(w, version="v1", filter_form={"skip": ["short_answer"]}))
    assert checked[w.filter_status] == "1 of 3 records flagged."
    applied = dedup.apply_filter_version(ws, w, page(w, filter_report=checked[w.filter_report]))
    assert "Made **v2" in applied[w.filter_status] and applied[w.version]["value"] == "v2"
    assert [r.id for r in V.load_records(ws, "v2")] == ["r1", "r2"]


def test_cancel_stops_this_tabs_search_and_no_other(tab):
    ws, w, _ = tab
    mine, other = gr.Request(session_hash="tab-a"), gr.Request(session_hash="tab-b")
    said = []

    def progress(*args, **kwargs):
        if not said:
            said.append(dedup.cancel_dedup(ws, w, other)[w.summary])
            said.append(dedup.cancel_dedup(ws, w, mine)[w.summary])

    out = dedup.run_dedup(ws, w, page(w, version="v1"), mine, progress)
    assert said == ["No search of yours is running.", "Cancelling…"]
    assert "cancelled" in out[w.summary] and w.result not in out
    assert dedup.cancel_dedup(ws, w, mine)[w.summary] == "No search of yours is running."
