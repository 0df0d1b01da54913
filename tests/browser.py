"""Browser test harness: a live Tuneloop app on a free port over a temp workspace, driven by
Playwright in Debian's Chromium (/usr/bin/chromium; no browser download needed).

Use::

    @pytest.mark.browser
    def test_something(live_app, page):
        app = live_app()                      # or live_app(args=["--rater-only"], workspace=path)
        page.goto(app.url)
        page.get_by_role("tab", name="Data").click()
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("TUNELOOP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveApp:
    url: str
    port: int
    workspace: Path
    process: subprocess.Popen
    log: Path

    def stop(self, sig: str = "term") -> None:
        if self.process.poll() is None:
            self.process.kill() if sig == "kill" else self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_app(workspace: Path, args: list[str] | None = None, *, env: dict | None = None,
              timeout: float = 90, port: int | None = None) -> LiveApp:
    port = port or free_port()
    log = workspace.parent / f"app-{port}.log"
    workspace.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "app.py"), "--workspace", str(workspace), "--port", str(port),
           *(args or [])]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in (200, 401, 302):
                    return LiveApp(url=url, port=port, workspace=workspace, process=proc, log=log)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return LiveApp(url=url, port=port, workspace=workspace, process=proc, log=log)
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"app did not serve within {timeout}s:\n{log.read_text(errors='replace')}")


@pytest.fixture
def live_app(tmp_path):
    """Factory: ``live_app(args=[...], workspace=path, env={...})`` → LiveApp; all stopped at the end."""
    started: list[LiveApp] = []

    def factory(args=None, workspace=None, env=None, **kw) -> LiveApp:
        app = start_app(Path(workspace or tmp_path / "workspace"), args, env=env, **kw)
        started.append(app)
        return app

    yield factory
    for app in started:
        app.stop()


@pytest.fixture(scope="session")
def _browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(_browser):
    context = _browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()
