"""Preparing an evaluation from the admin's Rate tab, called without a browser: the form's handlers for an admin,
what each purpose offers, and that a rater never gets the form (not in their app, refused if reached)."""
from __future__ import annotations

import gradio as gr
import pytest

import app as tuneloop_app
from core.users import add_user
from curation.data.records import Record
from curation.data.versions import create_version
from evaluation import prepare_ui, ui
from evaluation.arena import evaluation_arms, get_evaluation
from tests.tab_page import page
from tests.test_generate import QUESTIONS, finished_run, run_folder, split_version  # noqa: F401  (run_folder: fixture)
from training import registry as R
from ui.kit import PickerRefresh


def no_progress(*args, **kwargs) -> None:
    """What a handler test hands in for ``gr.Progress``: the page would draw the bar."""


@pytest.fixture
def tab(ws):
    with gr.Blocks(), gr.Tabs():
        w = ui.build_rate_tab(ws, prepare=True)
    return w


def elem_ids(blocks) -> set[str]:
    return {c["props"].get("elem_id") for c in blocks.config["components"]} - {None}


def on_select(blocks, w) -> list:
    """The handlers the tab's select event runs."""
    fns = blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns
    return [f for f in fns if (w.tab._id, "select") in [(t[0], t[1]) for t in f.targets]]


def test_the_prepare_pickers_show_the_runs_and_versions_of_now_when_the_rate_tab_is_shown(ws):
    with gr.Blocks() as blocks, gr.Tabs():
        w = ui.build_rate_tab(ws, prepare=True)
    assert w.prepare.runs.choices == [] and w.prepare.version.choices == []
    ws.db.execute("insert into runs (id, name, status, config, output_dir, dataset, base_model) values"
                  " (8, 'second', 'created', '{}', ?, 'v1', 'tiny')", (str(ws.path("runs/8")),))
    (ws.path("runs/8/adapter")).mkdir(parents=True)
    (ws.path("runs/8/adapter/adapter_config.json")).write_text("{}")
    create_version(ws, [Record("t1", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                               {"split": "test"})], parent=None, step="split")
    refresh = next(f.fn for f in on_select(blocks, w) if isinstance(f.fn, PickerRefresh))
    version, runs = refresh(None, [])
    assert version["value"] == "v1" and [v for _, v in runs["choices"]] == ["8"]
    assert runs["choices"][0][0].endswith("· created")
    R.update_run(ws, 8, status="finished")
    _, runs = refresh("v1", ["8"])
    assert runs["value"] == ["8"] and runs["choices"][0][0].endswith("· finished")


def test_each_purpose_offers_its_prompt_sources_with_one_sentence_each(ws, tab):
    w = tab.prepare
    assert [v for _, v in w.source.choices] == ["test"] and "Rate to measure" in w.note.value
    improve = prepare_ui.purpose_changed(ws, w, page(w, purpose="improve", source="test"))
    assert [v for _, v in improve[w.source]["choices"]] == ["train", "typed", "file", "served"]
    assert improve[w.source]["value"] == "train"
    note = improve[w.note]
    assert "votes and corrections become training data" in note
    assert note.count("\n- ") == 4 and "logged their text" in note                  # one sentence per source
    back = prepare_ui.purpose_changed(ws, w, page(w, purpose="measure", source="typed"))
    assert back[w.source]["value"] == "test" and "statistics only" in back[w.note]


def test_an_admin_prepares_an_evaluation_of_three_arms_to_improve_with(ws, tab, run_folder):  # noqa: F811
    w = tab.prepare
    version = split_version(ws)
    run = finished_run(ws, run_folder, version)
    data = page(w, purpose="improve", source="typed", typed="\n".join(QUESTIONS[:2]), version=version.name,
                runs=[str(run.id)], prompted=True, system_prompt="Be brief.", examples=1,
                decoding={"max_new_tokens": 4})
    out = prepare_ui.generate_clicked(ws, w, tab, data, None, progress=no_progress)
    assert "✅ Evaluation #1 is ready: 2 prompts, 3 arms" in out[w.status], out[w.status]
    assert out[tab.evaluation]["value"] == 1
    assert all("run" not in label for label, _ in out[tab.evaluation]["choices"])   # the raters' picker: blind
    evaluation = get_evaluation(ws, 1)
    assert evaluation.settings["purpose"] == "improve" and evaluation.settings["prompt_source"] == "typed"
    arms = evaluation_arms(ws, 1)
    assert [a.kind for a in arms] == ["base", "prompted", "run"] and arms[2].run_id == run.id
    assert len(arms[1].settings["examples"]) == 1 and arms[1].settings["system_prompt"] == "Be brief."

    measuring_train = prepare_ui.generate_clicked(ws, w, tab, {**data, w.source: "train", w.purpose: "measure"},
                                                  None, progress=no_progress)
    assert "serve rating to improve, not to measure" in measuring_train[w.status]
    half_endpoint = prepare_ui.generate_clicked(ws, w, tab, {**data, w.endpoint_url: "http://127.0.0.1:8000/v1"},
                                                None, progress=no_progress)
    assert "needs both its URL" in half_endpoint[w.status]


