"""The Data tab: import a file, see the versions as a lineage, browse, compare, export, roll back.

In the house pattern (see ``curation.ui.review``): ``layout`` creates the widgets (a ``DataWidgets``), the
module-level handlers take the workspace, the widgets and the values the page sent and return a dict keyed
by component, the presenters (``lineage_markdown``, ``versions_table``) are plain functions, and ``build``
only wires them with ``ui.kit.bind``. The work is ``curation.data`` (formats, imports, versions)."""
from __future__ import annotations

import html
import re
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from core.errors import TuneloopError
from core.workspace import export_folder
from curation.data import versions as V
from curation.data.export import EXPORT_FORMATS
from curation.data.formats import FORMATS, parse_column_map, read_records
from curation.data.records import canonical_json
from curation.data.index import (build_in_background, built_index, cancel_build, index_status, record_index,
                                  snapshot_page, snapshot_record, snapshot_search)
from curation.data.imports import import_file, skipped_lines, skipped_records
from curation.review.labels import label_field
from curation.ui.common import RECORD_HEADERS, chat_messages, record_rows, short
from ui.kit import CancelRegistry, bind, clear_on_input, error_markdown, refresh_on_select, version_picker

PAGE_SIZE = 20
INDEX_POLL_S = 1.0              # how often the Browse tab's index bar asks how far a background build is
IMPORTS = CancelRegistry()     # per browser tab: the Cancel button of an import under way
EXPORTS = CancelRegistry()     # per browser tab: the Export sub-tab's Cancel
INTRO = """### Your dataset
Bring your examples in: chat/OpenAI messages (tool calls too), Alpaca, Dolly, ShareGPT, prompt/completion,
OASST trees or preference pairs (prompt/chosen/rejected), as JSONL, JSON, CSV, Parquet or a Hugging Face
dataset folder; a column mapping fits any other column names. **Every change makes a new version; nothing is
ever overwritten**, so any training run can be traced back to the exact data it saw, and you can roll back at
any time."""


# -- presenters -----------------------------------------------------------------------------------

def lineage_markdown(ws) -> str:
    """The current version and the steps that made it, oldest first."""
    current = V.current_version(ws)
    if current is None:
        return "_No dataset yet. Import a file above to create version v1._"
    chain = list(reversed(V.lineage(ws, current.id)))
    steps = " → ".join(f"**{v.name}** {v.step} ({v.num_records:,})" for v in chain)
    return f"**Current version: {current.name}** ({current.num_records:,} records, hash `{current.content_hash[:12]}`)\n\nLineage: {steps}"


def versions_table(ws) -> list[list]:
    """Every version as a row of the versions table (``VERSION_HEADERS``), newest first, the current one marked."""
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
# Tables fit the page: fixed shares of its width, long cells wrapped (and the longest cut short)
RECORD_WIDTHS = ["12%", "6%", "30%", "30%", "8%", "14%"]
VERSION_WIDTHS = ["6%", "7%", "7%", "8%", "8%", "16%", "26%", "12%", "10%"]
DIFF_HEADERS = ["change", "id", "before", "after"]
DIFF_WIDTHS = ["8%", "12%", "40%", "40%"]
CONTEXT_WORDS = 8


def highlight_change(before: str, after: str) -> tuple[str, str]:
    """The two texts as HTML with what changed marked: removed words struck through in ``before``, added words
    marked in ``after``; long unchanged stretches shortened to a few words either side of each change."""
    import difflib

    old, new = before.split(), after.split()
    left, right = [], []

    def same(words: list[str], first: bool, last: bool) -> str:
        if len(words) > 2 * CONTEXT_WORDS:
            head = [] if first else words[:CONTEXT_WORDS]
            tail = [] if last else words[-CONTEXT_WORDS:]
            words = head + ["…"] + tail
        return html.escape(" ".join(words))

    ops = difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
    for i, (op, a0, a1, b0, b1) in enumerate(ops):
        if op == "equal":
            text = same(old[a0:a1], i == 0, i == len(ops) - 1)
            left.append(text)
            right.append(text)
            continue
        if a1 > a0:
            left.append(f"<del>{html.escape(' '.join(old[a0:a1]))}</del>")
        if b1 > b0:
            right.append(f"<mark>{html.escape(' '.join(new[b0:b1]))}</mark>")
    return " ".join(left), " ".join(right)


