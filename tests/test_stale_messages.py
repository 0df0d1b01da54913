"""No error stays on screen once it is out of date: in each tab, after an action fails, the next successful
action (or a new choice in the picker the error was about) clears or replaces its message. The handlers are
called without a browser; a new choice is what the page gets from the picker's ``input`` listeners."""
from __future__ import annotations

import shutil

import gradio as gr
import pytest

from curation.data.demo import load_demo
from curation.data.records import Record
from curation.data.versions import create_version
from tests.tab_page import page
from ui.kit import ClearMessages


def built(build, ws, **kw):
    with gr.Blocks() as blocks, gr.Tabs():
        w = build(ws, **kw)
    return blocks, w


def user_picks(blocks, widget) -> dict:
    """What the page gets when the user makes a new choice in ``widget``: its clearing listeners' outputs."""
    out = {}
    for dep in blocks.fns.values():
        if (widget._id, "input") in [tuple(t) for t in dep.targets] and isinstance(dep.fn, ClearMessages):
            out.update(dep.fn())
    return out


def warned(text) -> bool:
    return "⚠️" in str(text)


def test_data_a_new_choice_clears_the_rollback_compare_and_export_errors(ws):
    from curation.ui import data
    load_demo(ws)
    blocks, w = built(data.build, ws)
    assert warned(data.roll_back(ws, w, page(w, rollback_pick="v9"))[w.rollback_status])
    assert user_picks(blocks, w.rollback_pick) == {w.rollback_status: ""}
    assert warned(data.compare(ws, w, page(w, diff_a="v1", diff_b="v9"))[w.diff_summary])
    assert user_picks(blocks, w.diff_b) == {w.diff_summary: ""} == user_picks(blocks, w.diff_a)
    assert user_picks(blocks, w.export_pick) == {w.export_status: ""}


def test_splits_a_new_split_choice_clears_the_audit_and_export_errors(ws):
    from curation.ui import splits
    load_demo(ws)
    blocks, w = built(splits.build, ws)
    assert warned(splits.export_split_version(ws, w, page(w, split_pick="v1", formats=[]))[w.export_md])
    assert user_picks(blocks, w.split_pick) == {w.leak_md: "", w.export_md: ""}
    assert user_picks(blocks, w.source) == {w.status: ""}


def test_dedup_a_new_version_choice_clears_the_errors_about_the_last_one(ws):
    from curation.ui import dedup
    load_demo(ws)
    blocks, w = built(dedup.build, ws)
    assert warned(dedup.run_dedup(ws, w, page(w, version="v9"))[w.summary])
    assert user_picks(blocks, w.version) == {w.summary: "", w.apply_status: "", w.filter_status: ""}


def test_pii_a_successful_scan_clears_the_settings_error_it_saved_over(ws):
    from curation.ui import pii
    create_version(ws, [Record("t1", [{"role": "user", "content": "Call Maria Garcia on (415) 555-0132."},
                                      {"role": "assistant", "content": "ok"}])], parent=None, step="import")
    _, w = built(pii.build, ws)
    assert warned(pii.save_pii_settings(ws, w, page(w, form={"thresholds": "PERSON=high"}))[w.settings_status])
    scanned = pii.scan_version(ws, w, page(w))
    assert "1 records with PII" in scanned[w.scan_status]
    assert scanned[w.settings_status] == "" and scanned[w.apply_status] == ""


def test_review_moving_to_another_record_clears_the_draft_error(ws):
    from curation.ui import review
    from tests.test_review_handlers import opened
    load_demo(ws)
    _, w = built(review.build, ws)
    at = opened(ws, w)
    failed = review.save_typing(ws, w, {**at, w.name: ""}, None)
    assert warned(failed[w.draft_msg]) and "type your name" in failed[w.draft_msg]
    moved = review.next_record(ws, w, at, None)
    assert moved[w.cur_rid] != at[w.cur_rid] and moved[w.draft_msg] == ""


@pytest.fixture
def train_tab(ws, tmp_path):
    from tests.tiny_model import build_tiny_model, make_adapter
    from training import registry as R
    from training import ui as train
    from training.config import RunConfig
    base = build_tiny_model(tmp_path / "base")
    records = [Record(f"r{i}", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ok"}],
                      {"split": split}) for i, split in enumerate(["train"] * 4 + ["val", "test"])]
    create_version(ws, records, parent=None, step="split")
    run = R.create_run(ws, RunConfig(base_model=str(base), datasets="v1"), name="done")
    shutil.copytree(make_adapter(base, tmp_path / "adapter", seed=1), run.adapter_dir)
    blocks, w = built(train.build_train_tab, ws)
    return ws, blocks, w, run


def test_train_a_new_run_or_split_choice_clears_the_errors_about_the_last_one(train_tab):
    from training import ui as train
    ws, blocks, w, run = train_tab
    assert warned(train.stop(ws, w, page(w, selected=str(run.id)))[w.message])     # it is not running
    assert warned(train.export(ws, w, page(w, selected="99", export_kind="adapter"))[w.export_msg])
    assert user_picks(blocks, w.selected) == {w.message: "", w.export_msg: ""}
    assert warned(train.run_preflight(ws, w, page(w, split="v9"))[w.message])
    assert user_picks(blocks, w.split) == {w.message: "", w.preview_md: "", w.tokens_md: ""}


def test_serve_a_new_run_choice_clears_the_error_about_the_last_one(train_tab):
    from training import serve_ui
    ws, blocks, w, run = train_tab
    serve = w.serve
    assert warned(serve_ui.make_live(ws, serve, page(serve, run="99"), None)[serve.message])
    assert user_picks(blocks, serve.run) == {serve.message: ""}


def test_playground_a_new_choice_clears_what_was_said_about_the_last_answer(ws):
    from evaluation import playground_ui
    blocks, w = built(playground_ui.build_playground_tab, ws)
    assert "ask something first" in playground_ui.send_answer(ws, w, page(w, answer="text"), None)[w.result]
    for widget in (w.run, w.against, w.example, w.side):
        assert user_picks(blocks, widget) == {w.result: ""}


def test_results_a_new_evaluation_choice_clears_the_close_error(ws):
    from evaluation import ui
    blocks, w = built(ui.build_results_tab, ws)
    assert warned(ui.close_clicked(ws, w, page(w, evaluation=None), None)[w.close_note])
    assert user_picks(blocks, w.evaluation) == {w.close_note: ""}


def test_rate_prepare_a_new_choice_in_the_form_clears_the_generate_error(ws):
    from evaluation import prepare_ui, ui
    blocks, w = built(ui.build_rate_tab, ws, prepare=True)
    form = w.prepare
    failed = prepare_ui.generate_clicked(ws, form, w, page(form, purpose="measure", source="test", version=None),
                                         None, progress=lambda *a, **k: None)
    assert warned(failed[form.status])
    for widget in (form.purpose, form.source, form.version, form.runs, form.base_model):
        assert user_picks(blocks, widget) == {form.status: ""}
