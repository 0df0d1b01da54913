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
from core.sessions import LoginThrottle, Sessions
from core.users import add_user, remove_user, set_password
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


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_when_idle_too_old_removed_or_its_password_changes(hosted_ws):
    clock = Clock()
    sessions = Sessions(hosted_ws, idle_s=60, max_s=300, clock=clock)
    for token, user in (("t-ada", "ada"), ("t-rita", "rita"), ("t-idle", "rita"), ("t-vic", "vic")):
        sessions.begin(token, user)
    assert sessions.user_of("t-rita", ("rater", "admin")) == "rita"
    assert sessions.user_of("t-rita", ("admin",)) is None          # another app's role: refused, not ended
    assert sessions.user_of("t-rita", ("rater",)) == "rita"
    for _ in range(5):                                              # active: 5 × 50 s, never idle 60 s
        clock.now += 50
        assert sessions.user_of("t-ada", ("admin",)) == "ada"
        assert sessions.user_of("t-rita", ("rater",)) == "rita"
    assert sessions.user_of("t-idle", ("rater",)) is None           # 250 s without a request
    clock.now += 51                                                 # 301 s after the login
    assert sessions.user_of("t-ada", ("admin",)) is None
    assert sessions.user_of("t-rita", ("rater",)) is None
    sessions.begin("t-vic2", "vic")
    set_password(hosted_ws, "vic", "viewer-pass-2")
    assert sessions.user_of("t-vic2", ("viewer",)) is None
    sessions.begin("t-rita2", "rita")
    remove_user(hosted_ws, "rita")
    add_user(hosted_ws, "rita", "rater", "rater-pass-1")            # the same name again
    assert sessions.user_of("t-rita2", ("rater",)) is None
    assert sessions.user_of("t-rita2", ("rater",)) is None          # and it stays ended


def test_login_throttle_locks_a_name_and_an_address_with_a_growing_wait():
    clock = Clock()
    throttle = LoginThrottle(per_user=3, per_address=5, clock=clock)
    for _ in range(3):
        assert throttle.admit("ada", "10.0.0.1") == 0
        throttle.finish("ada", "10.0.0.1", ok=False)
    assert throttle.admit("ada", "10.0.0.2") == 1.0                 # locked by name, whatever the address
    assert throttle.admit("rita", "10.0.0.1") == 0                 # another name from there still gets in
    throttle.finish("rita", "10.0.0.1", ok=True)
    clock.now += 1.01
    assert throttle.admit("ada", "10.0.0.3") == 0                   # one attempt after the wait...
    assert throttle.admit("ada", "10.0.0.4") > 0                    # ...one at a time
    throttle.finish("ada", "10.0.0.3", ok=False)
    assert 1.9 < throttle.admit("ada", "10.0.0.5") <= 2.0            # the wait doubles
    clock.now += 2.01
    assert throttle.admit("ada", "10.0.0.5") == 0
    throttle.finish("ada", "10.0.0.5", ok=True)                     # the right password clears the name
    assert throttle.admit("ada", "10.0.0.5") == 0
    throttle.finish("ada", "10.0.0.5", ok=True)
    # An address: five names guessed, then the address waits, for every name.
    for name in ("n1", "n2", "n3", "n4"):
        assert throttle.admit(name, "10.0.0.9") == 0
        throttle.finish(name, "10.0.0.9", ok=False)
    assert throttle.admit("n5", "10.0.0.9") == 0
    assert throttle.admit("n6", "10.0.0.9") > 0                     # in flight counts: no burst slips past
    throttle.finish("n5", "10.0.0.9", ok=False)
    assert throttle.admit("vic", "10.0.0.9") == 1.0


def test_the_login_throttle_forgets_failures_older_than_its_memory():
    clock = Clock()
    throttle = LoginThrottle(per_user=3, per_address=1000, forget_s=900, clock=clock)
    for i in range(500):                                            # made-up names, one guess each
        assert throttle.admit(f"nobody{i}", f"10.1.{i // 250}.{i % 250}") == 0
        throttle.finish(f"nobody{i}", f"10.1.{i // 250}.{i % 250}", ok=False)
    for _ in range(3):
        throttle.admit("ada", "10.0.0.1")
        throttle.finish("ada", "10.0.0.1", ok=False)                # ada locked
    assert len(throttle._state) == 1002
    clock.now += 901
    throttle.admit("zed", "10.0.0.2")
    throttle.finish("zed", "10.0.0.2", ok=False)
    assert set(throttle._state) == {("user", "zed"), ("address", "10.0.0.2")}
    clock.now += 1
    assert throttle.admit("ada", "10.0.0.1") == 0                   # ada's old failures went with the rest
