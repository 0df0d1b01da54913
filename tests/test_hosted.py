"""Proofs against a live hosted app on 127.0.0.1, over plain HTTP as a script would send it.

Blinding holds in what a rater receives, a rater reaches no admin handler, nobody reaches anything
without a login, 50 raters at once lose or double no vote, a SIGKILL loses no acknowledged vote, bad
input is refused or stored as inert text, and the server log holds no secrets.

The model names are distinctive (``ZEBRAWOLF``, ``QUOKKAFIN``) so that any leak is a plain substring.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import httpx
import pytest

from core.users import add_user, remove_user
from core.workspace import Workspace
from evaluation import arena
from evaluation.arena import EvalItem, create_evaluation
from tests.browser import start_app
from tests.test_arena import register_run
from tests.hosted_client import GradioSession, RaterClient

BASE_MODEL = "ZEBRAWOLF-base-9"
RUN_ID = 7314159       # a run id no page would show by chance
MARKERS = ("ZEBRAWOLF", "QUOKKAFIN")
ADMIN, ADMIN_PW = "ada", "admin-pw-Kx81-secret"
VIEWER, VIEWER_PW = "vic", "viewer-pw-Jq52-secret"
CROWD = [f"r{i:02d}" for i in range(50)]
SOLO = ("rita", "fay", "rob", "lou")
PII_COMMENT = "call me back on +1 415 555 0199 or jane.doe@example.com"
SCRIPT = "<script>alert('owned')</script><img src=x onerror=alert(1)>"
RATE_FNS = {"start_clicked", "vote_clicked", "vote_clicked_1", "vote_clicked_2", "vote_clicked_3", "lambda",
            "refresh_choices", "refresh_choices_1", "logged_in_as"}


def password(name: str) -> str:
    return f"pw-{name}-Zt4-secret"


def items(n: int, tag: str) -> list[EvalItem]:
    return [EvalItem(prompt_id=f"{tag}{i}", messages=[{"role": "user", "content": f"{tag} question {i}?"}],
                     base_response=f"first wording of answer {i}", finetuned_response=f"second wording of answer {i}")
            for i in range(n)]


def table_counts(ws: Workspace) -> dict[str, int]:
    tables = [r[0] for r in ws.db.execute("select name from sqlite_master where type='table'")]
    return {t: ws.db.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def votes_by(ws: Workspace, evaluation_id: int) -> list[tuple[str, str, int]]:
    """(rater, question, pair id) of every stored vote in an evaluation."""
    rows = ws.db.execute(
        "select a.rater, p.messages, p.id from eval_votes v join eval_assignments a on a.id=v.assignment_id"
        " join eval_pairs p on p.id=a.pair_id where p.evaluation_id=?", (evaluation_id,)).fetchall()
    return [(r[0], json.loads(r[1])[-1]["content"], r[2]) for r in rows]


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    """A full-mode app with users: admin, viewer, 4 raters for the probes, 50 for the crowd."""
    root = tmp_path_factory.mktemp("hosted")
    ws = Workspace.open(root / "workspace")
    add_user(ws, ADMIN, "admin", ADMIN_PW)
    add_user(ws, VIEWER, "viewer", VIEWER_PW)
    for name in (*SOLO, *CROWD):
        add_user(ws, name, "rater", password(name))
    register_run(ws, RUN_ID)
    small = create_evaluation(ws, "blind check", items(8, "probe"), base_model=BASE_MODEL, run_id=RUN_ID, overlap=4)
    crowd = create_evaluation(ws, "crowd", items(len(CROWD) * 21, "crowd"), base_model=BASE_MODEL, run_id=RUN_ID)
    app = start_app(ws.root, ["--no-demo"])
    app.ws, app.small, app.crowd = ws, small, crowd
    yield app
    app.stop()


def rater(app, name: str) -> RaterClient:
    return RaterClient(app.url, name, password(name))


def admin_session(app) -> GradioSession:
    s = GradioSession(app.url, "")
    assert s.login(ADMIN, ADMIN_PW).status_code == 200
    return s


def test_a_rater_receives_no_model_identity_before_voting(hosted):
    r = rater(hosted, "rita")
    http = r.session.http
    received = [http.get("/").text, http.get("/config").text, http.get("/gradio_api/info").text,
                http.get("/gradio_api/openapi.json").text]
    config = r.session.config()
    assert {d["api_name"] for d in config["dependencies"]} == RATE_FNS
    types = {c["id"]: c["type"] for c in config["components"]}
    for dep in config["dependencies"]:               # every handler of the Rate app, except the votes
        if dep["api_name"].startswith("vote_clicked"):
            continue
        data = [hosted.small if types[i] == "dropdown" else "" for i in dep["inputs"]]
        for queued in (None, True, False):          # as the page sends it, through the queue, plain POST
            result = r.session.call(dep["id"], data, queued=queued)
            # api_open=False: a queued event refuses the plain POST that would skip the queue's limits.
            refused_direct = queued is False and dep.get("queue") is not False and result.status == 404
            assert result.success or refused_direct, result.raw
            received.append(result.raw)
    start = r.start(hosted.small)
    received.append(start.raw)
    assert "question" in r.question
    for text in received:
        for marker in MARKERS:
            assert marker not in text

    voted_on = r.question
    vote = r.vote("A")
    assert vote.success and r.acknowledged[-1].question == voted_on
    reveal = vote.output[10]
    side = hosted.ws.db.execute(
        "select a.second_side from eval_votes v join eval_assignments a on a.id=v.assignment_id"
        " where a.rater='rita' order by v.id desc limit 1").fetchone()[0]
    expected = (f"A was fine-tuned (run {RUN_ID}); B was base ({BASE_MODEL})" if side == "A"
                else f"A was base ({BASE_MODEL}); B was fine-tuned (run {RUN_ID})")
    assert expected in reveal                        # after the vote: who was who, for that pair
    assert vote.raw.count(str(RUN_ID)) == 1 and vote.raw.count(BASE_MODEL) == 1   # and nothing about the next one
    assert r.question != voted_on
    resumed = r.start(hosted.small)                  # the next pair, fetched again: blind again
    for marker in MARKERS:
        assert marker not in resumed.raw
    r.close()


def test_b_a_rater_reaches_no_admin_function(hosted):
    probe = GradioSession(hosted.url, "")
    assert probe.login("rita", password("rita")).status_code == 200       # logged in to /rate/, not to /
    assert probe.http.get("/config").status_code == 401                   # the admin app still says no
    assert GradioSession(hosted.url, "/playground").login("rita", "wrong-password").status_code == 400

    admin = admin_session(hosted)
    admin_deps = admin.config()["dependencies"]
    assert len(admin_deps) > 20
    r = rater(hosted, "rita")
    before = table_counts(hosted.ws)
    # the rater's cookies from /rate/ sent to the admin app at /
    as_rater = httpx.Client(base_url=hosted.url, cookies=r.session.http.cookies, timeout=60)
    assert as_rater.get("/config").status_code == 401
    for dep in admin_deps:
        join = as_rater.post("/gradio_api/queue/join", json={
            "data": [None] * len(dep["inputs"]), "fn_index": dep["id"], "session_hash": "rater1234",
            "event_data": None, "trigger_id": None})
        assert join.status_code == 401, dep["api_name"]
    for name in {d["api_name"] for d in admin_deps if d.get("api_name")}:
        assert as_rater.post(f"/gradio_api/call/{name}", json={"data": []}).status_code == 401, name
        assert as_rater.post(f"/gradio_api/run/{name}", json={"data": []}).status_code == 401, name
    assert table_counts(hosted.ws) == before
    as_rater.close()

    # A rater removed while logged in is refused at once: the session ends with the user.
    lou = rater(hosted, "lou")
    lou.session.config()
    remove_user(hosted.ws, "lou")
    refused = lou.start(hosted.small)
    assert not refused.success and refused.status == 401
    add_user(hosted.ws, "lou", "rater", password("lou"))
    assert table_counts(hosted.ws) == before
    lou.close()
    r.close()
    admin.close()


def test_c_unauthenticated_calls_are_refused(hosted, tmp_path):
    admin = admin_session(hosted)
    names = {d["api_name"] for d in admin.config()["dependencies"] if d.get("api_name")} | RATE_FNS
    upload = tmp_path / "prompts.jsonl"
    upload.write_text('{"prompt": "hello"}\n')
    before = table_counts(hosted.ws)
    for prefix in ("", "/rate", "/playground"):
        anon = httpx.Client(base_url=hosted.url.rstrip("/") + prefix, timeout=60)
        for page in (anon.get("/"), anon.get("/", params={"all_endpoints": "true"})):
            assert page.status_code == 200 and '"auth_required":true' in page.text   # the login page...
            assert not [n for n in names if f'"/{n}"' in page.text]                # ...and no API description
            for marker in MARKERS:
                assert marker not in page.text
        assert anon.get("/config").status_code == 401
        assert anon.get("/gradio_api/info").status_code == 401
        assert anon.get("/gradio_api/queue/data", params={"session_hash": "anon1234"}).status_code == 401
        join = anon.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "anon1234",
                                                         "event_data": None, "trigger_id": None})
        assert join.status_code == 401
        for name in sorted(names):
            assert anon.post(f"/gradio_api/call/{name}", json={"data": []}).status_code == 401, (prefix, name)
            assert anon.post(f"/gradio_api/run/{name}", json={"data": []}).status_code == 401, (prefix, name)
        with upload.open("rb") as fh:
            assert anon.post("/gradio_api/upload", files={"files": fh}).status_code == 401
        assert anon.get(f"/gradio_api/file={hosted.ws.db_path}").status_code == 401
        assert anon.post("/login", data={"username": ADMIN, "password": "wrong-password"}).status_code == 400
        anon.close()
    assert table_counts(hosted.ws) == before
    admin.close()


def test_d_fifty_raters_vote_twenty_pairs_each(hosted):
    clients = [rater(hosted, name) for name in CROWD]
    errors: list[str] = []

    def rate(client: RaterClient) -> None:
        try:
            assert client.start(hosted.crowd).success
            for i in range(20):
                result = client.vote(("A", "B", "tie", "both_bad")[i % 4])
                if not (result.success and result.output[10].startswith("✅")):
                    errors.append(f"{client.name}: {result.error or result.output[10]}")
        except Exception as exc:  # a thread's failure must fail the test, not vanish
            errors.append(f"{client.name}: {exc!r}")

    threads = [threading.Thread(target=rate, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stored = votes_by(hosted.ws, hosted.crowd)
    assert len(stored) == 1000
    assert len({pair for _, _, pair in stored}) == 1000              # overlap 1: no pair judged twice
    for client in clients:
        mine = {q for who, q, _ in stored if who == client.name}
        assert len(mine) == 20
        assert {v.question for v in client.acknowledged} == mine       # exactly what each was told
        client.close()


def test_f_bad_input_is_refused_or_inert_and_changes_nothing(hosted):
    ws = hosted.ws
    fay = rater(hosted, "fay")
    rob = rater(hosted, "rob")
    assert fay.start(hosted.small).success and rob.start(hosted.small).success
    rob_open = arena.rater_progress(ws, hosted.small, "rob").open_assignment
    fay_open = arena.rater_progress(ws, hosted.small, "fay").open_assignment
    before = table_counts(ws)

    # The pair a vote is for comes from the server's session state, never from the request: a fresh
    # session naming rob's (or an unknown) assignment gets a refusal, and nothing is stored.
    fay_elsewhere = GradioSession(hosted.url, "/rate")
    fay_elsewhere.login("fay", password("fay"))
    for forged in (rob_open, 10 ** 9, "1 or 1=1"):
        result = fay_elsewhere.call("vote_clicked", [forged, "", "", ""])
        assert result.success and "no pair on screen" in result.output[10]
    # ...and in fay's own session a forged id is ignored: the vote lands on fay's pair, not rob's.
    forged = fay.session.call("vote_clicked_1", [rob_open, "", "", ""])
    assert forged.output[10].startswith("✅")
    assert ws.db.execute("select count(*) from eval_votes where assignment_id=?", (rob_open,)).fetchone()[0] == 0
    assert ws.db.execute("select count(*) from eval_votes where assignment_id=?", (fay_open,)).fetchone()[0] == 1
    before["eval_votes"] += 1
    before["eval_assignments"] += 1                     # fay's next pair was issued with the reply
    fay._read_pair(forged)
    fay_elsewhere.close()

    # A handler that does not exist (there is no "C" button), and a 1 MB comment: refused, nothing stored.
    with httpx.Client(base_url=hosted.url.rstrip("/") + "/rate", cookies=fay.session.http.cookies) as once:
        missing = once.post("/gradio_api/queue/join", json={   # Gradio answers 500 and drops the connection
            "data": ["C"], "fn_index": 999, "session_hash": fay.session.session_hash, "event_data": None,
            "trigger_id": None})
    assert missing.status_code >= 400 or "error" in missing.text.lower()
    on_screen = fay.question
    huge = fay.vote("A", comment="x" * 1_000_000)
    assert "1,000,000 characters" in huge.output[10] and "not counted" in huge.output[10]
    huge = fay.vote("B", corrected="y" * 1_000_000)
    assert "1,000,000 characters" in huge.output[10]
    assert table_counts(ws) == before
    assert fay.question == on_screen                    # still the same pair on screen

    # Markup in a comment and a corrected answer: stored as the exact text, never echoed as markup.
    vote = fay.vote("both_bad", comment=SCRIPT + " " + PII_COMMENT, corrected=f"<b>bold?</b> {SCRIPT}")
    assert vote.output[10].startswith("✅") and "<script" not in vote.raw
    row = ws.db.execute("select comment, corrected_answer from eval_votes order by id desc limit 1").fetchone()
    assert row["comment"] == SCRIPT + " " + PII_COMMENT and row["corrected_answer"] == f"<b>bold?</b> {SCRIPT}"
    admin = admin_session(hosted)
    results = admin.call("show", [hosted.small, "majority"])
    assert results.success and "<script" not in results.raw and "onerror=alert" not in results.raw
    admin.close()

    # In-process, the same checks hold for what the HTTP route cannot even express.
    with pytest.raises(arena.VoteRefused, match="not a verdict"):
        arena.record_vote(ws, rob_open, "rob", "C")
    with pytest.raises(arena.VoteRefused, match="not issued to you"):
        arena.record_vote(ws, rob_open, "fay", "A")
    with pytest.raises(arena.VoteRefused, match="not issued to you"):
        arena.record_vote(ws, 10 ** 9, "fay", "A")
    fay.close()
    rob.close()


def test_g_server_log_is_structured_and_leaks_nothing(hosted):
    # Things worth logging happen: a wrong password, a refused caller, a comment with personal data.
    assert GradioSession(hosted.url, "/rate").login("rita", "not-my-password").status_code == 400
    lou = rater(hosted, "lou")
    assert lou.start(hosted.small).success
    assert lou.vote("tie", comment=PII_COMMENT).output[10].startswith("✅")
    remove_user(hosted.ws, "lou")
    assert not lou.start(hosted.small).success
    lou.close()
    time.sleep(0.5)
    log = hosted.logs()
    lines = [line for line in log.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r["level"] == "WARNING" and "lou" in r["msg"] for r in records)        # the refusal is there
    for secret in (ADMIN_PW, VIEWER_PW, "not-my-password", "wrong-password", *(password(n) for n in (*SOLO, *CROWD)),
                   *MARKERS, "jane.doe@example.com", "555 0199", "<script", "question", "wording of answer"):
        assert secret not in log, secret
    assert lines[0].startswith("Tuneloop (hosted, logins on)")
    assert len(records) == len(lines) - 1                   # after the banner, one JSON object per line


def test_e_acknowledged_votes_survive_sigkill_and_the_rater_only_api_has_no_admin_function(tmp_path):
    ws = Workspace.open(tmp_path / "workspace")
    names = [f"k{i}" for i in range(8)]
    for name in names:
        add_user(ws, name, "rater", password(name))
    register_run(ws, RUN_ID)
    eid = create_evaluation(ws, "crash", items(400, "crash"), base_model=BASE_MODEL, run_id=RUN_ID)
    app = start_app(ws.root, ["--rater-only"])
    config = GradioSession(app.url, "")
    config.login("k0", password("k0"))
    assert {d["api_name"] for d in config.config()["dependencies"]} == RATE_FNS
    config.close()

    clients = [RaterClient(app.url, name, password(name), prefix="") for name in names]
    stop = threading.Event()

    def rate(client: RaterClient) -> None:
        try:
            client.start(eid)
            while not stop.is_set():
                client.vote("A")
        except (httpx.HTTPError, OSError):  # the server died under us: expected
            return

    threads = [threading.Thread(target=rate, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    while sum(len(c.acknowledged) for c in clients) < 80:
        time.sleep(0.05)
    app.stop("kill")                                    # SIGKILL, mid-vote
    stop.set()
    for t in threads:
        t.join()
    acknowledged = {(c.name, v.question) for c in clients for v in c.acknowledged}
    with sqlite3.connect(ws.db_path) as db:             # what is on disk after the kill, read cold
        on_disk = {(r[0], json.loads(r[1])[-1]["content"]) for r in db.execute(
            "select a.rater, p.messages from eval_votes v join eval_assignments a on a.id=v.assignment_id"
            " join eval_pairs p on p.id=a.pair_id")}
    assert acknowledged <= on_disk

    restarted = start_app(ws.root, ["--rater-only"])
    try:
        for name in names:
            again = RaterClient(restarted.url, name, password(name), prefix="")
            assert again.start(eid).success
            for _ in range(3):
                assert again.vote("B").output[10].startswith("✅")
            again.close()
    finally:
        restarted.stop()
    stored = votes_by(Workspace.open(ws.root), eid)
    assert acknowledged <= {(who, q) for who, q, _ in stored}
    assert len(stored) == len({pair for _, _, pair in stored})   # no pair voted twice
    assert len(stored) >= len(acknowledged) + 3 * len(names)


def test_h_each_role_logging_in_at_the_root_lands_on_its_page(hosted):
    for name, secret, home, title in (("fay", password("fay"), "/rate/", "rating"),
                                      (VIEWER, VIEWER_PW, "/playground/", "playground")):
        root = GradioSession(hosted.url, "")
        assert root.login(name, "not-my-password").status_code == 400       # a wrong password is still wrong
        assert root.login(name, secret).status_code == 200
        landing = root.http.get("/", follow_redirects=False)                # what the login page's reload gets
        assert landing.status_code == 303 and landing.headers["location"] == home
        page = root.http.get("/", follow_redirects=True)
        assert page.status_code == 200 and f"Tuneloop · {title}" in page.text
        assert '"auth_required":true' not in page.text
        root.close()
    admin = admin_session(hosted)
    assert admin.http.get("/", follow_redirects=False).status_code == 200   # an admin stays at the dashboard
    admin.close()


def test_i_every_page_says_who_is_logged_in_and_logs_out(hosted):
    r = rater(hosted, "rob")
    shown = r.session.call("logged_in_as", [])
    assert shown.success and "logged in as <b>rob</b> (rater)" in shown.output[0] and "href='logout'" in shown.output[0]
    rate_page = r.session.config()
    hidden = [c for c in rate_page["components"] if c.get("props", {}).get("elem_id") == "rate-rater"]
    assert hidden and hidden[0]["props"]["visible"] is False     # no "Your name" box once logins are on
    out = r.session.http.get("/logout", follow_redirects=False)
    assert out.status_code == 302
    assert r.session.http.get("/config").status_code == 401      # the session ended on the server
    admin = admin_session(hosted)
    assert "logged in as <b>ada</b> (admin)" in admin.call("logged_in_as", []).output[0]
    admin.close()
    r.close()


def test_j_an_admin_changes_a_password_without_removing_the_user(hosted, tmp_path):
    from app import main as app_main
    add_user(hosted.ws, "pat", "rater", password("pat"))
    before = rater(hosted, "pat")
    assert before.session.config()
    users = table_counts(hosted.ws)["users"]
    secret = tmp_path / "pw"
    secret.write_text("pat-new-Pw7-secret\n")
    assert app_main(["--workspace", str(hosted.ws.root), "users", "passwd", "pat", "--password-file", str(secret)]) == 0
    assert before.session.http.get("/config").status_code == 401            # the old session has ended
    assert GradioSession(hosted.url, "/rate").login("pat", password("pat")).status_code == 400
    again = RaterClient(hosted.url, "pat", "pat-new-Pw7-secret")
    assert again.session.config() and table_counts(hosted.ws)["users"] == users
    again.close()
    before.close()


def test_k_a_keep_alive_connection_idle_longer_than_a_client_keeps_one_is_still_answered(hosted):
    """Issue #20: at uvicorn's default 5 s keep-alive, equal to httpx's own expiry, a vote sent on a connection
    idle for just under 5 s met the server closing it and was lost with "Server disconnected without sending a
    response" (6 of 560 votes sent 4.97-5.0 s after the last; none at 75 s or with the client's expiry at 4 s).
    The server must hold an idle connection longer than clients do, so that the client always gives up first:
    a request on one connection idle 6 s (past httpx's 5 s) is answered, on that same connection."""
    import http.client
    import socket
    conn = http.client.HTTPConnection("127.0.0.1", hosted.port, timeout=30)
    conn.request("GET", "/rate/config")
    first = conn.getresponse()
    first.read()
    assert first.status == 401 and not first.will_close      # a keep-alive answer: the connection stays open
    sock = conn.sock
    time.sleep(6)
    conn.request("GET", "/rate/config")
    assert conn.sock is sock                                   # the same connection, not a new one
    try:
        again = conn.getresponse()
    except (http.client.RemoteDisconnected, ConnectionResetError, socket.timeout) as exc:
        pytest.fail(f"the server closed a connection idle for 6 s: {exc!r}")
    again.read()
    assert again.status == 401
    conn.close()
