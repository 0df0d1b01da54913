"""SessionGuard in-process, in front of a small app that records what reaches it: request bodies are capped before
the app reads them (declared or streamed), and a login the throttle refuses is answered after a pause, so that a
flood of refused guesses cannot take the event loop from the raters (issue #20, items 3 and 10)."""
from __future__ import annotations

import asyncio
import threading

import httpx

from core.sessions import LoginThrottle, Sessions
from core.users import add_user
from ui import access
from ui.access import MountRule, SessionGuard

LIMIT = 1024


class Recorder:
    """An ASGI app that reads the whole body and answers how many bytes it got."""

    def __init__(self):
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("the client went away")   # as Starlette's ClientDisconnect
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        answer = str(len(body)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length",
                                                                             str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


def guard(ws, app, throttle=None) -> SessionGuard:
    return SessionGuard(app, mounts=[MountRule("/", ("rater",), files=False, max_body=LIMIT)],
                        hosts={"testserver"}, named_hosts=set(),
                        sessions=Sessions(ws, idle_s=60, max_s=600) if throttle else None, throttle=throttle)


def run(coroutine):
    """``asyncio.run`` in a thread of its own: a browser test earlier in the session (Playwright's sync API) can
    leave an event loop set in the main thread, where ``asyncio.run`` refuses to start."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def send(asgi, method: str, path: str, **kw) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://testserver") as c:
            return await c.request(method, path, **kw)
    return run(go())


def test_a_body_over_the_cap_is_refused_declared_or_streamed_and_one_under_it_passes_whole(ws):
    app = Recorder()
    guarded = guard(ws, app)
    assert send(guarded, "POST", "/x", content=b"y" * LIMIT).text == str(LIMIT)
    assert app.bodies == [b"y" * LIMIT]
    declared = send(guarded, "POST", "/x", content=b"y" * (LIMIT + 1))
    assert declared.status_code == 413 and "at most" in declared.json()["detail"]
    assert len(app.bodies) == 1                                    # refused before the app was called

    async def chunks():                                            # no Content-Length
        for _ in range(4):
            yield b"z" * 400
    streamed = send(guarded, "POST", "/x", content=chunks())
    assert streamed.status_code == 413 and len(app.bodies) == 1   # cut off once past the cap, never whole
    assert send(guarded, "POST", "/x", headers={"content-length": "12abc"}, content=b"").status_code == 413


def test_a_login_the_throttle_refuses_is_answered_after_a_pause(ws, monkeypatch):
    add_user(ws, "ada", "admin", "admin-pass-1")
    throttle = LoginThrottle(per_user=1, per_address=100, base_s=60)
    throttle.admit("ada", "127.0.0.1")
    throttle.finish("ada", "127.0.0.1", ok=False)                  # locked for 60 s
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(seconds, *args):
        pauses.append(seconds)
        await real_sleep(0)
    monkeypatch.setattr(access.asyncio, "sleep", recorded)
    app = Recorder()
    refused = send(guard(ws, app, throttle), "POST", "/login", data={"username": "ada", "password": "admin-pass-1"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 60
    assert pauses == [access.REFUSED_LOGIN_PAUSE_S] and app.bodies == []


def test_password_checks_run_in_the_login_threads_not_on_the_event_loop(ws, monkeypatch):
    add_user(ws, "ada", "admin", "admin-pass-1")
    ran_in: list[str] = []
    real = access.authenticate

    def recorded(*args):
        ran_in.append(threading.current_thread().name)
        return real(*args)
    monkeypatch.setattr(access, "authenticate", recorded)

    async def login(password: str) -> tuple[bool, str]:
        return await access.password_check(ws, ("admin",))("ada", password), threading.current_thread().name
    (right, loop_thread), (wrong, _) = run(login("admin-pass-1")), run(login("not-it-at-all"))
    assert right and not wrong
    assert len(ran_in) == 2 and all(name.startswith("tuneloop-login") and name != loop_thread for name in ran_in)


class AnswersFirst:
    """An ASGI app that starts its answer before it reads the body, then reads it all and finishes the answer."""

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"begun;", "more_body": True})
        got, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            got += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.body", "body": b"ended"})


def test_a_body_cut_off_after_the_app_began_its_answer_still_gets_that_whole_answer(ws):
    """Issue #20: the cap never leaves a response unfinished. Once the app has begun answering it cannot be sent
    a 413 instead, so it finishes its own answer (it was told the client went away); nothing is dropped."""
    async def chunks():                                            # no Content-Length, past the cap
        for _ in range(4):
            yield b"z" * 400
    answer = send(guard(ws, AnswersFirst()), "POST", "/x", content=chunks())
    assert answer.status_code == 200 and answer.text == "begun;ended"
