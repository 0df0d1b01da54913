"""Cancel on long jobs started from a tab: the Data tab's import stops at its next progress report and stores
nothing (no version, no half-written snapshot)."""
import gradio as gr

from curation.data import versions as V
from curation.ui import data
from tests.conftest import chat, write_jsonl
from tests.tab_page import page


def test_cancel_import_stops_it_with_nothing_stored(ws, tmp_path):
    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    rows = [chat(f"question {i} about parcel {i}", f"answer {i}") for i in range(5_001)]   # past one progress report
    big = write_jsonl(tmp_path / "big.jsonl", rows)
    said = []

    def progress_pressing_cancel(fraction, desc=None):
        said.append(data.cancel_import(ws, w)[w.status])

    out = data.import_records(ws, w, page(w, path_box=str(big)), progress=progress_pressing_cancel)
    assert said == ["Cancelling…"] and "the import was cancelled; nothing was stored" in out[w.status]
    assert V.list_versions(ws) == [] and not any(ws.path("versions").glob("*"))
    assert data.cancel_import(ws, w)[w.status] == "No import of yours is running."
    done = data.import_records(ws, w, page(w, path_box=str(big)), progress=lambda *a, **k: None)
    assert "Imported **5,001 records**" in done[w.status]