def test_with_no_run_the_base_and_the_prompted_base_answer_with_the_base_model_box(ws, tab, run_folder):  # noqa: F811
    from evaluation.judge import answering_base
    w = tab.prepare
    version = split_version(ws)
    tiny = run_folder.parent / "tiny"
    data = page(w, purpose="improve", source="typed", typed="\n".join(QUESTIONS[:2]), version=version.name, runs=[],
                prompted=True, system_prompt="Be brief.", examples=1, base_model=str(tiny),
                decoding={"max_new_tokens": 3})
    assert "with no run among the arms" in w.base_note.value and w.base_model.value == "default"
    assert "no run is among the arms" in prepare_ui.base_note(ws, w, data)[w.base_note]
    out = prepare_ui.generate_clicked(ws, w, tab, data, None, progress=no_progress)
    assert "✅ Evaluation #1 is ready: 2 prompts, 2 arms" in out[w.status], out[w.status]
    assert f"**{tiny}**: no run is among the arms" in out[w.status]
    evaluation = get_evaluation(ws, 1)
    assert [a.kind for a in evaluation_arms(ws, 1)] == ["base", "prompted"] and evaluation.base_model == "tiny"
    # judging the rest of the split later answers with the same base, without being told it again
    assert answering_base(ws, evaluation, evaluation_arms(ws, 1)) == str(tiny.resolve())

    missing = {**data, w.base_model: "./no-such-model"}
    refused = prepare_ui.generate_clicked(ws, w, tab, missing, None, progress=no_progress)
    assert "base model folder &#x27;./no-such-model&#x27; does not exist" in refused[w.status], refused[w.status]
    assert "does not exist" in prepare_ui.base_note(ws, w, missing)[w.base_note]
    assert ws.db.execute("select count(*) from evaluations").fetchone()[0] == 1


def test_a_runs_own_base_wins_over_the_base_model_box_and_the_page_says_so(ws, tab, run_folder):  # noqa: F811
    w = tab.prepare
    version = split_version(ws)
    run = finished_run(ws, run_folder, version)
    data = page(w, source="typed", purpose="improve", typed=QUESTIONS[0], version=version.name, runs=[str(run.id)],
                decoding={"max_new_tokens": 3})
    said = prepare_ui.base_note(ws, w, data)[w.base_note]
    assert f"**{run.base_model}**, the runs' own base: the base and the prompted base answer with it, not with " \
           f"'default' from the box" in said
    out = prepare_ui.generate_clicked(ws, w, tab, data, None, progress=no_progress)
    assert "✅ Evaluation #1 is ready" in out[w.status] and "not with 'default' from the box" in out[w.status]
    assert get_evaluation(ws, 1).base_model == "tiny"
    same = prepare_ui.base_note(ws, w, {**data, w.base_model: run.base_model})[w.base_note]
    assert same == f"*Base model:* **{run.base_model}**, the runs' own base."
    endpoint_only = {**data, w.runs: [], w.base: False, w.endpoint_url: "http://127.0.0.1:9/v1", w.endpoint_model: "m"}
    assert "only the endpoint answers" in prepare_ui.base_note(ws, w, endpoint_only)[w.base_note]


def test_a_rater_never_gets_the_prepare_form(ws, tab):
    assert "prepare-go" in elem_ids(tuneloop_app.build_admin_app(ws))
    rater_app = elem_ids(tuneloop_app.build_rate_app(ws))
    assert "rate-start" in rater_app and not any(i.startswith("prepare") for i in rater_app)
    with gr.Blocks(), gr.Tabs():
        raters = ui.build_rate_tab(ws)
    assert raters.prepare is None
    told = ui.start_clicked(ws, raters, page(raters, name="ana"), None)[raters.conversation]
    assert "Ask your admin to prepare one" in told and "Results" not in told
    assert "prepare one above" in ui.start_clicked(ws, tab, page(tab, name="ada"), None)[tab.conversation]
    add_user(ws, "ada", "admin", "admin-pass-1")
    add_user(ws, "rita", "rater", "rater-pass-1")
    w = tab.prepare
    data = page(w, purpose="improve", source="typed", typed="Where is my order?")
    refused = prepare_ui.generate_clicked(ws, w, tab, data, gr.Request(username="rita"), progress=no_progress)
    assert "needs the role admin" in refused[w.status]
    assert ws.db.execute("select count(*) from evaluations").fetchone()[0] == 0
    assert prepare_ui.stop_clicked(ws, w, None)[w.status] == "Nothing is being generated."


@pytest.mark.browser
def test_the_prepare_form_in_the_browser_follows_the_purpose_and_reports_in_the_page(live_app, page):
    from tests.test_arena_ui import WAIT_MS, wait_for_text
    app = live_app(args=["--no-demo"])
    page.goto(app.url)
    page.get_by_role("tab", name="Rate").click()
    page.get_by_text("Prepare an evaluation (admins)").click()
    wait_for_text(page, "#prepare-note", "Rate to measure")
    assert page.locator("#prepare-source").get_by_text("Train split").count() == 0
    page.locator("#prepare-purpose").get_by_text("Rate to improve").click()
    wait_for_text(page, "#prepare-note", "become training data")
    page.locator("#prepare-source").get_by_text("Typed here").click()
    page.locator("#prepare-typed textarea").fill("Where is my order?")
    wait_for_text(page, "#prepare-base-note", "no run")
    page.locator("#prepare-base-model textarea").fill("./no-such-model")
    page.locator("#prepare-base-model textarea").blur()
    wait_for_text(page, "#prepare-base-note", "base model folder './no-such-model' does not exist")
    page.locator("#prepare-base input").uncheck()
    page.locator("#prepare-go").click()
    wait_for_text(page, "#prepare-status", "at least two arms")
    page.wait_for_function("!document.querySelector('#rate-prompt')?.innerText.includes('at least two arms')",
                           timeout=WAIT_MS)
