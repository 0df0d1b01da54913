"""The probes of issue #20 against a live app on 127.0.0.1, over plain HTTP as an attacker would send them.

Nothing is reachable before a login but the login page; a rater or a viewer neither uploads a file nor reads
one an admin exported; only the app's own origin and host names are answered (local and hosted mode);
a removed user's session ends at once and re-adding the name does not revive it; a password change ends the
user's sessions; an idle session expires; a flood of wrong passwords is answered with 429 once past the
limit while 20 raters keep voting, and the right password does not get in while the name is locked.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import pytest

from core.users import add_user, remove_user
from core.workspace import Workspace
from curation.data.imports import import_file
from evaluation.arena import create_evaluation
from tests.browser import ROOT, start_app
from tests.hosted_client import GradioSession, RaterClient
from tests.test_arena import register_run
from tests.test_hosted import BASE_MODEL, MARKERS, RUN_ID, items, password, votes_by

ADMIN, ADMIN_PW = "ada", "admin-pw-Kx81-secret"
VIEWER, VIEWER_PW = "vic", "viewer-pw-Jq52-secret"
PUBLIC_NAME = "tune.example"
EVIL = "https://evil.example"
PREFIXES = ("", "/rate", "/playground")
# Every route a mounted Gradio app serves that reads something, as paths under the mount.
READS = ("/config", "/gradio_api/info", "/gradio_api/info?all_endpoints=true", "/gradio_api/openapi.json",
         "/gradio_api/runs", "/gradio_api/runs/", "/gradio_api/run-history/buckets", "/gradio_api/token",
         "/gradio_api/user", "/gradio_api/app_id", "/gradio_api/startup-events", "/gradio_api/deep_link",
         "/gradio_api/queue/data?session_hash=anon1234", "/gradio_api/heartbeat/anon1234",
         "/gradio_api/upload_progress?upload_id=x", "/monitoring", "/monitoring/summary", "/gradio_api/vibe-code")


def chats(n: int) -> str:
    return "".join(f'{{"messages": [{{"role": "user", "content": "Is order QX-{i} late?"}}, '
                   f'{{"role": "assistant", "content": "Order QX-{i} left today."}}]}}\n' for i in range(n))


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    """A full-mode app with users, a public name, and a 1 MB upload limit."""
    root = tmp_path_factory.mktemp("secure")
    ws = Workspace.open(root / "workspace")
    add_user(ws, ADMIN, "admin", ADMIN_PW)
    add_user(ws, VIEWER, "viewer", VIEWER_PW)
    for name in ("rita", "eve", "pat"):
        add_user(ws, name, "rater", password(name))
    register_run(ws, RUN_ID)
    orders = root / "orders.jsonl"
    orders.write_text(chats(30), encoding="utf-8")
    import_file(ws, orders)                                             # v1, for the admin to export
    small = create_evaluation(ws, "probe", items(12, "probe"), base_model=BASE_MODEL, run_id=RUN_ID, overlap=3)
    app = start_app(ws.root, ["--no-demo", "--upload-limit-mb", "1", f"--allowed-host={PUBLIC_NAME}"])
    app.ws, app.small = ws, small
    yield app
    app.stop()


def logged_in(app, prefix: str, name: str, pw: str) -> GradioSession:
    session = GradioSession(app.url, prefix)
    assert session.login(name, pw).status_code == 200
    return session


def test_before_a_login_every_mount_serves_the_login_page_and_nothing_else(hosted):
    for prefix in PREFIXES:
        anon = httpx.Client(base_url=hosted.url.rstrip("/") + prefix, timeout=60)
        page = anon.get("/")
        assert page.status_code == 200 and '"auth_required":true' in page.text
        assert "named_endpoints\":{}" in page.text.replace(" ", "")
        for path in READS + (f"/gradio_api/file={hosted.ws.db_path}", f"/gradio_api/file/{hosted.ws.db_path}"):
            got = anon.get(path)
            assert got.status_code in (401, 404), (prefix, path, got.status_code)
            for marker in (*MARKERS, "probe question", "start_clicked", "import_records"):
                assert marker not in got.text, (prefix, path)
        assert anon.post("/gradio_api/upload", files={"files": ("a.txt", b"x")}).status_code == 401
        anon.close()


def test_raters_and_viewers_upload_nothing_and_read_no_admin_file(hosted, tmp_path):
    admin = logged_in(hosted, "", ADMIN, ADMIN_PW)
    config = admin.config()
    download = next(c["id"] for c in config["components"]
                    if c["type"] == "file" and c.get("props", {}).get("label") == "Download")   # the Data tab's
    export = next(d for d in config["dependencies"] if download in d["outputs"])
    types = {c["id"]: c["type"] for c in config["components"]}
    exported = admin.call(export["id"], ["v1" if types[i] == "dropdown" else "jsonl" for i in export["inputs"]])
    assert exported.success, exported.raw
    export_path = exported.output[0]["path"]
    assert admin.http.get(f"/gradio_api/file={export_path}").status_code == 200
    uploaded = admin.http.post("/gradio_api/upload", files={"files": ("prompts.jsonl", b'{"prompt": "hi"}\n')})
    assert uploaded.status_code == 200
    upload_path = uploaded.json()[0]
    too_big = admin.http.post("/gradio_api/upload", files={"files": ("big.jsonl", b"x" * (2 * 1024 * 1024))})
    assert too_big.status_code == 413                                   # over --upload-limit-mb 1

    rater = logged_in(hosted, "/rate", "rita", password("rita"))
    viewer = logged_in(hosted, "/playground", VIEWER, VIEWER_PW)
    for session in (rater, viewer):
        assert session.http.get("/config").status_code == 200
        refused = session.http.post("/gradio_api/upload", files={"files": ("notes.txt", b"a rater's file")})
        assert refused.status_code == 403
        for path in (export_path, upload_path):
            for route in (f"/gradio_api/file={path}", f"/gradio_api/file/{path}"):
                got = session.http.get(route)
                assert got.status_code == 403 and "QX-" not in got.text, (session.prefix, route)
        # the same cookies sent to the admin app
        cross = httpx.Client(base_url=hosted.url, cookies=session.http.cookies, timeout=60)
        assert cross.get(f"/gradio_api/file={export_path}").status_code == 401
        assert cross.post("/gradio_api/upload", files={"files": ("n.txt", b"x")}).status_code == 401
        cross.close()
    for session in (admin, rater, viewer):
        session.close()


def test_only_the_apps_own_origin_gets_an_answer(hosted):
    rater = logged_in(hosted, "/rate", "pat", password("pat"))
    preflight = rater.http.options("/gradio_api/queue/join", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-credentials" not in preflight.headers
    stolen = rater.http.get("/gradio_api/token", headers={"Origin": EVIL})
    assert stolen.status_code == 403 and "token" not in stolen.text
    for origin in (f"{hosted.url.rstrip('/')}0", "http://localhost:3000", "null"):   # other local origins
        assert rater.http.get("/gradio_api/token", headers={"Origin": origin}).status_code == 403, origin
    own = rater.http.get("/gradio_api/token", headers={"Origin": hosted.url.rstrip("/")})
    assert own.status_code == 200 and own.json()["user"] == "pat"
    behind_proxy = rater.http.get("/gradio_api/token", headers={"Host": PUBLIC_NAME,
                                                               "Origin": f"https://{PUBLIC_NAME}"})
    assert behind_proxy.status_code == 200 and behind_proxy.json()["user"] == "pat"
    rater.close()


def test_a_login_form_posted_from_another_site_is_refused(hosted):
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
        forged = httpx.post(hosted.url + "rate/login", data={"username": "rita", "password": password("rita")},
                            headers=headers, timeout=60)
        assert forged.status_code == 403 and "set-cookie" not in forged.headers, headers


def test_session_cookies_are_same_site_and_secure_only_over_https(hosted):
    plain = httpx.post(hosted.url + "rate/login", data={"username": "rita", "password": password("rita")},
                       timeout=60)
    cookies = plain.headers.get_list("set-cookie")
    assert len(cookies) == 2 and all("SameSite=Lax" in c and "Secure" not in c for c in cookies), cookies
    assert not any("samesite=none" in c.lower() for c in cookies)
    # behind a TLS proxy on this machine (uvicorn trusts X-Forwarded-Proto from 127.0.0.1)
    tls = httpx.post(hosted.url + "rate/login", data={"username": "rita", "password": password("rita")},
                     headers={"X-Forwarded-Proto": "https"}, timeout=60)
    assert all("SameSite=Lax" in c and "Secure" in c for c in tls.headers.get_list("set-cookie"))


def test_a_foreign_host_header_is_refused_when_hosted(hosted):
    for host in ("rebind.attacker.example", f"{PUBLIC_NAME}.attacker.example", f"evil.example@127.0.0.1:{hosted.port}",
                 ""):
        got = httpx.get(hosted.url + "rate/", headers={"Host": host}, timeout=60)
        assert got.status_code == 400 and "--allowed-host" in got.text, host
    assert httpx.get(hosted.url + "rate/", headers={"Host": PUBLIC_NAME}, timeout=60).status_code == 200
    for host in (f"localhost:{hosted.port}", f"[::1]:{hosted.port}"):
        assert httpx.get(hosted.url + "rate/", headers={"Host": host}, timeout=60).status_code == 200, host


def test_a_removed_users_cookie_ends_at_once_and_re_adding_the_name_does_not_revive_it(hosted):
    eve = RaterClient(hosted.url, "eve", password("eve"))
    assert eve.start(hosted.small).success
    assert eve.session.http.get("/config").status_code == 200
    remove_user(hosted.ws, "eve")
    assert eve.session.http.get("/config").status_code == 401
    assert eve.session.http.post("/gradio_api/upload", files={"files": ("a.txt", b"x")}).status_code == 401
    add_user(hosted.ws, "eve", "rater", password("eve"))
    assert eve.session.http.get("/config").status_code == 401
    assert eve.vote("A").status == 401
    assert [v for v in votes_by(hosted.ws, hosted.small) if v[0] == "eve"] == []
    again = RaterClient(hosted.url, "eve", password("eve"))             # a fresh login works
    assert again.start(hosted.small).success
    again.close()
    eve.close()


def test_a_password_change_ends_the_users_sessions(hosted, tmp_path):
    pat = logged_in(hosted, "/rate", "pat", password("pat"))
    assert pat.http.get("/config").status_code == 200
    new = tmp_path / "pw.txt"
    new.write_text("a-new-password-for-pat\n")
    out = subprocess.run([sys.executable, "app.py", "--workspace", str(hosted.ws.root), "users", "passwd", "pat",
                          "--password-file", str(new)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert pat.http.get("/config").status_code == 401
    assert GradioSession(hosted.url, "/rate").login("pat", password("pat")).status_code == 400
    assert GradioSession(hosted.url, "/rate").login("pat", "a-new-password-for-pat").status_code == 200
    pat.close()


@pytest.fixture(scope="module")
def short_sessions(tmp_path_factory):
    ws = Workspace.open(tmp_path_factory.mktemp("short") / "workspace")
    add_user(ws, "rita", "rater", password("rita"))
    app = start_app(ws.root, ["--no-demo", "--session-idle-hours", "0.002"])     # 7.2 s without a request
    yield app
    app.stop()


def test_an_idle_session_expires(short_sessions):
    rita = logged_in(short_sessions, "/rate", "rita", password("rita"))
    assert rita.http.get("/config").status_code == 200
    time.sleep(8)
    assert rita.http.get("/config").status_code == 401
    rita.close()


def test_a_foreign_host_header_is_refused_in_local_mode(tmp_path):
    app = start_app(tmp_path / "workspace", [])                          # no users, the demo dataset loaded
    try:
        rebound = httpx.get(app.url + "config", headers={"Host": "rebind.attacker.example"}, timeout=60)
        assert rebound.status_code == 400 and "demo" not in rebound.text.lower()
        api = httpx.get(app.url + "gradio_api/info", headers={"Host": f"rebind.attacker.example:{app.port}"},
                        timeout=60)
        assert api.status_code == 400 and "import_records" not in api.text
        assert httpx.get(app.url + "config", headers={"Host": f"localhost:{app.port}"}, timeout=60).status_code == 200
        assert httpx.get(app.url + "config", timeout=60).status_code == 200
        forged = httpx.post(app.url + "gradio_api/upload", files={"files": ("a.txt", b"x")},
                            headers={"Origin": EVIL}, timeout=60)
        assert forged.status_code == 403
    finally:
        app.stop()


def test_a_login_flood_is_throttled_while_twenty_raters_keep_voting(tmp_path):
    ws = Workspace.open(tmp_path / "workspace")
    add_user(ws, ADMIN, "admin", ADMIN_PW)
    raters = [f"v{i:02d}" for i in range(20)]
    for name in raters:
        add_user(ws, name, "rater", password(name))
    register_run(ws, RUN_ID)
    eid = create_evaluation(ws, "flood", items(20 * 11, "flood"), base_model=BASE_MODEL, run_id=RUN_ID)
    app = start_app(ws.root, ["--no-demo"])
    try:
        clients = [RaterClient(app.url, name, password(name)) for name in raters]
        answers: list[int] = []
        locked_until: list[float] = []      # from each refusal: when its lock ends at the earliest
        errors: list[str] = []

        def guess(worker: int) -> None:
            with httpx.Client(base_url=app.url, timeout=120) as http:
                for i in range(worker, 300, 8):
                    answer = http.post("/rate/login", data={"username": ADMIN, "password": f"guess-{i}"})
                    answers.append(answer.status_code)
                    if answer.status_code == 429:   # Retry-After is the wait rounded up: the lock lasts > it - 1
                        locked_until.append(time.monotonic() + int(answer.headers["retry-after"]) - 1)

        def rate(client: RaterClient) -> None:
            try:
                assert client.start(eid).success
                for i in range(10):
                    result = client.vote(("A", "B", "tie", "both_bad")[i % 4])
                    if not (result.success and result.output[10].startswith("✅")):
                        errors.append(f"{client.name}: {result.error or result.output[10]}")
            except Exception as exc:  # a thread's failure must fail the test, not vanish
                errors.append(f"{client.name}: {exc!r}")

        guessers = [threading.Thread(target=guess, args=(w,)) for w in range(8)]
        voters = [threading.Thread(target=rate, args=(c,)) for c in clients]
        for t in guessers + voters:
            t.start()
        for t in guessers:
            t.join()
        # While the flood's lock lasts the right password gets the same answer (the lock doubles with each
        # checked failure, so on a loaded machine it may have ended before this request: then nothing is asserted).
        sent = time.monotonic()
        late = httpx.post(app.url + "rate/login", data={"username": ADMIN, "password": ADMIN_PW}, timeout=60)
        for t in voters:
            t.join()
        assert errors == []
        assert len(votes_by(ws, eid)) == 200                              # every vote stored
        assert len(answers) == 300 and set(answers) <= {400, 429}
        assert answers.count(400) <= 5 + 8                                # the limit, and a wait's single tries
        assert answers.count(429) >= 280
        if sent < max(locked_until):
            assert late.status_code == 429 and "try again in" in late.text and int(late.headers["retry-after"]) >= 1
        for client in clients:
            client.close()
    finally:
        app.stop()


def test_a_login_to_one_app_reads_nothing_of_another(hosted):
    """Cross-role, on every route: a rater's cookies at / and /playground/, a viewer's at / and /rate/."""
    sessions = {"/rate": logged_in(hosted, "/rate", "rita", password("rita")),
                "/playground": logged_in(hosted, "/playground", VIEWER, VIEWER_PW)}
    for own, session in sessions.items():
        assert session.http.get("/config").status_code == 200                   # its own app answers
        for other in (p for p in PREFIXES if p != own):
            cross = httpx.Client(base_url=hosted.url.rstrip("/") + other, cookies=session.http.cookies, timeout=60)
            page = cross.get("/", follow_redirects=False)
            assert page.status_code == 303 and page.headers["location"] == own + "/", (own, other)
            for path in READS + ("/config/", "/gradio_api/info/", f"/gradio_api/file={hosted.ws.db_path}",
                                 f"/gradio_api/file/{hosted.ws.db_path}"):
                got = cross.get(path)
                assert got.status_code in (401, 404), (own, other, path, got.status_code)
                for marker in (*MARKERS, "probe question", "start_clicked", "import_records", "ask_both"):
                    assert marker not in got.text, (own, other, path)
            join = cross.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x1234",
                                                               "event_data": None, "trigger_id": None})
            assert join.status_code == 401, (own, other)
            assert cross.post("/gradio_api/upload", files={"files": ("a.txt", b"x")}).status_code == 401
            cross.close()
    for session in sessions.values():
        session.close()


def test_every_request_body_is_capped_before_the_app_reads_it(hosted):
    rater = logged_in(hosted, "/rate", "rita", password("rita"))
    five_mib = b'{"data": ["' + b"x" * (5 * 1024 * 1024) + b'"], "fn_index": 0, "session_hash": "big1234"}'
    declared = rater.http.post("/gradio_api/queue/join", content=five_mib, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "at most 4.0 MiB" in declared.text

    def chunks():                                   # no Content-Length: the guard counts what arrives
        for start in range(0, len(five_mib), 64 * 1024):
            yield five_mib[start:start + 64 * 1024]
    streamed = rater.http.post("/gradio_api/queue/join", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "at most 4.0 MiB" in streamed.text
    assert rater.http.get("/config").status_code == 200                           # the server is fine after it
    admin = logged_in(hosted, "", ADMIN, ADMIN_PW)
    assert admin.http.post("/gradio_api/upload", files={"files": ("big.jsonl", b"x" * (5 * 1024 * 1024))}
                           ).status_code == 413                                   # --upload-limit-mb 1
    anon = httpx.post(hosted.url + "rate/gradio_api/queue/join", content=five_mib, timeout=60)
    assert anon.status_code in (401, 413)
    rater.close()
    admin.close()
