"""The endpoint's login and request-log retention, over HTTP with a real server: an API key read from an
environment variable (401 in OpenAI's shape without it), no non-loopback host without one, and the log pruned
by age and rows on start and hourly (rows that feedback names are kept)."""
from __future__ import annotations

import time

import httpx
import pytest

from core.errors import TuneloopError
from training import cli
from training import serve as S
from tests.test_serve import QUESTION, _free_port, models, runs, serving  # noqa: F401  (fixtures)

KEY = "sk-test-0123456789abcdef"


def test_an_api_key_guards_every_route_with_openai_shaped_401s(ws, runs, monkeypatch):
    monkeypatch.setenv("TUNELOOP_TEST_KEY", KEY)
    endpoint = S.Endpoint(ws, run_id=runs[0].id, engine="transformers",
                          api_key=S.api_key_from_env("TUNELOOP_TEST_KEY"))
    with serving(endpoint) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            refused = client.post("/chat/completions", json={"messages": QUESTION, "max_tokens": 2}, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            error = refused.json()["error"]
            assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
            assert "Authorization: Bearer" in error["message"] and KEY not in error["message"]
        assert client.get("/models").status_code == 401
        assert client.post("/feedback", json={"response_id": "x", "rating": "up"}).status_code == 401
        signed = {"Authorization": f"Bearer {KEY}"}
        assert client.get("/models", headers=signed).status_code == 200
        answer = client.post("/chat/completions", json={"messages": QUESTION, "max_tokens": 2}, headers=signed)
        assert answer.status_code == 200 and answer.json()["model"] == f"run-{runs[0].id}"
    assert len(S.request_log(ws)) == 1                   # refused requests never reached the model


def test_other_hosts_need_a_key_and_the_key_must_be_set(ws, runs, monkeypatch, capsys):
    monkeypatch.delenv("TUNELOOP_UNSET_KEY", raising=False)
    assert cli.main(["serve", str(runs[0].id), "--host", "0.0.0.0", "--workspace", str(ws.root)]) == 1
    assert "--api-key-env" in capsys.readouterr().err
    assert cli.main(["serve", str(runs[0].id), "--api-key-env", "TUNELOOP_UNSET_KEY",
                     "--workspace", str(ws.root)]) == 1
    assert "TUNELOOP_UNSET_KEY is not set" in capsys.readouterr().err
    with pytest.raises(TuneloopError, match="lets other machines reach"):
        S.start_server(ws, run_id=runs[0].id, host="0.0.0.0", port=_free_port(), engine="transformers")
    assert S.is_loopback("127.0.0.1") and S.is_loopback("::1") and S.is_loopback("localhost")
    assert not S.is_loopback("0.0.0.0") and not S.is_loopback("192.168.1.5")
    assert S.server_processes(ws, running_only=False) == []


def _log(ws, request_id, age_days, *, run_id):
    ws.db.execute("insert into serve_requests (id, created_at, run_id, engine, status) values (?, strftime("
                  "'%Y-%m-%dT%H:%M:%fZ', 'now', ?), ?, 'transformers', 200)", (request_id, f"-{age_days} days", run_id))
    ws.db.commit()


def _ids(ws):
    return sorted(r["id"] for r in S.request_log(ws))


def test_retention_prunes_by_age_and_rows_but_keeps_rows_with_feedback(ws, runs):
    run_id = runs[0].id
    for i, age in enumerate([40, 35, 20, 10, 1]):
        _log(ws, f"r{i}", age, run_id=run_id)
    S.record_feedback(ws, {"response_id": "r0", "rating": "down"})
    assert S.prune_request_log(ws, S.Retention(days=30)) == 1
    assert _ids(ws) == ["r0", "r2", "r3", "r4"]
    assert S.prune_request_log(ws, S.Retention(days=None, rows=2)) == 1
    assert _ids(ws) == ["r0", "r3", "r4"]
    assert S.prune_request_log(ws, S.Retention(days=None)) == 0
    assert S.Retention().describe() == "request log kept 30 days"
    assert S.Retention(7, 500).describe() == "request log kept 7 days and at most 500 rows"
    with pytest.raises(TuneloopError, match="days must be a whole number"):
        S.Retention(days=0)


def test_pruning_runs_on_start_and_again_on_its_schedule(ws, runs):
    _log(ws, "old", 9, run_id=runs[0].id)
    stop = S.keep_pruning(ws, S.Retention(days=5), every_s=0.05)
    try:
        assert _ids(ws) == []                            # on start
        _log(ws, "later", 9, run_id=runs[0].id)
        deadline = time.monotonic() + 30
        while _ids(ws) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _ids(ws) == []                            # on the next round
    finally:
        stop.set()


def test_the_background_server_needs_its_key_prunes_on_start_and_says_so(ws, runs, monkeypatch):
    monkeypatch.setenv("TUNELOOP_TEST_KEY", KEY)
    _log(ws, "stale", 3, run_id=runs[0].id)
    process = S.start_server(ws, run_id=runs[1].id, port=_free_port(), engine="transformers",
                             api_key_env="TUNELOOP_TEST_KEY", retention=S.Retention(days=2, rows=100), timeout=180)
    try:
        (listed,) = S.server_processes(ws)
        assert listed.api_key_env == "TUNELOOP_TEST_KEY" and listed.retention == S.Retention(2, 100)
        assert "API key from $TUNELOOP_TEST_KEY" in listed.describe()
        assert "request log kept 2 days and at most 100 rows" in listed.describe()
        assert "stale" not in _ids(ws)
        body = {"messages": QUESTION, "max_tokens": 2}
        assert httpx.post(f"{process.url}/chat/completions", json=body, timeout=60).status_code == 401
        signed = httpx.post(f"{process.url}/chat/completions", json=body, timeout=60,
                            headers={"Authorization": f"Bearer {KEY}"})
        assert signed.status_code == 200
    finally:
        S.stop_server(ws, process.id)
    log = (ws.root / "serving").glob("serve-*.log")
    assert all(KEY not in path.read_text() for path in log)
    assert all(KEY not in str(v) for row in ws.db.execute("select * from serve_processes") for v in tuple(row))
