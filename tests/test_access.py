"""The server-side role check: every handler of each app refuses a caller whose role that app does not allow,
even one who reaches the handler directly (the login of another app, a user whose role changed).

The live-app tests in test_hosted.py show that the logins keep raters out of the admin app; these call the
guarded handlers themselves, so they fail if ``check_role`` stops checking.
"""
from __future__ import annotations

import asyncio
import inspect

import gradio as gr
import pytest

import app as tuneloop_app
from core.users import add_user
from ui.access import guard_handlers


@pytest.fixture
def hosted_ws(ws):
    add_user(ws, "ada", "admin", "admin-pass-1")
    add_user(ws, "rita", "rater", "rater-pass-1")
    add_user(ws, "vic", "viewer", "viewer-pass-1")
    return ws


def guarded(build, ws, roles):
    blocks = build(ws)
    guard_handlers(blocks, ws, roles)
    fns = [f.fn for f in (blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns) if f.fn is not None]
    assert len(fns) > 3
    return fns


def refusal(fn, username: str) -> str:
    """The message a handler gives ``username`` when it is called directly with their request."""
    request = gr.Request(username=username, session_hash="direct-call")
    with pytest.raises(gr.Error) as refused:
        result = fn(request)
        if inspect.isgenerator(result):
            next(result)
        elif inspect.isasyncgen(result):
            asyncio.run(anext(result))
        elif inspect.iscoroutine(result):
            asyncio.run(result)
    return str(refused.value)


def test_every_admin_handler_refuses_a_rater_and_a_viewer(hosted_ws):
    for fn in guarded(tuneloop_app.build_admin_app, hosted_ws, ("admin",)):
        for user, role in (("rita", "rater"), ("vic", "viewer")):
            assert "may not do this here (needs the role admin)" in refusal(fn, user), (fn.__name__, role)


def test_every_rate_handler_refuses_a_viewer(hosted_ws):
    for fn in guarded(tuneloop_app.build_rate_app, hosted_ws, ("rater", "admin")):
        assert "needs the role rater or admin" in refusal(fn, "vic"), fn.__name__


def test_every_playground_handler_refuses_a_rater(hosted_ws):
    for fn in guarded(tuneloop_app.build_viewer_app, hosted_ws, ("viewer", "admin")):
        assert "needs the role viewer or admin" in refusal(fn, "rita"), fn.__name__


def test_the_allowed_role_gets_through(hosted_ws):
    calls = []
    with gr.Blocks() as blocks:
        box = gr.Textbox()
        box.submit(lambda text: calls.append(text) or text, box, box)
    guard_handlers(blocks, hosted_ws, ("rater", "admin"))
    fn = next(iter(blocks.fns.values())).fn
    assert fn("hello", gr.Request(username="rita")) == "hello"
    assert fn("again", gr.Request(username="ada")) == "again"
    assert "needs the role rater or admin" in refusal(lambda request: fn("no", request), "vic")
    assert calls == ["hello", "again"]