# -- widgets --------------------------------------------------------------------------------------

class DataWidgets(SimpleNamespace):
    """The Data tab's components by name (``layout`` fills it), and the groups the handlers read and write."""

    @property
    def pickers(self) -> list:
        """Every version picker of the tab."""
        return [self.rollback_pick, self.browse_pick, self.diff_a, self.diff_b, self.export_pick]

    @property
    def source(self) -> set:
        """What says which file to read and how."""
        return {self.upload, self.path_box, self.fmt, self.columns, self.skip_bad}

    @property
    def changed(self) -> list:
        """What a new current version changes: the lineage, the versions table and every picker."""
        return [self.lineage, self.table, *self.pickers]

    @property
    def indexing(self) -> list:
        """What shows a big version's background index build: its bar, Stop and Build buttons, the timer."""
        return [self.index_bar, self.index_cancel, self.index_build, self.index_timer]

    @property
    def browsing(self) -> list:
        return [self.browse_info, self.records_df, self.page_no, *self.indexing]


def layout(ws) -> DataWidgets:
    """The Data tab's widgets, inside the caller's Blocks; nothing is wired yet."""
    w = DataWidgets()
    with gr.Tab("Data", id="data") as w.tab:
        gr.Markdown(INTRO)
        w.lineage = gr.Markdown(lineage_markdown(ws), elem_id="data-lineage")
        with gr.Tabs():
            with gr.Tab("Import"):
                with gr.Row():
                    with gr.Column(scale=2):
                        w.upload = gr.File(label="File to import (.jsonl, .json, .csv, .tsv, .parquet)",
                                           file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet"],
                                           elem_id="data-upload")
                        w.path_box = gr.Textbox(label="…or a path on the server (file, or a Hugging Face dataset folder)",
                                                placeholder="/data/tickets.jsonl", elem_id="data-path")
                    with gr.Column(scale=1):
                        w.fmt = gr.Dropdown(["auto"] + list(FORMATS), value="auto", label="Format",
                                            info="auto detects the schema from the first record; preference "
                                                 "pairs make a preference version for DPO")
                        w.columns = gr.Textbox(label="Column mapping (optional, any file type)",
                                               placeholder="prompt=instruction,input=context,completion=response",
                                               info="field=column: which columns hold the prompt, input, "
                                                    "completion, id, system, messages, chosen, rejected")
                        w.skip_bad = gr.Checkbox(label="Skip the bad records", value=False,
                                                 info="import the good ones and list every bad record (line and "
                                                      "reason), kept with the version; off: one bad record "
                                                      "refuses the file")
                        w.append = gr.Checkbox(label="Add to the current version", value=False,
                                               info="off: the file starts a new dataset lineage")
                with gr.Row():
                    w.preview_btn = gr.Button("Preview", elem_id="data-preview-btn")
                    w.import_btn = gr.Button("Import", variant="primary", elem_id="data-import-btn")
                    w.cancel_import_btn = gr.Button("Cancel import", elem_id="data-import-cancel-btn")
                w.status = gr.Markdown(elem_id="data-import-status")
                w.preview = gr.Dataframe(headers=RECORD_HEADERS, interactive=False, wrap=True,
                                         column_widths=RECORD_WIDTHS, max_chars=300,
                                         label="Preview: the first records as they will be imported")
            with gr.Tab("Versions"):
                gr.Markdown("Every version, newest first. **Roll back** makes an older version the current one: "
                            "every step (scrubbing, dedup, splits, training) then starts from it. Nothing is deleted.")
                w.table = gr.Dataframe(headers=VERSION_HEADERS, value=versions_table(ws), interactive=False,
                                       wrap=True, column_widths=VERSION_WIDTHS, max_chars=200,
                                       elem_id="data-versions")
                with gr.Row():
                    w.rollback_pick = version_picker(ws, "Version")
                    w.rollback_btn = gr.Button("Make this the current version (roll back)", elem_id="data-rollback-btn")
                w.rollback_status = gr.Markdown()
            with gr.Tab("Browse") as w.browse_tab:
                with gr.Row():
                    w.browse_pick = version_picker(ws, "Version")
                    w.search = gr.Textbox(label="Search (all words, in text, id and meta)", placeholder="refund ORD-")
                    w.page_no = gr.Number(label="Page", value=1, minimum=1, precision=0)
                w.browse_info = gr.Markdown()
                with gr.Row():
                    w.index_bar = gr.HTML(visible=False, elem_id="data-index-bar")
                    w.index_cancel = gr.Button("Stop building the index", visible=False, scale=0,
                                               elem_id="data-index-cancel")
                    w.index_build = gr.Button("Build the index", visible=False, scale=0, elem_id="data-index-build")
                # ticks only while a big version's index is being built in the background
                w.index_timer = gr.Timer(INDEX_POLL_S, active=False)
                w.records_df = gr.Dataframe(headers=RECORD_HEADERS, interactive=False, wrap=True,
                                            column_widths=RECORD_WIDTHS, max_chars=300, elem_id="data-records")
                gr.Markdown("Click a row to read the whole conversation.")
                with gr.Row():
                    w.convo = gr.Chatbot(label="Conversation", height=360)
                    w.meta_json = gr.JSON(label="Record id and meta")
            with gr.Tab("Compare versions"):
                with gr.Row():
                    w.diff_a = version_picker(ws, "From (older)", value=None)
                    w.diff_b = version_picker(ws, "To (newer)")
                    w.diff_btn = gr.Button("Compare")
                w.diff_summary = gr.Markdown()
                w.diff_df = gr.Dataframe(headers=DIFF_HEADERS, datatype=["str", "str", "html", "html"],
                                         interactive=False, wrap=True, column_widths=DIFF_WIDTHS,
                                         elem_id="data-diff")
            with gr.Tab("Export"):
                gr.Markdown("Download a version: **JSONL** (one record per line), **CSV**, **Parquet**, or a "
                            "zipped **Hugging Face dataset** folder. A split version comes as a zip of one file "
                            "per split (`train`, `validation`, `test`), so that no tool trains on the test set.")
                with gr.Row():
                    w.export_pick = version_picker(ws, "Version")
                    w.export_fmt = gr.Radio(list(EXPORT_FORMATS), value="jsonl", label="Format")
                    w.export_single = gr.Checkbox(False, label="One file, test set mixed in",
                                                  info="a split version as one file; meta.split tells the splits "
                                                       "apart, but load_dataset reads it all as train")
                    with gr.Column():
                        w.export_btn = gr.Button("Export")
                        w.export_cancel_btn = gr.Button("Cancel export", variant="stop", elem_id="data-export-cancel")
                w.export_file = gr.File(label="Download", interactive=False)
                w.export_status = gr.Markdown()
    return w


