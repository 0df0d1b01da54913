"""The UI kit the tabs share: errors shown in the page, who is calling, per-session stop switches, and
pickers whose "current" is always the current version."""
from __future__ import annotations

import asyncio
import concurrent.futures

import gradio as gr
import pytest

from core.access import AccessDenied
from core.errors import TuneloopError
from core.users import add_user
from curation.data.versions import create_version, set_current
from tests.conftest import chat
from curation.data.records import Record
from ui.kit import CancelRegistry, caller_name, error_markdown, picker_updates, show_errors, version_picker


def refuse(*_):
    raise TuneloopError("line 3: 'messages' must be a list\nfix the file and import it again")


def run_elsewhere(coroutine):
    """Run a coroutine to the end on a thread of its own (this one may already run an event loop: Playwright's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_show_errors_turns_a_tuneloop_error_into_a_page_message_for_every_kind_of_handler():
    def plain():
        refuse()

    def generator():
        yield 1
        refuse()

    async def coroutine():
        refuse()

    async def async_generator():
        yield 1
        refuse()

    with pytest.raises(gr.Error, match="line 3"):
        show_errors(plain)()
    with pytest.raises(gr.Error, match="line 3"):
        list(show_errors(generator)())
    with pytest.raises(gr.Error, match="line 3"):
        run_elsewhere(show_errors(coroutine)())

    async def drain():
        return [x async for x in show_errors(async_generator)()]

    with pytest.raises(gr.Error, match="line 3"):
        run_elsewhere(drain())
    with pytest.raises(ValueError):                       # only the project's errors are the user's to read
        show_errors(lambda: int("x"))()
    assert error_markdown(TuneloopError("a\nb")) == "**⚠️ a**\n\n- b"


def test_caller_name_is_the_login_else_the_typed_name_else_local(ws):
    assert caller_name(ws, None) == "local"
    assert caller_name(ws, gr.Request(), "  ana ") == "ana"
    with pytest.raises(TuneloopError, match="type your name"):
        caller_name(ws, None, "", missing="type your name")
    add_user(ws, "ada", "admin", "admin-pass-1")
    assert caller_name(ws, gr.Request(username="ada"), "someone else") == "ada"
    with pytest.raises(AccessDenied, match="please log in"):
        caller_name(ws, gr.Request(), "ana")


def test_a_session_stops_only_its_own_work():
    stops = CancelRegistry()
    mine, theirs = gr.Request(session_hash="a"), gr.Request(session_hash="b")
    my_work, their_work = stops.start(mine), stops.start(theirs)
    assert stops.cancel(mine) and my_work.is_set() and not their_work.is_set()
    assert not stops.cancel(mine)                         # already stopping
    stops.finish(mine, my_work)
    assert not stops.cancel(mine) and stops.cancel(theirs)


def test_pickers_keep_a_choice_that_still_exists_and_mark_the_current_version(ws):
    for i in range(2):
        create_version(ws, [Record.from_dict(chat(f"q{i}", f"a{i}", id=f"r{i}"))], parent=None, step="import")
    with gr.Blocks():
        picker = version_picker(ws, "Version")
    assert picker.value == "v2"
    set_current(ws, "v1")
    kept, = picker_updates([picker], ["v2"])
    assert kept["value"] == "v2" and kept["choices"][1][0].startswith("v1 (current)")
    fallback, = picker_updates([picker], ["v9"])
    assert fallback["value"] == "v1"


def test_a_preselected_version_follows_the_current_one_and_a_picked_one_stays(ws):
    for i in range(2):
        create_version(ws, [Record.from_dict(chat(f"q{i}", f"a{i}", id=f"p{i}"))], parent=None, step="import")
    with gr.Blocks():
        picker = version_picker(ws, "Version")
    assert picker.value == "v2" and picker.tuneloop_chosen.value is None
    create_version(ws, [Record.from_dict(chat("q9", "a9", id="p9"))], parent=None, step="import")
    followed, = picker_updates([picker], ["v2"], [None])          # shown, never picked: the new current
    assert followed["value"] == "v3"
    kept, = picker_updates([picker], ["v2"], ["v2"])               # picked by the user: stays
    assert kept["value"] == "v2"


def test_a_multi_select_nobody_touched_offers_what_appeared_since(ws):
    from ui.kit import picker
    runs: list[tuple[str, str]] = []
    with gr.Blocks():
        made = picker(lambda: list(runs), lambda: runs[0][1] if runs else None, label="Runs", multiselect=True)
    assert made.choices == []
    runs.append(("#1 round 1 · finished", "1"))
    offered, = picker_updates([made], [[]], [None])                # nothing picked yet: the newest run
    assert offered["value"] == ["1"]
    runs.insert(0, ("#2 round 2 · finished", "2"))
    assert picker_updates([made], [["1"]], [["1"]])[0]["value"] == ["1"]      # the user's choice stays


def test_the_split_picker_offers_a_version_made_from_a_split_such_as_merged_corrections(ws):
    first = create_version(ws, [Record.from_dict(chat("q", "a", id="s1"))], parent=None, step="import")
    split = create_version(ws, [Record.from_dict(chat("q", "a", id="s1"))], parent=first.id, step="split")
    with gr.Blocks():
        picker = version_picker(ws, "Split", splits_only=True)
    assert picker.value == split.name
    merged = create_version(ws, [Record.from_dict(chat("q2", "a2", id="s2"))], parent=split.id, step="merge")
    assert picker_updates([picker], [split.name], [None])[0]["value"] == merged.name
    create_version(ws, [Record.from_dict(chat("q3", "a3", id="s3"))], parent=None, step="import")   # no split
    assert picker_updates([picker], [split.name], [None])[0]["value"] == split.name
