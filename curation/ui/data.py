"""The Data tab: import a file, see the versions as a lineage, browse, compare, export, roll back.

Module-level handlers (they take the workspace and return the outputs) and presenters; ``build`` only
creates the widgets and wires them."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from core.errors import TuneloopError
from curation.data import versions as V
from curation.data.formats import FORMATS, parse_column_map, read_records
from curation.data.imports import import_file
from curation.ui.common import RECORD_HEADERS, chat_messages, record_rows
from ui.kit import bind, error_markdown, refresh_on_select, version_picker

PAGE_SIZE = 20
INTRO = """### Your dataset
Bring your examples in (chat JSONL, Alpaca, ShareGPT, prompt/completion, CSV, Parquet or a Hugging Face
dataset folder). **Every change makes a new version; nothing is ever overwritten**, so any training run can
be traced back to the exact data it saw, and you can roll back at any time."""


def lineage_markdown(ws) -> str:
    current = V.current_version(ws)
    if current is None:
        return "_No dataset yet. Import a file above to create version v1._"
    chain = list(reversed(V.lineage(ws, current.id)))
    steps = " → ".join(f"**{v.name}** {v.step} ({v.num_records:,})" for v in chain)
    return f"**Current version: {current.name}** ({current.num_records:,} records, hash `{current.content_hash[:12]}`)\n\nLineage: {steps}"


def versions_table(ws) -> list[list]:
    current = V.current_version(ws)
    rows = []
    for v in reversed(V.list_versions(ws)):
        counts = ", ".join(f"{k} {c}" for k, c in v.counts.items() if k != "records" and c)
        params = ", ".join(f"{k}={p}" for k, p in v.params.items())
        rows.append(["●" if current and v.id == current.id else "", v.name,
                     f"v{v.parent_id}" if v.parent_id else "—", v.step, v.num_records, counts, params,
                     v.created_at.replace("T", " ").rstrip("Z"), v.content_hash[:12]])
    return rows


VERSION_HEADERS = ["current", "version", "parent", "step", "records", "counts", "parameters", "created (UTC)", "hash"]


def source_of(file, path) -> Path:
    """The file to read: the upload, else the path typed on the server."""
    if file is not None:
        return Path(file if isinstance(file, str) else file.name)
    if path and path.strip():
        return Path(path.strip()).expanduser()
    raise TuneloopError("choose a file to upload, or type a path on the server")


def after_change(ws, pickers: list) -> list:
    """The lineage, the versions table and every picker on the (new) current version."""
    return [lineage_markdown(ws), versions_table(ws)] + [
        gr.update(choices=p.tuneloop_choices(), value=p.tuneloop_default()) for p in pickers]


def preview_file(file, path, fmt_value, columns_value) -> tuple:
    """(message, rows): the first records of a file as they would be imported."""
    try:
        src = source_of(file, path)
        result = read_records(src, format=None if fmt_value == "auto" else fmt_value,
                              column_map=parse_column_map(columns_value), limit=20)
    except Exception as exc:
        return error_markdown(exc), []
    warn = "".join(f"\n- ⚠️ {w}" for w in result.warnings[:10])
    return (f"Detected format **{result.format}**; showing the first {len(result.records)} records. "
            f"Press **Import** to check the whole file and store it.{warn}"), record_rows(result.records)


def import_records(ws, pickers, file, path, fmt_value, columns_value, append_value, progress=gr.Progress()) -> list:
    """Import the file as a new current version: (message, its first rows, then ``after_change``)."""
    try:
        src = source_of(file, path)
        progress(0, desc="reading the file")
        version, result = import_file(
            ws, src, format=None if fmt_value == "auto" else fmt_value,
            column_map=parse_column_map(columns_value), append=append_value,
            progress=lambda f, text: progress(f, desc=text),
            display_name=getattr(file, "orig_name", None) or (Path(src).name if src else None))
    except Exception as exc:
        return [error_markdown(exc), gr.update()] + after_change(ws, pickers)
    warn = "".join(f"\n- ⚠️ {w}" for w in result.warnings[:10])
    more = f"\n- … and {len(result.warnings) - 10} more warnings" if len(result.warnings) > 10 else ""
    msg = (f"✅ Imported **{len(result.records):,} records** ({result.format}) as **{version.name}**, "
           f"now the current version.{warn}{more}")
    return [msg, record_rows(result.records[:20])] + after_change(ws, pickers)


def roll_back(ws, pickers, version) -> list:
    """Make ``version`` the current one: (message, then ``after_change``)."""
    try:
        v = V.set_current(ws, version)
    except Exception as exc:
        return [error_markdown(exc)] + after_change(ws, pickers)
    return [f"✅ **{v.name}** is now the current version."] + after_change(ws, pickers)


def browse(ws, version, query, page_no) -> tuple:
    """(what is shown, one page of matching records, the page number within its range)."""
    if not version:
        return "_No dataset yet._", [], gr.update()
    try:
        found = V.search_records(V.load_records(ws, version), query or "")
    except Exception as exc:
        return error_markdown(exc), [], gr.update()
    pages = max(1, -(-len(found) // PAGE_SIZE))
    page_no = min(max(1, int(page_no or 1)), pages)
    start = (page_no - 1) * PAGE_SIZE
    info = f"{len(found):,} records" + (f" match “{query}”" if query else "") + f" · page {page_no} of {pages}"
    return info, record_rows(found[start:start + PAGE_SIZE]), gr.update(value=page_no, maximum=pages)


def show_record(ws, version, evt: gr.SelectData) -> tuple:
    """(conversation, id and meta) of the clicked record."""
    rid = evt.row_value[0] if evt.row_value else None
    rec = next((r for r in V.load_records(ws, version) if r.id == rid), None) if version and rid else None
    if rec is None:
        return [], None
    return chat_messages(rec), {"id": rec.id, **rec.meta}


def compare(ws, a, b) -> tuple:
    """(summary, up to 50 examples of each change) between two versions."""
    if not a or not b:
        return "Choose two versions.", []
    try:
        d = V.diff_versions(ws, a, b)
    except Exception as exc:
        return error_markdown(exc), []
    s = d.summary()
    rows = [["added", r.id, "", r.text()[:300]] for r in d.added[:50]]
    rows += [["removed", r.id, r.text()[:300], ""] for r in d.removed[:50]]
    rows += [["changed", new.id, old.text()[:300], new.text()[:300]] for old, new in d.changed[:50]]
    return (f"**v{d.a} → v{d.b}**: {s['added']:,} added · {s['removed']:,} removed · "
            f"{s['changed']:,} changed · {s['unchanged']:,} unchanged (up to 50 examples of each below)"), rows


def export(ws, version, fmt_value, progress=gr.Progress()) -> tuple:
    """(download, message): a version written as JSONL, Parquet or a zipped Hugging Face dataset folder."""
    if not version:
        return None, "Choose a version."
    try:
        progress(0.1, desc="writing the export")
        out_dir = Path(tempfile.mkdtemp(prefix="tuneloop-export-"))
        v = V.get_version(ws, version)
        if fmt_value == "hf":
            import shutil
            folder = V.export_version(ws, v.id, out_dir / f"{v.name}-hf", "hf")
            path = shutil.make_archive(str(out_dir / f"{v.name}-hf"), "zip", folder)
        else:
            path = V.export_version(ws, v.id, out_dir / f"{v.name}.{fmt_value}", fmt_value)
    except Exception as exc:
        return None, error_markdown(exc)
    return str(path), f"✅ {v.name} exported as {fmt_value} ({v.num_records:,} records)."


def overview(ws) -> tuple:
    """(lineage, versions table) as they stand."""
    return lineage_markdown(ws), versions_table(ws)


def build(ws) -> None:
    """The Data tab, inside the caller's Blocks."""
    with gr.Tab("Data", id="data") as tab:
        gr.Markdown(INTRO)
        lineage = gr.Markdown(lineage_markdown(ws), elem_id="data-lineage")
        with gr.Tabs():
            with gr.Tab("Import"):
                with gr.Row():
                    with gr.Column(scale=2):
                        upload = gr.File(label="File to import (.jsonl, .json, .csv, .tsv, .parquet)",
                                         file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet"], elem_id="data-upload")
                        path_box = gr.Textbox(label="…or a path on the server (file, or a Hugging Face dataset folder)",
                                              placeholder="/data/tickets.jsonl", elem_id="data-path")
                    with gr.Column(scale=1):
                        fmt = gr.Dropdown(["auto"] + list(FORMATS), value="auto", label="Format",
                                          info="auto detects it from the first record")
                        columns = gr.Textbox(label="CSV columns (optional)",
                                             placeholder="prompt=question,completion=answer,id=ticket",
                                             info="which columns hold the question, the answer, the id")
                        append = gr.Checkbox(label="Add to the current version", value=False,
                                             info="off: the file starts a new dataset lineage")
                with gr.Row():
                    preview_btn = gr.Button("Preview", elem_id="data-preview-btn")
                    import_btn = gr.Button("Import", variant="primary", elem_id="data-import-btn")
                status = gr.Markdown(elem_id="data-import-status")
                preview = gr.Dataframe(headers=RECORD_HEADERS, label="Preview: the first records as they will be imported",
                                       interactive=False, wrap=True)
            with gr.Tab("Versions"):
                gr.Markdown("Every version, newest first. **Roll back** makes an older version the current one: "
                            "every step (scrubbing, dedup, splits, training) then starts from it. Nothing is deleted.")
                table = gr.Dataframe(headers=VERSION_HEADERS, value=versions_table(ws), interactive=False,
                                     wrap=True, elem_id="data-versions")
                with gr.Row():
                    rollback_pick = version_picker(ws, "Version")
                    rollback_btn = gr.Button("Make this the current version (roll back)", elem_id="data-rollback-btn")
                rollback_status = gr.Markdown()
            with gr.Tab("Browse") as browse_tab:
                with gr.Row():
                    browse_pick = version_picker(ws, "Version")
                    search = gr.Textbox(label="Search (all words, in text, id and meta)", placeholder="refund ORD-")
                    page = gr.Number(label="Page", value=1, minimum=1, precision=0)
                browse_info = gr.Markdown()
                records_df = gr.Dataframe(headers=RECORD_HEADERS, interactive=False, wrap=True, elem_id="data-records")
                gr.Markdown("Click a row to read the whole conversation.")
                with gr.Row():
                    convo = gr.Chatbot(label="Conversation", height=360)
                    meta_json = gr.JSON(label="Record id and meta")
            with gr.Tab("Compare versions"):
                with gr.Row():
                    diff_a = version_picker(ws, "From (older)", value=None)
                    diff_b = version_picker(ws, "To (newer)")
                    diff_btn = gr.Button("Compare")
                diff_summary = gr.Markdown()
                diff_df = gr.Dataframe(headers=["change", "id", "before", "after"], interactive=False, wrap=True)
            with gr.Tab("Export"):
                gr.Markdown("Download a version: **JSONL** (one record per line), **Parquet**, or a zipped "
                            "**Hugging Face dataset** folder (one split per key when the version has splits).")
                with gr.Row():
                    export_pick = version_picker(ws, "Version")
                    export_fmt = gr.Radio(["jsonl", "parquet", "hf"], value="jsonl", label="Format")
                    export_btn = gr.Button("Export")
                export_file = gr.File(label="Download", interactive=False)
                export_status = gr.Markdown()


    pickers = [rollback_pick, browse_pick, diff_a, diff_b, export_pick]
    changed = [lineage, table] + pickers
    quiet = dict(api_name=False)
    upload.upload(preview_file, [upload, path_box, fmt, columns], [status, preview], **quiet)
    preview_btn.click(preview_file, [upload, path_box, fmt, columns], [status, preview], **quiet)
    import_btn.click(bind(import_records, ws, pickers), [upload, path_box, fmt, columns, append],
                     [status, preview] + changed, **quiet)
    rollback_btn.click(bind(roll_back, ws, pickers), [rollback_pick], [rollback_status] + changed, **quiet)
    for trigger in (browse_pick.change, search.submit, page.submit, browse_tab.select):
        trigger(bind(browse, ws), [browse_pick, search, page], [browse_info, records_df, page], **quiet)
    records_df.select(bind(show_record, ws), [browse_pick], [convo, meta_json], **quiet)
    diff_btn.click(bind(compare, ws), [diff_a, diff_b], [diff_summary, diff_df], **quiet)
    export_btn.click(bind(export, ws), [export_pick, export_fmt], [export_file, export_status], **quiet)
    refresh_on_select(tab, ws, pickers)
    tab.select(bind(overview, ws), None, [lineage, table], **quiet)
