"""Input past a reader's limits is refused in one line naming the file, the line and the limit, and nothing is
written: JSON nested 100,000 deep, a CSV field over csv's 128 KiB, a pipe that runs past --max-mb (the probes of
issue #20, item 7)."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.errors import TuneloopError
from curation.data.formats import read_records
from curation.data.imports import import_file
from curation.data.versions import list_versions
from tests.conftest import chat, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
DEEP = 100_000


def nothing_written(ws) -> bool:
    versions = ws.path("versions")
    return list_versions(ws) == [] and (not versions.exists() or not any(versions.iterdir()))


def refusal(ws, path, **kw) -> str:
    with pytest.raises(TuneloopError) as caught:
        import_file(ws, path, **kw)
    assert nothing_written(ws)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_jsonl_line_nested_100000_deep_is_refused_naming_file_line_and_limit(ws, tmp_path):
    path = write_jsonl(tmp_path / "tickets.jsonl", [chat("q", "a")])
    with path.open("a") as fh:
        fh.write('{"messages": ' + "[" * DEEP + "]" * DEEP + "}\n")
    message = refusal(ws, path)
    assert message.startswith("tickets.jsonl line 2: JSON nested deeper")
    assert f"{sys.getrecursionlimit():,} levels" in message


def test_a_json_array_nested_100000_deep_is_refused(ws, tmp_path):
    path = tmp_path / "dump.json"
    path.write_text("[" * DEEP + "]" * DEEP)
    assert refusal(ws, path).startswith("dump.json: JSON nested deeper")


def test_a_messages_field_holding_deeply_nested_json_text_is_a_problem_of_its_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"messages": "[" * DEEP + "]" * DEEP}])
    with pytest.raises(TuneloopError, match="line 1: 'messages' must be a list of"):
        read_records(path)


def test_a_csv_field_over_128_kib_is_refused_naming_its_line_and_the_limit(ws, tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("question,answer\nhow?,fine\nwhy?," + "x" * 200_000 + "\n")
    message = refusal(ws, path)
    assert message.startswith("faq.csv line 3: a field is longer than csv's limit of 131,072 characters (128 KiB)")


def test_the_cli_answers_a_huge_csv_field_with_one_line_and_no_traceback(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("question,answer\nwhy?," + "x" * 200_000 + "\n")
    done = subprocess.run([sys.executable, "-m", "curation", "--workspace", str(tmp_path / "ws"), "import", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"error: faq.csv line 2: a field is longer than csv's limit of 131,072 "
                                        f"characters (128 KiB); shorten it, or import the data as JSONL (no field "
                                        f"limit); nothing was imported"]


def test_a_fifo_is_read_only_up_to_the_cap_and_refused_past_it(ws, tmp_path):
    fifo = tmp_path / "stream.jsonl"
    os.mkfifo(fifo)
    line = (json.dumps(chat("question " * 50, "answer " * 50)) + "\n").encode()
    total, sent = 8 * 1024 * 1024, [0]

    def feed():
        try:
            with fifo.open("wb", buffering=0) as out:
                while sent[0] < total:
                    sent[0] += out.write(line)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    message = refusal(ws, fifo, max_mb=1)
    writer.join(timeout=30)
    assert message.startswith("stream.jsonl holds more than the import limit of 1 MB (reading stopped at the limit")
    assert sent[0] < 2 * 1024 * 1024, "the reader went on past the cap"


def test_a_parquet_fifo_is_refused_as_not_a_regular_file(ws, tmp_path):
    fifo = tmp_path / "d.parquet"
    os.mkfifo(fifo)
    assert refusal(ws, fifo) == ("d.parquet: a Parquet file must be a regular file (it is read by seeking), not a "
                                 "pipe or device; copy it to a file first")


def test_the_data_tab_shows_the_deep_nesting_refusal_not_something_went_wrong(ws, tmp_path):
    import gradio as gr

    from curation.ui import data
    from tests.tab_page import page

    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    path = tmp_path / "deep.jsonl"
    path.write_text('{"messages": ' + "[" * DEEP + "]" * DEEP + "}\n")
    out = data.import_records(ws, w, page(w, path_box=str(path)), progress=lambda *a, **k: None)
    assert out[w.status].startswith("**⚠️ deep.jsonl line 1: JSON nested deeper")
    assert nothing_written(ws)
