"""Plain-HTTP clients for a live hosted Tuneloop: what a browser (or a script) sends, nothing more.

``GradioSession`` is one logged-in session of one mounted Gradio app (``/``, ``/rate``, ``/playground``):
its cookies, a session hash, and calls through the same queue + server-sent-events route the page uses,
keeping every byte received so tests can search it. ``RaterClient`` drives the Rate tab with it.
Used by tests/test_hosted.py and benchmarks/raters.py.
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

import httpx

VOTE_FNS = {"A": "vote_clicked", "B": "vote_clicked_1", "tie": "vote_clicked_2", "both_bad": "vote_clicked_3"}
QUESTION_RE = re.compile(r"<b>Question:</b> (.*?)</div>", re.S)


@dataclass
class CallResult:
    status: int                       # HTTP status of the queue join
    output: list | None = None        # the handler's outputs, when it completed
    success: bool = False
    error: str | None = None          # Gradio's error message, when it failed
    raw: str = ""                     # every byte received for this call (join reply and event stream)


@dataclass
class GradioSession:
    base_url: str                     # http://127.0.0.1:PORT
    prefix: str = ""                  # "" for the app at /, "/rate", "/playground"
    timeout: float = 60
    session_hash: str = field(default_factory=lambda: secrets.token_hex(6))

    def __post_init__(self):
        self.http = httpx.Client(base_url=self.base_url.rstrip("/") + self.prefix, timeout=self.timeout)
        self._config: dict | None = None

    def close(self) -> None:
        self.http.close()

    def login(self, username: str, password: str) -> httpx.Response:
        return self.http.post("/login", data={"username": username, "password": password})

    def config(self) -> dict:
        if self._config is None:
            resp = self.http.get("/config")
            resp.raise_for_status()
            self._config = resp.json()
        return self._config

    def fn_index(self, api_name: str) -> int:
        for dep in self.config()["dependencies"]:
            if dep.get("api_name") == api_name:
                return dep["id"]
        raise KeyError(f"no handler named {api_name!r} in {self.prefix or '/'}")

    def inputs(self, api_name: str, by_elem_id: dict) -> list:
        """A handler's input values in the order it takes them, given by the components' elem_id (None for
        the others, e.g. server-side state)."""
        config = self.config()
        elem_ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
        dep = next(d for d in config["dependencies"] if d["id"] == self.fn_index(api_name))
        return [by_elem_id.get(elem_ids[i]) for i in dep["inputs"]]

    def call(self, fn: int | str, data: list, *, config: dict | None = None, queued: bool | None = None) -> CallResult:
        """Run one handler as the page does: through the queue and its event stream, or with a plain POST
        for events that are not queued (``queued`` forces one way); returns when it has completed."""
        index = fn if isinstance(fn, int) else self.fn_index(fn)
        deps = (config or self.config())["dependencies"]
        dep = next(d for d in deps if d["id"] == index)
        if not (dep.get("queue") is not False if queued is None else queued):
            return self.run(dep["api_name"], data)
        trigger = dep["targets"][0][0] if dep.get("targets") else None
        join = self.http.post("/gradio_api/queue/join", json={
            "data": data, "fn_index": index, "session_hash": self.session_hash, "event_data": None,
            "trigger_id": trigger})
        result = CallResult(status=join.status_code, raw=join.text)
        if join.status_code != 200:
            return result
        event_id = join.json()["event_id"]
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                result.raw += line + "\n"
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                    result.success = bool(msg.get("success"))
                    out = msg.get("output") or {}
                    result.output = out.get("data")
                    result.error = out.get("error")
                    break
        return result

    def run(self, api_name: str, data: list) -> CallResult:
        """Run one handler with a plain POST to /gradio_api/run/ (what the page does for events not queued)."""
        resp = self.http.post(f"/gradio_api/run/{api_name}", json={"data": data, "session_hash": self.session_hash})
        result = CallResult(status=resp.status_code, raw=resp.text)
        if resp.status_code == 200:
            result.output, result.success = resp.json().get("data"), True
        else:
            result.error = resp.text
        return result


@dataclass
class Voted:
    question: str                     # the question of the pair voted on (unique per pair in the tests)
    reveal: str                       # the reveal the server sent back


class RaterClient:
    """A rater at the Rate tab over HTTP: log in, start, vote; remembers what was acknowledged."""

    def __init__(self, base_url: str, name: str, password: str, prefix: str = "/rate", timeout: float = 60):
        self.name = name
        self.session = GradioSession(base_url, prefix, timeout=timeout)
        resp = self.session.login(name, password)
        resp.raise_for_status()
        self.question: str | None = None  # the question of the pair on screen
        self.acknowledged: list[Voted] = []

    def start(self, evaluation_id: int) -> CallResult:
        result = self.session.call("start_clicked", [evaluation_id, ""])
        self._read_pair(result)
        return result

    def vote(self, verdict: str, comment: str = "", corrected: str = "", *, queued: bool | None = None) -> CallResult:
        voted_on = self.question
        typed = {"rate-rater": "", "rate-comment": comment, "rate-correction": corrected}
        result = self.session.call(VOTE_FNS[verdict], self.session.inputs(VOTE_FNS[verdict], typed), queued=queued)
        reveal = result.output[10] if result.success and result.output else ""
        if reveal.startswith("✅"):
            self.acknowledged.append(Voted(question=voted_on, reveal=reveal))
            self._read_pair(result)
        return result

    def _read_pair(self, result: CallResult) -> None:
        if result.success and result.output:
            text = result.output[1] if isinstance(result.output[1], str) else ""
            found = QUESTION_RE.search(text)
            self.question = found.group(1) if found else None

    def close(self) -> None:
        self.session.close()
