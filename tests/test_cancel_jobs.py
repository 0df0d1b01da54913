"""Cancel on long jobs started from a tab: the Data tab's import stops at its next progress report and stores
nothing (no version, no half-written snapshot)."""
import gradio as gr
import pytest

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


# -- the Splits tab: the leakage audit, the leak re-fix and the export --------------------------------

def _splits_tab(ws):
    from curation.ui import splits
    with gr.Blocks():
        with gr.Tabs():
            w = splits.build(ws)
    return splits, w


def _split_version(ws, splits, w, fix="none"):
    from tests.test_splits import support_tickets
    source = V.create_version(ws, support_tickets(300, seed=4), parent=None, step="import")
    splits.build_split(ws, w, page(w, source=source.name, form={"fix": fix}), progress=lambda *a, **k: None)
    return V.current_version(ws)


def test_stop_ends_the_leakage_audit_at_its_next_report(ws):
    splits, w = _splits_tab(ws)
    made = _split_version(ws, splits, w)
    said = []

    def progress_pressing_stop(fraction, desc=None):
        said.append(splits.stop_check(ws, w)[w.leak_md])

    out = splits.audit_split_version(ws, w, page(w, split_pick=made.name), progress=progress_pressing_stop)
    assert said == ["Stopping…"] and "the audit was stopped; nothing was changed" in out[w.leak_md]
    assert w.pairs_df not in out
    assert splits.stop_check(ws, w)[w.leak_md] == "No audit or fix of yours is running."
    again = splits.audit_split_version(ws, w, page(w, split_pick=made.name), progress=lambda *a, **k: None)
    assert "leaking pair(s)" in again[w.leak_md]


def test_stop_ends_the_leak_fix_before_a_version_is_saved(ws):
    splits, w = _splits_tab(ws)
    leaky = _split_version(ws, splits, w, fix="none")
    said = []

    def progress_pressing_stop(fraction, desc=None):
        said.append(splits.stop_check(ws, w)[w.leak_md])

    out = splits.refix_split_version(ws, w, page(w, split_pick=leaky.name, form={"fix": "move"}),
                                     progress=progress_pressing_stop)
    assert said == ["Stopping…"] and f"the fix was stopped; nothing was saved ({leaky.name} is unchanged)" in out[w.status]
    assert V.current_version(ws).id == leaky.id
    done = splits.refix_split_version(ws, w, page(w, split_pick=leaky.name, form={"fix": "move"}),
                                      progress=lambda *a, **k: None)
    assert f"from {leaky.name}" in done[w.status] and V.current_version(ws).id != leaky.id


def test_cancel_export_removes_its_folder_and_zip(ws):
    from core.workspace import export_folder
    splits, w = _splits_tab(ws)
    made = _split_version(ws, splits, w)
    chosen = page(w, split_pick=made.name, formats=["jsonl", "csv"])
    first = splits.export_split_version(ws, w, chosen, progress=lambda *a, **k: None)
    assert first[w.export_file].endswith(".zip")
    said = []

    def progress_pressing_cancel(fraction, desc=None):
        if desc and desc.startswith("writing"):
            said.append(splits.cancel_export(ws, w)[w.export_md])

    out = splits.export_split_version(ws, w, chosen, progress=progress_pressing_cancel)
    assert said == ["Cancelling…"] and out[w.export_file] is None
    assert "the export was cancelled; no file was kept" in out[w.export_md]
    assert not ws.path("exports", f"{made.name}-messages").exists()
    assert not list(export_folder(ws).glob(f"{made.name}-messages*"))
    assert splits.cancel_export(ws, w)[w.export_md] == "No export of yours is running."


# -- the Dedup tab: the quality-filter check ----------------------------------------------------------

def test_cancel_ends_the_filter_check_and_keeps_the_previous_report(ws):
    from benchmarks.planted_duplicates import planted_dataset
    from curation.ui import dedup
    V.create_version(ws, planted_dataset(300, seed=3).records, parent=None, step="import")
    with gr.Blocks():
        w = dedup.build(ws)
    mine, other = gr.Request(session_hash="tab-a"), gr.Request(session_hash="tab-b")
    said = []

    def progress_pressing_cancel(fraction, desc=None):
        if not said:
            said.append(dedup.cancel_filters(ws, w, other)[w.filter_status])
            said.append(dedup.cancel_filters(ws, w, mine)[w.filter_status])

    out = dedup.check_filters(ws, w, page(w, version="v1"), mine, progress_pressing_cancel)
    assert said == ["No filter check of yours is running.", "Cancelling…"]
    assert "the filter check was cancelled; nothing was changed" in out[w.filter_status]
    assert w.filter_report not in out and w.filter_table not in out
    assert dedup.cancel_filters(ws, w, mine)[w.filter_status] == "No filter check of yours is running."
    done = dedup.check_filters(ws, w, page(w, version="v1"), mine, lambda *a, **k: None)
    assert done[w.filter_status].endswith("of 300 records flagged.")


# -- the Data tab: Export -----------------------------------------------------------------------------

