"""The OpenAI-compatible endpoint: answers over plain HTTP (whole and streamed), live versions and rollback,
the request log (no text unless asked), feedback from use merged into the next dataset version."""
from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.errors import TuneloopError
from curation.data.records import Record
from curation.data.versions import create_version, current_version, load_records
from curation.review.answer_requests import answer_request, open_requests
from tests.tiny_model import build_tiny_model, make_adapter
from training import registry as R
from training import serve as S
from training.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
QUESTION = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-models")
    base = build_tiny_model(root / "base")
    return {"base": base, "a": make_adapter(base, root / "adapter-a", seed=1),
            "b": make_adapter(base, root / "adapter-b", seed=2)}


def _records():
    return [Record(f"r{i}", [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "ok"}],
                   {"split": split}) for i, split in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 2)]


@pytest.fixture
def runs(ws, models):
    """Two finished runs on the tiny base, with different adapters."""
    create_version(ws, _records(), parent=None, step="split")
    out = []
    for key in ("a", "b"):
        run = R.create_run(ws, RunConfig(base_model=str(models["base"]), datasets="v1"), name=f"run {key}")
        shutil.copytree(models[key], run.adapter_dir)
        R.update_run(ws, run.id, status="finished")
        out.append(R.get_run(ws, run.id))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(endpoint: S.Endpoint):
    """The endpoint's app on a free port in this process (uvicorn in a thread)."""
    import uvicorn
    server = uvicorn.Server(uvicorn.Config(S.make_app(endpoint), host="127.0.0.1", port=_free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}/v1", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join()


def _chat(client, **body):
    return client.post("/chat/completions", json={"model": "anything", "messages": QUESTION, "max_tokens": 12,
                                                  **body})


def _events(response) -> list:
    lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_a_run_answers_whole_and_streamed_as_the_warm_base_does(ws, runs):
    from training.inference import DecodingSettings, default_pool
    run = runs[0]
    endpoint = S.Endpoint(ws, run_id=run.id, engine="transformers")
    warm = default_pool().get(ws, run.base_model)
    expected = warm.answer([QUESTION], adapter=warm.add_adapter(run.adapter_dir),
                           settings=DecodingSettings(max_new_tokens=12))[0]
    with serving(endpoint) as client:
        models = client.get("/models").json()
        assert [m["id"] for m in models["data"]] == [f"run-{run.id}"]
        whole = _chat(client)
        assert whole.status_code == 200 and whole.headers["X-Tuneloop-Run"] == str(run.id)
        body = whole.json()
        assert body["object"] == "chat.completion" and body["model"] == f"run-{run.id}"
        assert body["id"].startswith("chatcmpl-") and body["choices"][0]["message"]["content"] == expected
        assert body["usage"]["completion_tokens"] > 0 and body["usage"]["prompt_tokens"] > 0
        with client.stream("POST", "/chat/completions",
                           json={"messages": QUESTION, "max_tokens": 12, "stream": True}) as streamed:
            assert streamed.headers["content-type"].startswith("text/event-stream")
            events = _events(streamed)
    assert {e["id"] for e in events} == {events[0]["id"]} != {body["id"]}
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == expected
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length") and events[-1]["usage"]["total_tokens"]
    log = S.request_log(ws)
    assert [(r["id"], r["run_id"], r["stream"], r["status"]) for r in log] == [
        (body["id"], run.id, 0, 200), (events[0]["id"], run.id, 1, 200)]
    assert all(r["latency_ms"] > 0 and r["completion_tokens"] > 0 for r in log)
    assert all(r["request_text"] is None and r["response_text"] is None for r in log)   # text logging is off


def test_a_stop_string_cuts_the_answer_and_bad_requests_get_openai_errors(ws, runs):
    endpoint = S.Endpoint(ws, run_id=runs[0].id, engine="transformers")
    with serving(endpoint) as client:
        full = _chat(client).json()["choices"][0]["message"]["content"]
        stop = full.strip()[len(full.strip()) // 2:][:2]
        cut = _chat(client, stop=[stop]).json()
        assert cut["choices"][0]["message"]["content"] == full[:full.find(stop)]
        assert cut["choices"][0]["finish_reason"] == "stop"
        bad = client.post("/chat/completions", json={"messages": [{"role": "robot", "content": "hi"}]})
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "messages[0].role" and "robot" in bad.json()["error"]["message"]
        hot = _chat(client, temperature=7)
        assert hot.status_code == 400 and "between 0.0 and 2.0" in hot.json()["error"]["message"]
        assert _chat(client, n=2).json()["error"]["param"] == "n"
        assert client.post("/completions", json={}).status_code == 404
    errors = [r for r in S.request_log(ws) if r["status"] != 200]
    assert [r["status"] for r in errors] == [400, 400, 400] and all(r["error"] for r in errors)


def test_live_and_rollback_switch_the_answering_run_without_a_restart(ws, runs):
    a, b = runs
    endpoint = S.Endpoint(ws, live=True, engine="transformers")
    with serving(endpoint) as client:
        none = _chat(client)
        assert none.status_code == 503 and "live" in none.json()["error"]["message"]
        first = S.promote(ws, a.id, actor="ana")
        one = _chat(client)
        assert one.json()["model"] == f"run-{a.id}@{first.name}" and one.headers["X-Tuneloop-Version"] == first.name
        second = S.promote(ws, b.id)
        two = _chat(client)
        assert two.headers["X-Tuneloop-Run"] == str(b.id)
        assert two.json()["choices"][0]["message"]["content"] != one.json()["choices"][0]["message"]["content"]
        back = S.rollback(ws)
        three = _chat(client)
        assert back.run_id == a.id and three.json()["model"] == f"run-{a.id}@{back.name}"
        assert three.json()["choices"][0]["message"]["content"] == one.json()["choices"][0]["message"]["content"]
    with pytest.raises(TuneloopError, match="nothing before it"):
        S.rollback(ws)
    with pytest.raises(TuneloopError, match="live already"):
        S.promote(ws, a.id)
    assert [v.run_id for v in S.live_history(ws)] == [a.id, b.id, a.id]
    answered = [(r["run_id"], r["live_id"]) for r in S.request_log(ws) if r["status"] == 200]
    assert answered == [(a.id, first.id), (b.id, second.id), (a.id, back.id)]


def test_feedback_from_use_becomes_the_next_dataset_version(ws, runs):
    from evaluation import cli
    from evaluation.production_feedback import collect_served_feedback, merge_served_feedback
    endpoint = S.Endpoint(ws, run_id=runs[0].id, engine="transformers")
    with serving(endpoint) as client:
        ids = [_chat(client).json()["id"] for _ in range(4)]
        other = [{"role": "user", "content": "Can I get a refund?"}]
        refund = _chat(client, messages=other).json()["id"]
        fixed = client.post("/feedback", json={"response_id": ids[0], "rating": "down",
                                               "correction": "It ships on Monday.", "messages": QUESTION,
                                               "metadata": {"app": "helpdesk", "user": "u7"}})
        assert fixed.status_code == 200 and fixed.json()["run"] == runs[0].id
        no_text = client.post("/feedback", json={"response_id": ids[1], "rating": "down",
                                                 "correction": "It ships on Monday."})
        assert no_text.status_code == 400 and "--log-text" in no_text.json()["error"]["message"]
        client.post("/feedback", json={"response_id": ids[1], "rating": "up", "messages": QUESTION,
                                       "completion": "Your order ships within two days."})
        client.post("/feedback", json={"response_id": ids[2], "rating": "down", "messages": QUESTION,
                                       "completion": "The quick brown fox."})
        client.post("/feedback", json={"response_id": refund, "rating": "down", "messages": other,
                                       "completion": "No.", "comment": "rude"})
        client.post("/feedback", json={"response_id": ids[3], "rating": "up"})
        missing = client.post("/feedback", json={"response_id": "chatcmpl-nope", "rating": "up"})
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert S.feedback_counts(ws) == {"up": 2, "down": 3, "corrections": 1, "comments": 1}
    before = current_version(ws)
    fb = collect_served_feedback(ws)
    assert fb.counts() == {"corrections": 1, "preference_pairs": 1, "kto": 1, "needs_answer": 1, "without_text": 1}
    merged = merge_served_feedback(ws, created_by="ana")
    version = merged.sft
    assert version.parent_id == before.id and version.step == "served feedback"
    added = {r.id for r in load_records(ws, version.id)} - {r.id for r in load_records(ws, before.id)}
    (correction,) = [r for r in load_records(ws, version.id) if r.id in added]
    assert correction.messages == QUESTION + [{"role": "assistant", "content": "It ships on Monday."}]
    assert correction.meta["run"] == runs[0].id and correction.meta["request_id"] == ids[0]
    assert correction.meta["client"] == {"app": "helpdesk", "user": "u7"} and correction.meta["split"] == "train"
    (pair,) = load_records(ws, merged.preferences.id)
    assert pair.chosen[0]["content"] == "Your order ships within two days."
    assert pair.rejected[0]["content"] == "The quick brown fox."
    assert merged.kto.kind == "kto" and merged.kto.step == "served kto" and merged.kto.parent_id == before.id
    (thumb,) = load_records(ws, merged.kto.id)
    assert (thumb.messages, thumb.completion, thumb.desirable) == (other, [{"role": "assistant", "content": "No."}],
                                                                  False)
    assert thumb.meta["request_id"] == refund and thumb.meta["run"] == runs[0].id and thumb.meta["split"] == "train"
    assert f"KTO examples in {merged.kto.name}" in merged.describe()
    (request,) = open_requests(ws, "served")
    assert request.messages == other and request.meta["comment"] == "rude"
    with pytest.raises(TuneloopError, match="nothing new"):
        merge_served_feedback(ws)
    answer_request(ws, request.id, "Yes, within 30 days of purchase.", answered_by="lead")
    assert cli.main(["merge-served-feedback", "--workspace", str(ws.root)]) == 0
    again = current_version(ws)
    assert again.parent_id == version.id and again.counts["answered"] == 1
    answered = next(r for r in load_records(ws, again.id) if r.id == request.record_id)
    assert answered.messages[-1]["content"] == "Yes, within 30 days of purchase." and answered.meta["split"] == "train"
    assert cli.main(["merge-served-feedback", "--workspace", str(ws.root)]) == 2


def test_text_is_logged_only_when_turned_on(ws, runs):
    endpoint = S.Endpoint(ws, run_id=runs[0].id, engine="transformers", log_text=True)
    with serving(endpoint) as client:
        answer = _chat(client).json()
        corrected = client.post("/feedback", json={"response_id": answer["id"], "correction": "It ships today."})
        assert corrected.status_code == 200
    (row,) = S.request_log(ws)
    assert json.loads(row["request_text"]) == QUESTION
    assert row["response_text"] == answer["choices"][0]["message"]["content"]


def test_the_cli_serves_in_the_background_and_stops(ws, runs):
    port = _free_port()
    process = S.start_server(ws, run_id=runs[1].id, port=port, engine="transformers", timeout=180)
    try:
        assert [p.id for p in S.server_processes(ws)] == [process.id] and process.url.endswith(f":{port}/v1")
        reply = httpx.post(f"{process.url}/chat/completions", json={"messages": QUESTION, "max_tokens": 4},
                           timeout=60)
        assert reply.json()["model"] == f"run-{runs[1].id}"
        with pytest.raises(TuneloopError, match="in use"):
            S.start_server(ws, run_id=runs[0].id, port=port, engine="transformers")
    finally:
        S.stop_server(ws, process.id)
    assert S.server_processes(ws) == [] and R._process_start_time(process.pid) is None
    live = subprocess.run([sys.executable, "-m", "training", "live", str(runs[0].id), "--workspace", str(ws.root)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert live.returncode == 0 and f"run #{runs[0].id} is live (live-v1)" in live.stdout
    back = subprocess.run([sys.executable, "-m", "training", "rollback", "--workspace", str(ws.root)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert back.returncode == 1 and "nothing before it" in back.stderr


@pytest.fixture(scope="module")
def default_model_run(tmp_path_factory):
    """A run on the default model with a small random adapter, in its own workspace (the GGUF is cached there)."""
    pytest.importorskip("llama_cpp")
    from core.workspace import Workspace
    from training.models import resolve_base_model
    root = tmp_path_factory.mktemp("serve-gguf")
    ws = Workspace.open(root / "ws")
    create_version(ws, _records(), parent=None, step="split")
    run = R.create_run(ws, RunConfig(base_model="default", datasets="v1"), name="default + adapter")
    make_adapter(Path(resolve_base_model("default", ws).path), run.adapter_dir, seed=3)
    R.update_run(ws, run.id, status="finished")
    return ws, R.get_run(ws, run.id)


@pytest.mark.slow
def test_llama_cpp_serves_the_runs_gguf_whole_and_streamed(default_model_run):
    ws, run = default_model_run
    assert S.choose_engine("auto") == "llamacpp"
    endpoint = S.Endpoint(ws, run_id=run.id, engine="llamacpp")
    endpoint.engine(run.id)             # merge and convert before serving, as `serve` does
    with serving(endpoint) as client:
        whole = _chat(client, max_tokens=16)
        with client.stream("POST", "/chat/completions",
                           json={"messages": QUESTION, "max_tokens": 16, "stream": True}) as streamed:
            events = _events(streamed)
    body = whole.json()
    text = body["choices"][0]["message"]["content"]
    assert whole.status_code == 200 and body["model"] == f"run-{run.id}" and text.strip()
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == text
    assert "<|im_end|>" not in text and body["usage"]["prompt_tokens"] > 5
    assert 0 < body["usage"]["completion_tokens"] <= 16
    engine = endpoint.engine(run.id)          # the one that answered, still loaded
    assert engine.path.suffix == ".gguf" and engine.path.parent == run.run_dir / "gguf"
    assert [r["engine"] for r in S.request_log(ws)] == ["llamacpp", "llamacpp"]


def test_a_request_without_a_system_message_gets_the_runs_trained_system_prompt(ws, runs, models):
    from training.inference import DecodingSettings, default_pool
    trained = "You are the warehouse assistant. Answer in one short sentence."
    run = R.create_run(ws, RunConfig(base_model=str(models["base"]), datasets="v1", system_prompt_mode="custom",
                                     system_prompt=trained), name="run with a system prompt")
    shutil.copytree(models["a"], run.adapter_dir)
    R.update_run(ws, run.id, status="finished")
    own = [{"role": "system", "content": "Talk like a pirate."}, *QUESTION]
    warm = default_pool().get(ws, str(models["base"]))
    adapter = warm.add_adapter(run.adapter_dir)
    settings = DecodingSettings(max_new_tokens=12)
    with_trained = [{"role": "system", "content": trained}, *QUESTION]
    bare = warm.answer([QUESTION], adapter=adapter, settings=settings)[0]
    assert warm.answer([with_trained], adapter=adapter, settings=settings)[0] != bare     # the prompt tells
    with serving(S.Endpoint(ws, run_id=run.id, engine="transformers", log_text=True)) as client:
        described = client.get("/models").json()["data"][0]
        assert described["system_prompt"] == trained and "custom" in described["system_prompt_origin"]
        plain, theirs = _chat(client).json(), _chat(client, messages=own).json()
    assert plain["choices"][0]["message"]["content"] == warm.answer([with_trained], adapter=adapter,
                                                                    settings=settings)[0]
    assert theirs["choices"][0]["message"]["content"] == warm.answer([own], adapter=adapter, settings=settings)[0]   # theirs wins
    logged = {r["id"]: json.loads(r["request_text"]) for r in S.request_log(ws)}
    assert logged[plain["id"]] == with_trained and logged[theirs["id"]] == own