# -- handlers -------------------------------------------------------------------------------------

def source_of(file, path) -> Path:
    """The file to read: the upload, else the path typed on the server."""
    if file is not None:
        return Path(file if isinstance(file, str) else file.name)
    if path and path.strip():
        return Path(path.strip()).expanduser()
    raise TuneloopError("choose a file to upload, or type a path on the server")


def after_change(ws, w: DataWidgets) -> dict:
    """The lineage, the versions table and every picker on the (new) current version."""
    return {w.lineage: lineage_markdown(ws), w.table: versions_table(ws),
            **{p: gr.update(choices=p.tuneloop_choices(), value=p.tuneloop_default()) for p in w.pickers}}


def _format(value) -> str | None:
    """The format the Format dropdown names (None: detect it)."""
    return None if value == "auto" else value


def preview_file(ws, w: DataWidgets, data: dict) -> dict:
    """The first records of the file as they would be imported, and the format detected."""
    try:
        result = read_records(source_of(data[w.upload], data[w.path_box]), format=_format(data[w.fmt]),
                              column_map=parse_column_map(data[w.columns]), limit=20,
                              skip_bad=bool(data.get(w.skip_bad)))
    except Exception as exc:
        return {w.status: error_markdown(exc), w.preview: []}
    warn = "".join(f"\n- ⚠️ {msg}" for msg in result.warnings[:10])
    warn += "".join(f"\n- ⏭️ skipped {line}" for line in skipped_lines(result.skipped, 10))
    kind = " (preference pairs)" if result.kind == "preference" else ""
    return {w.status: f"Detected format **{result.format}**{kind}; showing the first {len(result.records)} records. "
                      f"Press **Import** to check the whole file and store it.{warn}",
            w.preview: record_rows(result.records)}