def test_cancel_export_of_a_version_leaves_no_file(ws):
    from core.workspace import export_folder
    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    from curation.data.records import Record
    rows = [Record(id=f"r{i}", messages=[{"role": "user", "content": f"question {i}"},
                                         {"role": "assistant", "content": f"answer {i}"}],
                   meta={"split": ("train", "val", "test")[i % 3]}) for i in range(2_500)]
    made = V.create_version(ws, rows, parent=None, step="import")
    said = []

    def progress_pressing_cancel(fraction, desc=None):
        if desc and desc.startswith("writing validation"):   # train.jsonl is already written (staged)
            said.append(data.cancel_export(ws, w)[w.export_status])

    chosen = page(w, export_pick=made.name, export_fmt="jsonl")
    out = data.export(ws, w, chosen, progress=progress_pressing_cancel)
    assert said == ["Cancelling…"] and out[w.export_file] is None
    assert "the export was cancelled; nothing was written" in out[w.export_status]
    assert not any(export_folder(ws).iterdir())          # no zip, no staging folder
    assert data.cancel_export(ws, w)[w.export_status] == "No export of yours is running."
    done = data.export(ws, w, chosen, progress=lambda *a, **k: None)
    assert done[w.export_file].endswith(f"{made.name}-jsonl.zip")


# -- the Train tab: token lengths of the split --------------------------------------------------------

def test_stop_counting_token_lengths_ends_it_at_the_next_report(ws, tmp_path):
    from curation.data.records import Record
    from tests.tiny_model import build_tiny_model
    from training.ui import build_train_tab, stop_token_lengths, token_lengths
    model = build_tiny_model(tmp_path / "tiny")
    records = [Record.from_dict(chat(f"Where is order {i}?", f"Order {i} ships soon.", id=f"r{i}")) for i in range(200)]
    for i, r in enumerate(records):
        r.meta["split"] = ("train", "val", "test")[i % 3]
    V.create_version(ws, records, parent=None, step="split")
    with gr.Blocks():
        with gr.Tabs():
            w = build_train_tab(ws)
    said = []

    def progress_pressing_stop(fraction, desc=None):
        if desc and desc.startswith("tokenizing") and not said:
            said.append(stop_token_lengths(ws, w)[w.tokens_md])
        elif desc and desc.startswith("tokenizing"):
            said.append(desc)                                  # a report after Stop: the count went on

    chosen = page(w, split="v1", base_model=str(model), seq_len=8)
    out = token_lengths(ws, w, chosen, progress=progress_pressing_stop)
    assert said == ["Stopping…"] and "counting the token lengths was stopped; nothing was changed" in out[w.tokens_md]
    assert w.tokens_plot not in out
    assert stop_token_lengths(ws, w)[w.tokens_md] == "No count of yours is running."
    done = token_lengths(ws, w, chosen, progress=lambda *a, **k: None)
    assert "200 conversations for **tiny**" in done[w.tokens_md]


# -- the Train tab: the merged export -----------------------------------------------------------------

from tests.test_serve_ui import adapter  # noqa: E402,F401  (fixture: a tiny base and an adapter for it)


@pytest.mark.parametrize("kind", ["merged", "gguf f16"])
def test_cancel_merged_export_leaves_no_folder(ws, adapter, kind):
    """Cancel pressed while the merged model is written (the GGUF export merges first too) ends the export
    before it goes on; no folder, temp folder or GGUF is left."""
    import shutil

    from curation.data.records import Record
    from training import registry as R
    from training import ui as train
    from training.config import RunConfig
    base, folder = adapter
    V.create_version(ws, [Record(f"r{i}", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ok"}],
                                 {"split": s}) for i, s in enumerate(["train"] * 4 + ["val", "test"])],
                     parent=None, step="split")
    run = R.create_run(ws, RunConfig(base_model=str(base), datasets="v1"), name="merge me")
    shutil.copytree(folder, run.adapter_dir)
    R.update_run(ws, run.id, status="finished")
    with gr.Blocks():
        with gr.Tabs():
            w = train.build_train_tab(ws)
    said = []

    def progress_pressing_cancel(fraction, desc=""):
        if "writing the merged model" in desc:          # Cancel pressed while the files are being written
            said.append(train.cancel_export(ws, w)[w.export_msg])

    chosen = {w.selected: str(run.id), w.export_kind: kind}
    out = train.export(ws, w, chosen, progress=progress_pressing_cancel)
    name = kind.split()[0]
    assert said == ["Cancelling…"] and f"The {name} export was cancelled" in out[w.export_msg]
    assert not list(run.run_dir.glob(f"*export-{name}*")) and not list(run.run_dir.glob(".*tmp*"))
    assert not list(run.run_dir.glob("gguf/*"))
    assert f"export_{name}" not in R.get_run(ws, run.id).artefacts
    if kind != "merged":
        return
    done = train.export(ws, w, chosen, progress=lambda *a, **k: None)
    assert done[w.export_msg] == f"Merged written to `{run.run_dir / 'export-merged'}`."
