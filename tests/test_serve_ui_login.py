"""The Serve panel's login and retention settings: refused without a key beyond loopback, a missing key's
variable named, and the running server's key variable and retention shown in its status."""
from __future__ import annotations

from training import serve as S
from training import serve_ui
from tests.test_serve_ui import adapter, tab  # noqa: F401  (fixtures)


def _form(w, run, **values):
    base = {w.run: str(run.id), w.live: False, w.port: 8765, w.engine: "transformers", w.log_text: False,
            w.host: "127.0.0.1", w.api_key_env: "", w.keep_days: 30, w.keep_rows: 0, w.server: None}
    return {**base, **{getattr(w, k): v for k, v in values.items()}}


def test_the_panel_refuses_an_open_host_and_names_an_unset_key(tab, monkeypatch):
    ws, w, runs = tab
    monkeypatch.delenv("TUNELOOP_PANEL_KEY", raising=False)
    out = serve_ui.start(ws, w, _form(w, runs[0], host="0.0.0.0"))
    assert "--api-key-env" in out[w.message] and "lets other machines reach" in out[w.message]
    out = serve_ui.start(ws, w, _form(w, runs[0], api_key_env="TUNELOOP_PANEL_KEY"))
    assert "TUNELOOP_PANEL_KEY is not set" in out[w.message]
    out = serve_ui.start(ws, w, _form(w, runs[0], keep_rows=-3))
    assert "rows must be a whole number" in out[w.message]
    assert S.server_processes(ws, running_only=False) == []


def test_the_status_shows_the_key_variable_and_the_retention():
    process = S.ServerProcess(id=1, run_id=3, live=False, port=8100, engine="llamacpp", log_text=False, pid=1,
                              started_at="2026-12-01T10:00:00Z", running=True, log_path=None, host="0.0.0.0",
                              api_key_env="ACME_KEY", retention=S.Retention(days=7, rows=None))
    text = serve_ui.status_markdown([process], None)
    assert "http://127.0.0.1:8100/v1 (listening on 0.0.0.0)" in text
    assert "API key from $ACME_KEY" in text and "request log kept 7 days" in text
    assert 'curl http://127.0.0.1:8100/v1/chat/completions -H "Authorization: Bearer $ACME_KEY"' in text
