"""Personal data stays in the workspace's database and the files it points at (issue #20, item 11): a training
run's own files hold figures, not test prompts and answers; exports and uploads live in the workspace (swept once
their server has gone), not in the machine's shared temp folder; the server log is one JSON object per line and
never quotes what a caller sent."""
from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from core.workspace import Workspace
from curation.data.records import Record
from curation.data.versions import create_version
from tests.browser import start_app
from tests.hosted_client import GradioSession

NAME, EMAIL, CARD = "Jane Doe", "jane.doe@example.com", "4111 1111 1111 1111"
SECRET = f"call me {NAME} at {EMAIL}"


def customer_records(n: int) -> list[Record]:
    records = []
    for i in range(n):
        split = "train" if i < n * 0.7 else ("val" if i < n * 0.85 else "test")
        records.append(Record(id=f"c{i}", meta={"split": split}, messages=[
            {"role": "user", "content": f"I am {NAME} ({EMAIL}); my card {CARD} was charged twice for order {i}."},
            {"role": "assistant", "content": f"Sorry, {NAME}: the second charge on order {i} is refunded to {CARD}."}]))
    return records


def files_holding(folder: Path, needles: list[str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(folder)}: {n}" for n in needles if n.encode() in data]
    return found


def test_a_training_runs_files_hold_figures_and_the_rouge_example_stays_in_the_database(tmp_path):
    from tests.tiny_model import build_tiny_model
    from training import registry as R
    from training.config import preset_config
    from training.run_views import progress_of

    model = build_tiny_model(tmp_path / "tiny")
    ws = Workspace.open(tmp_path / "ws")
    version = create_version(ws, customer_records(40), parent=None, step="split")
    config = preset_config("Quick CPU demo", base_model=str(model), datasets=version.name, micro_batch_size=4,
                           max_steps=2, eval_steps=2, save_steps=2, rouge_test_samples=2, learning_rate=5e-3,
                           gradient_checkpointing=False, warmup_ratio=0.0, lr_scheduler="constant")
    run = R.wait_for_run(ws, R.launch_run(ws, config, name="private").id, timeout=600)   # as the Train tab does
    assert run.status == "finished", run.error
    assert run.log_path.is_file()
    rows = R.read_metrics(run)
    assert any(r.get("event") == "rouge" and "rouge_l_tuned" in r for r in rows)
    assert files_holding(run.run_dir, [NAME, EMAIL, CARD]) == []
    assert NAME in progress_of(run)["rouge_example"]["prompt"]   # shown in the tab, read from the database


def test_exports_are_written_in_the_workspace_not_the_shared_temp_folder(ws, tmp_path):
    import gradio as gr

    from curation.ui import data
    from tests.tab_page import page

    create_version(ws, customer_records(3), parent=None, step="import")
    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    out = data.export(ws, w, page(w, export_pick="v1", export_fmt="jsonl"), progress=lambda *a, **k: None)
    written = Path(out[w.export_file])
    assert written.is_file() and written.is_relative_to(ws.root)


@pytest.fixture
def local_app(tmp_path):
    app = start_app(tmp_path / "workspace", ["--no-demo"])
    yield app
    app.stop()


def test_the_server_log_is_one_json_object_per_line_and_never_quotes_a_callers_values(local_app):
    session = GradioSession(local_app.url)
    config = session.config()
    components = {c["id"]: c for c in config["components"]}
    refused = 0
    for dep in config["dependencies"]:
        kinds = [components[i].get("type") for i in dep["inputs"]]
        if "dropdown" in kinds and refused < 4:   # a value that is not among the choices
            result = session.call(dep["id"], [SECRET if k in ("dropdown", "textbox") else None for k in kinds])
            assert not result.success
            refused += 1
    assert not session.call("import_records", [SECRET, "notes.jsonl", False, "", "", False]).success
    # Too few values for the event: Gradio's own check refuses it, and its message lists the values sent.
    assert not session.call("import_records", [SECRET, "notes.jsonl", False]).success
    refused += 1
    upload = session.http.post("/gradio_api/upload", files={"files": ("notes.txt", SECRET.encode())})
    [uploaded] = upload.json()
    assert httpx.get(local_app.url + f"gradio_api/file={EMAIL}").status_code in (403, 404)
    served = Path(uploaded)
    assert served.is_relative_to(local_app.workspace) and served.read_text() == SECRET
    session.close()
    local_app.stop()

    lines = [line for line in local_app.logs().splitlines() if line.strip()]
    assert lines[0].startswith("Tuneloop (local, no logins)")
    entries = [json.loads(line) for line in lines[1:]]
    assert sum(e["msg"] == "a request was refused" for e in entries) == refused
    for secret in (NAME, EMAIL, "Traceback"):
        assert secret not in local_app.logs()
    Workspace.open(local_app.workspace)        # the server has gone: what it served goes with it
    assert not served.exists()
    assert [p.name for p in local_app.workspace.iterdir() if p.name.startswith(".served")] == []


def test_a_failure_is_one_json_entry_with_its_trace_and_a_refusal_one_without(capsys):
    import logging

    import gradio as gr

    from app import JsonLogLines
    from core.errors import TuneloopError

    formatter = JsonLogLines()

    def entry(exc: Exception) -> dict:
        try:
            raise exc
        except Exception:
            import sys
            record = logging.LogRecord("tuneloop.requests", logging.INFO, __file__, 1, "m", (), sys.exc_info())
        text = formatter.format(record)
        assert "\n" not in text
        return json.loads(text)

    refused = entry(gr.Error(f"Value: {SECRET} is not in the list of choices"))
    assert refused["refusal"] == "gradio.exceptions.Error" and "exc" not in refused and SECRET not in str(refused)
    assert entry(TuneloopError(f"{EMAIL}.jsonl line 3: bad"))["refusal"] == "core.errors.TuneloopError"
    failed = entry(KeyError("a bug"))
    assert "Traceback" in failed["exc"] and "refusal" not in failed
    assert os.linesep not in json.dumps(failed)


def test_lines_printed_on_the_servers_stderr_become_json_entries():
    import io
    import logging

    from app import JsonLogLines, StderrLines

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLogLines())
    log = logging.getLogger("tuneloop.test-stderr")
    log.addHandler(handler)
    log.propagate = False
    try:
        stderr = StderrLines(log, io.StringIO())
        stderr.write("Traceback (most recent call last):\n  File \"x.py\", line 1")
        stderr.write("\nValueError: odd\n\n")
    finally:
        log.removeHandler(handler)
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["msg"] for e in entries] == ["Traceback (most recent call last):", '  File "x.py", line 1',
                                           "ValueError: odd"]
    assert not stderr.isatty()