def import_records(ws, w: DataWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Import the file as a new current version (a preference file as a preference version); its first rows are
    shown, every skipped record is listed, and every picker moves to the current version. **Cancel import** ends
    it at its next progress report, with nothing stored."""
    file = data[w.upload]
    stop = IMPORTS.start(request)

    def report(fraction: float, text: str) -> None:
        if stop.is_set():
            raise TuneloopError("the import was cancelled; nothing was stored")
        progress(fraction, desc=text)

    try:
        src = source_of(file, data[w.path_box])
        progress(0, desc="reading the file")
        version, result = import_file(
            ws, src, format=_format(data[w.fmt]), column_map=parse_column_map(data[w.columns]),
            append=data[w.append], progress=report,
            display_name=getattr(file, "orig_name", None) or src.name, skip_bad=bool(data.get(w.skip_bad)))
    except Exception as exc:
        return {w.status: error_markdown(exc), **after_change(ws, w)}
    finally:
        IMPORTS.finish(request, stop)
    warn = "".join(f"\n- ⚠️ {msg}" for msg in result.warnings[:10])
    more = f"\n- … and {len(result.warnings) - 10} more warnings" if len(result.warnings) > 10 else ""
    if result.skipped:
        more += (f"\n\n**Skipped {len(result.skipped):,} bad records** (kept with {version.name}; Browse lists "
                 f"them too):" + "".join(f"\n- {line}" for line in skipped_lines(result.skipped, 50)))
    if version.kind == "preference":
        done = (f"✅ Imported **{result.count:,} preference pairs** ({result.format}) as **{version.name}**, "
                f"a preference version: name it in a DPO run's preferences (it does not become the current version).")
    else:
        done = (f"✅ Imported **{result.count:,} records** ({result.format}) as **{version.name}**, "
                f"now the current version.")
        if version.num_records >= V.BACKGROUND_INDEX_FROM and index_status(ws, version.id):
            done += " Its search index is being built in the background (Browse shows how far it is)."
    return {w.status: f"{done}{warn}{more}",
            w.preview: record_rows(result.records[:20]), **after_change(ws, w)}


def cancel_import(ws, w: DataWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's import."""
    return {w.status: "Cancelling…" if IMPORTS.cancel(request) else "No import of yours is running."}


def roll_back(ws, w: DataWidgets, data: dict) -> dict:
    """Make the chosen version the current one; every picker moves to it."""
    try:
        v = V.set_current(ws, data[w.rollback_pick])
    except Exception as exc:
        return {w.rollback_status: error_markdown(exc), **after_change(ws, w)}
    return {w.rollback_status: f"✅ **{v.name}** is now the current version.", **after_change(ws, w)}


def browse(ws, w: DataWidgets, data: dict, progress=gr.Progress()) -> dict:
    """One page of the chosen version's records that match the search, and what is shown. It reads the version's
    index (``curation.data.index``), built with a progress bar the first time a small version is searched; a big
    one's is built in the background (from its import on) and, until it is, pages and searches read the
    snapshot, with how far the index is."""
    version, query = data[w.browse_pick], data[w.search] or ""
    if not version:
        return {w.browse_info: "_No dataset yet._", w.records_df: [], **index_widgets(ws, w, None)}
    try:
        wanted = max(1, int(data[w.page_no] or 1))
        unbuilt = built_index(ws, version) is None
        big = unbuilt and V.get_version(ws, version).num_records >= V.BACKGROUND_INDEX_FROM
        if big:
            build_in_background(ws, version)
        if unbuilt and not query.strip():
            # a plain page needs no index: the snapshot's row groups that hold it are read, and nothing is built
            total = V.get_version(ws, version).num_records
            pages = max(1, -(-total // PAGE_SIZE))
            page_no = min(wanted, pages)
            shown = snapshot_page(ws, version, (page_no - 1) * PAGE_SIZE, PAGE_SIZE)
        elif big and built_index(ws, version) is None:
            total, shown = snapshot_search(ws, version, query, start=(wanted - 1) * PAGE_SIZE, limit=PAGE_SIZE)
            pages = max(1, -(-total // PAGE_SIZE))
            page_no = min(wanted, pages)
            if page_no != wanted:
                total, shown = snapshot_search(ws, version, query, start=(page_no - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        else:
            index = record_index(ws, version, progress=lambda f, text: progress(f, desc=text))
            total, shown = index.search(query, start=(wanted - 1) * PAGE_SIZE, limit=PAGE_SIZE)
            pages = max(1, -(-total // PAGE_SIZE))
            page_no = min(wanted, pages)
            if page_no != wanted:
                total, shown = index.search(query, start=(page_no - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    except Exception as exc:
        return {w.browse_info: error_markdown(exc), w.records_df: [], **index_widgets(ws, w, version)}
    info = f"{total:,} records" + (f" match “{query}”" if query else "") + f" · page {page_no} of {pages}"
    status = index_status(ws, version) if big else ""
    if status:
        info += f" · {status}"
    skipped = skipped_records(ws, version)
    if skipped:
        info += (f"\n\n**{len(skipped):,} bad records were skipped at import:**"
                 + "".join(f"\n- {line}" for line in skipped_lines(skipped, 20)))
    return {w.browse_info: info, w.records_df: record_rows(shown, label_field(ws, version)),
            w.page_no: gr.update(value=page_no, maximum=pages), **index_widgets(ws, w, version)}


# -- the background index build of a big version: its bar, Stop and Build ---------------------------

_BUILT_SHARE = re.compile(r"(\d+)% built")


def index_bar_html(status: str) -> str:
    """The bar of a background index build from its status line ("search index: 40% built (...)")."""
    share = _BUILT_SHARE.search(status)
    bar = (f'<progress max="100" value="{share.group(1)}" style="width: 16em; vertical-align: middle"></progress> '
           if share else "")
    return f'<div class="tuneloop-index-bar">{bar}{html.escape(status)}</div>'


def index_widgets(ws, w: DataWidgets, version, *, just_built: bool = False) -> dict:
    """The index bar, its buttons and its timer for ``version``: while its background build runs, the bar with
    how far it is, **Stop building the index**, and the timer ticking; once it stopped unfinished (cancelled or
    failed), what happened and **Build the index**; nothing for a built index (``just_built``: say it is done)
    or a small version (built, with a progress bar, on its first search)."""
    hidden = {w.index_bar: gr.update(visible=False), w.index_cancel: gr.update(visible=False),
              w.index_build: gr.update(visible=False), w.index_timer: gr.Timer(active=False)}
    if not version:
        return hidden
    status = index_status(ws, version)
    if not status:
        if just_built:
            return {**hidden, w.index_bar: gr.update(visible=True, value=index_bar_html(
                "✅ the search index is built: pages and searches now read it"))}
        return hidden
    if V.get_version(ws, version).num_records < V.BACKGROUND_INDEX_FROM:
        return hidden
    running = bool(_BUILT_SHARE.search(status))
    return {w.index_bar: gr.update(visible=True, value=index_bar_html(status)),
            w.index_cancel: gr.update(visible=running), w.index_build: gr.update(visible=not running),
            w.index_timer: gr.Timer(active=running)}


def index_tick(ws, w: DataWidgets, data: dict) -> dict:
    """The timer's tick while a build runs: how far it is now; when it has finished, that it is done (and the
    timer stops)."""
    return index_widgets(ws, w, data[w.browse_pick], just_built=True)


def cancel_index(ws, w: DataWidgets, data: dict) -> dict:
    """Stop the chosen version's background index build (no file is left). Pages and searches go on reading
    the snapshot, with the same results, only slower; **Build the index** or the next search starts it again."""
    version = data[w.browse_pick]
    stopped = bool(version) and cancel_build(ws, version)
    out = index_widgets(ws, w, version)
    if stopped:
        note = (f"stopped building the search index of {V.get_version(ws, version).name}: pages and searches "
                f"read the snapshot meanwhile (same results, slower); Build the index, or the next search, "
                f"starts it again")
        out[w.index_bar] = gr.update(visible=True, value=index_bar_html(note))
    elif version:
        note = ("the search index was already built" if not index_status(ws, version)
                else "no index build of this version is running")
        out[w.index_bar] = gr.update(visible=True, value=index_bar_html(note))
    return out


def start_index(ws, w: DataWidgets, data: dict) -> dict:
    """Start (again) building the chosen big version's index in the background; the bar follows it."""
    version = data[w.browse_pick]
    if version:
        build_in_background(ws, version)
    return index_widgets(ws, w, version, just_built=True)


def show_record(ws, w: DataWidgets, data: dict, evt: gr.SelectData) -> dict:
    """The clicked record's whole conversation, its id and meta."""
    version = data[w.browse_pick]
    rid = evt.row_value[0] if evt.row_value else None
    index = built_index(ws, version) if version and rid else None
    rec = (index.record(rid) if index else snapshot_record(ws, version, rid)) if version and rid else None
    if rec is None:
        return {w.convo: [], w.meta_json: None}
    return {w.convo: chat_messages(rec), w.meta_json: {"id": rec.id, **rec.meta}}


def compare(ws, w: DataWidgets, data: dict) -> dict:
    """What changed between the two chosen versions, with up to 50 examples of each change."""
    a, b = data[w.diff_a], data[w.diff_b]
    if not a or not b:
        return {w.diff_summary: "Choose two versions.", w.diff_df: []}
    try:
        d = V.diff_versions(ws, a, b)
    except Exception as exc:
        return {w.diff_summary: error_markdown(exc), w.diff_df: []}
    s = d.summary()
    rows = [["added", r.id, "", html.escape(short(r.text(), 300))] for r in d.added[:50]]
    rows += [["removed", r.id, html.escape(short(r.text(), 300)), ""] for r in d.removed[:50]]
    rows += [["changed", new.id, *highlight_change(_compared(old), _compared(new))] for old, new in d.changed[:50]]
    return {w.diff_summary: f"**v{d.a} → v{d.b}**: {s['added']:,} added · {s['removed']:,} removed · "
                            f"{s['changed']:,} changed · {s['unchanged']:,} unchanged (up to 50 examples of each below)",
            w.diff_df: rows}


def _compared(record) -> str:
    """What Compare shows of a changed record: its text, then its meta (a changed label is a change too)."""
    return record.text() + "\n" + canonical_json(record.meta)


def export(ws, w: DataWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """The chosen version to download: one file, or for a split version (and any HF dataset) a zip with one
    file per split, unless one file with the test set mixed in is asked for. **Cancel export** ends it at its
    next progress report with nothing written (the files are staged and moved into place only at the end)."""
    version, fmt, single = data[w.export_pick], data[w.export_fmt], bool(data.get(w.export_single))
    if not version:
        return {w.export_file: None, w.export_status: "Choose a version."}
    stop = EXPORTS.start(request)

    def report(fraction: float, text: str) -> None:
        if stop.is_set():
            raise TuneloopError(f"the export was cancelled; nothing was written ({version} is unchanged; an "
                                "earlier export of it, if any, is left as it was)")
        progress(fraction, desc=text)

    try:
        report(0.0, "reading the version")
        out_dir = export_folder(ws)
        v = V.get_version(ws, version)
        split = any(r.split for r in V.load_records(ws, v.id))
        if fmt == "hf" or (split and not single):
            done = V.export_version(ws, v.id, out_dir / f"{v.name}-{fmt}.zip", fmt, progress=report)
        else:
            done = V.export_version(ws, v.id, out_dir / f"{v.name}.{fmt}", fmt, single_file=single, progress=report)
    except Exception as exc:
        return {w.export_file: None, w.export_status: error_markdown(exc)}
    finally:
        EXPORTS.finish(request, stop)
    return {w.export_file: str(done.path),
            w.export_status: f"✅ {v.name} exported as {fmt}: {done.summary()}"
                             + (" (one file: the test set is mixed in)" if split and single and fmt != "hf" else "")}


def cancel_export(ws, w: DataWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's export at its next progress report."""
    return {w.export_status: "Cancelling…" if EXPORTS.cancel(request) else "No export of yours is running."}


def overview(ws, w: DataWidgets) -> dict:
    """Opening the tab: the lineage and the versions table as they stand."""
    return {w.lineage: lineage_markdown(ws), w.table: versions_table(ws)}


# -- wiring ---------------------------------------------------------------------------------------

def build(ws) -> DataWidgets:
    """The Data tab inside the caller's Blocks: ``layout``'s widgets wired to the handlers above."""
    w = layout(ws)

    def on(event, handler, inputs, outputs, **kw):
        return event(bind(handler, ws, w), inputs, outputs, api_name=False, **kw)

    for event in (w.upload.upload, w.preview_btn.click):
        on(event, preview_file, w.source, [w.status, w.preview])
    on(w.import_btn.click, import_records, {*w.source, w.append}, [w.status, w.preview, *w.changed])
    on(w.cancel_import_btn.click, cancel_import, None, [w.status])
    on(w.rollback_btn.click, roll_back, {w.rollback_pick}, [w.rollback_status, *w.changed])
    for event in (w.browse_pick.change, w.search.submit, w.page_no.submit, w.browse_tab.select):
        on(event, browse, {w.browse_pick, w.search, w.page_no}, w.browsing)
    on(w.index_timer.tick, index_tick, {w.browse_pick}, w.indexing, show_progress="hidden")
    on(w.index_cancel.click, cancel_index, {w.browse_pick}, w.indexing)
    on(w.index_build.click, start_index, {w.browse_pick}, w.indexing)
    on(w.records_df.select, show_record, {w.browse_pick}, [w.convo, w.meta_json])
    on(w.diff_btn.click, compare, {w.diff_a, w.diff_b}, [w.diff_summary, w.diff_df])
    on(w.export_btn.click, export, {w.export_pick, w.export_fmt, w.export_single}, [w.export_file, w.export_status])
    on(w.export_cancel_btn.click, cancel_export, None, [w.export_status])
    refresh_on_select(w.tab, ws, w.pickers)
    clear_on_input([w.rollback_pick], [w.rollback_status])
    clear_on_input([w.diff_a, w.diff_b], [w.diff_summary])
    clear_on_input([w.export_pick, w.export_fmt], [w.export_status])
    on(w.tab.select, overview, None, [w.lineage, w.table])
    return w
