"""The Dedup tab: find exact and near duplicates, browse clusters side by side with their differences,
override keep/drop per member, check quality filters, and apply either as a new version.

In the house pattern (see ``curation.ui.review``): ``layout`` creates the widgets (a ``DedupWidgets``; the
forms come from ``DedupOptions`` and ``FilterOptions``), the module-level handlers take the workspace, the
widgets and the values the page sent and return a dict keyed by component, the presenters
(``summary_markdown``, ``cluster_html`` ...) are plain functions, and ``build`` only wires them with
``ui.kit.bind``. The work is ``curation.dedup.clusters`` and ``curation.dedup.filters``.
"""
from __future__ import annotations

import difflib
import html
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from curation.data import versions as V
from curation.data.records import Record
from curation.dedup.clusters import TEXT_MODES, DedupOptions, DedupResult, apply_dedup, find_duplicates_in_version
from curation.dedup.filters import FILTERS, FilterOptions, apply_filters, filter_version
from curation.ui.common import short
from ui.forms import form_values, options_form, options_from_form
from ui.kit import CancelRegistry, bind, clear_on_input, error_markdown, refresh_on_select, version_picker

CLUSTER_HEADERS = ["cluster", "size", "kind", "keeper", "question"]
FILTER_HEADERS = ["filter", "records", "what it means", "examples"]
FINDING_HEADERS = ["record", "filter", "why", "question", "answer"]
INTRO = """### Duplicates and quality filters
The same ticket sent twice, a reply pasted again with a typo fixed: duplicates make a model memorise them and
skew evaluation. **Exact** duplicates are equal after ignoring case, spacing and punctuation; **near**
duplicates are lightly edited copies (similar character shingles, every pair checked; records that only share
a greeting, a signature or a template answer are never merged, nor short questions that differ in what they are
about, "3 quarters" / "3 dimes"). Each cluster keeps one record; open a cluster to compare its members with the
keeper and override keep or drop. The quality filters say why they flag each record; a filter that flags good
data for a label (one-word answers in `open_qa`) can be switched off for that label."""
SEARCHES = CancelRegistry()
CHECKS = CancelRegistry()      # per browser tab: the quality filters' Cancel


# -- presenters -----------------------------------------------------------------------------------

def summary_markdown(result: DedupResult, overrides: dict[str, str]) -> str:
    c = result.counts(overrides)
    return (f"**{c['records']:,} records** · {c['exact_duplicates']:,} exact duplicates · "
            f"{c['near_duplicate_clusters']:,} near-duplicate clusters · {c['exact_clusters']:,} exact-only clusters · "
            f"**{c['to_drop']:,} records to drop** ({c['exact_dropped']:,} exact, {c['near_dropped']:,} near)"
            + (f" · {c['overrides']} override(s)" if c["overrides"] else ""))


def histogram_frame(result: DedupResult | None) -> pd.DataFrame:
    sizes = result.size_histogram() if result else {}
    ordered = sorted(sizes)
    return pd.DataFrame({"cluster size": [str(k) for k in ordered], "clusters": [sizes[k] for k in ordered]})


def histogram_update(result: DedupResult | None) -> dict:
    """The cluster-size chart with its bars in numeric order (2, 3, 10, 11; a text axis would sort 10 first)."""
    frame = histogram_frame(result)
    return gr.update(value=frame, sort=list(frame["cluster size"]))


def cluster_rows(result: DedupResult, records: dict[str, Record]) -> list[list]:
    return [[n, c.size, c.kind, c.keeper, short(records[c.keeper].prompt, 80)]
            for n, c in enumerate(result.clusters, start=1)]


def _tokens(text: str) -> list[str]:
    return text.split()


def _key(token: str) -> str:
    return token.lower().strip(".,;:!?\"'()[]")


def diff_html(keeper: str, other: str) -> str:
    """``other`` with the words the keeper lacks marked, and the keeper's missing words struck through."""
    a, b = _tokens(keeper), _tokens(other)
    out = []
    matcher = difflib.SequenceMatcher(a=[_key(t) for t in a], b=[_key(t) for t in b], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(b[j1:j2])))
            continue
        if i2 > i1:
            out.append(f'<del class="dd-del">{html.escape(" ".join(a[i1:i2]))}</del>')
        if j2 > j1:
            out.append(f'<ins class="dd-ins">{html.escape(" ".join(b[j1:j2]))}</ins>')
    return " ".join(out)


def _turns(record: Record, roles: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in record.messages if m["role"] in roles]


def cluster_html(result: DedupResult, number: int, records: dict[str, Record], overrides: dict[str, str]) -> str:
    """The members of cluster ``number`` side by side, the keeper first, differences to it highlighted."""
    cluster = result.clusters[number - 1]
    keeper = records[cluster.keeper]
    roles = TEXT_MODES[result.options.text]
    drop = result.drop_ids(overrides)
    columns = []
    for member in cluster.members:
        record = records[member.id]
        fate = "drop" if member.id in drop else "keep"
        label = "keeper" if member.id == cluster.keeper else f"similarity {member.similarity:.2f}"
        label += " · exact copy" if member.exact and member.id != cluster.keeper else ""
        label += " · overridden" if member.id in overrides else ""
        turns = []
        keeper_turns = _turns(keeper, roles)
        for k, (role, text) in enumerate(_turns(record, roles)):
            base = keeper_turns[k][1] if k < len(keeper_turns) else ""
            body = html.escape(text) if member.id == cluster.keeper else diff_html(base, text)
            turns.append(f'<div class="dd-turn"><b>{role}</b>: {body}</div>')
        columns.append(
            f'<div class="dd-member dd-{fate}" data-id="{html.escape(member.id)}">'
            f'<div class="dd-head"><code>{html.escape(member.id)}</code> · {label} · '
            f'<span class="dd-fate">{fate.upper()}</span></div>{"".join(turns)}</div>')
    style = ("<style>.dd-cluster{display:flex;gap:12px;overflow-x:auto}.dd-member{flex:1;min-width:260px;"
             "border:1px solid #d1d5db;border-radius:8px;padding:8px}.dd-drop{opacity:.75;background:#fef2f2}"
             ".dd-keep{background:#f0fdf4}.dd-head{font-size:.9em;margin-bottom:6px}.dd-turn{margin:4px 0}"
             "ins.dd-ins{background:#bbf7d0;text-decoration:none}del.dd-del{background:#fecaca}</style>")
    return f'{style}<div class="dd-cluster" data-cluster="{number}">{"".join(columns)}</div>'


def filter_frame(report) -> pd.DataFrame:
    rows = [[name, report.counts.get(name, 0), FILTERS[name], ", ".join(report.examples.get(name, []))]
            for name in FILTERS if name in report.counts]
    return pd.DataFrame(rows, columns=FILTER_HEADERS)


def findings_frame(report, records: dict[str, Record]) -> pd.DataFrame:
    """One row per flagged record and filter: why it was flagged, beside the question and the answer."""
    rows = []
    for rid, found in report.findings.items():
        record = records[rid]
        answers = [m["content"] for m in record.messages if m["role"] == "assistant"]
        for name, why in found.items():
            rows.append([rid, name, why, short(record.prompt, 80), short(answers[-1] if answers else "", 80)])
    return pd.DataFrame(rows, columns=FINDING_HEADERS)


# -- widgets --------------------------------------------------------------------------------------

class DedupWidgets(SimpleNamespace):
    """The Dedup tab's components by name (``layout`` fills it); ``form`` holds the ``DedupOptions`` fields
    and ``filter_form`` the ``FilterOptions`` fields, both rendered by ``ui.forms``."""

    @property
    def found(self) -> list:
        """What a duplicate search fills."""
        return [self.result, self.overrides, self.summary, self.histogram, self.clusters, self.cluster_pick,
                self.member_pick, self.members, self.apply_status]

    @property
    def cluster(self) -> set:
        """What names the open cluster and member."""
        return {self.result, self.overrides, self.cluster_pick, self.member_pick}


def layout(ws) -> DedupWidgets:
    """The Dedup tab's widgets, created inside the caller's Blocks; nothing is wired yet."""
    w = DedupWidgets(form={}, filter_form={})

    def form(*names):
        w.form.update(options_form(DedupOptions, only=names, elem_prefix="dedup-option"))

    with gr.Tab("Dedup", id="dedup") as w.tab:
        gr.Markdown(INTRO)
        with gr.Row():
            w.version = version_picker(ws, "Version", scale=2, elem_id="dedup-version")
            form("threshold", "text", "keep")
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                form("ngram", "num_perm")
        with gr.Row():
            w.run_btn = gr.Button("Find duplicates", variant="primary", elem_id="dedup-run")
            w.cancel_btn = gr.Button("Cancel")
        w.summary = gr.Markdown(elem_id="dedup-summary")
        w.histogram = gr.BarPlot(value=histogram_frame(None), x="cluster size", y="clusters", label="Cluster sizes")
        w.clusters = gr.Dataframe(headers=CLUSTER_HEADERS, interactive=False, label="Clusters (largest first)",
                                  elem_id="dedup-clusters")
        with gr.Row():
            w.cluster_pick = gr.Dropdown([], label="Open cluster", allow_custom_value=True, elem_id="dedup-cluster")
            w.member_pick = gr.Dropdown([], label="Member", allow_custom_value=True, elem_id="dedup-member")
            w.keep_btn = gr.Button("Keep this member", elem_id="dedup-keep")
            w.drop_btn = gr.Button("Drop this member", elem_id="dedup-drop")
        w.members = gr.HTML(elem_id="dedup-members")
        w.apply_btn = gr.Button("Apply: make the deduplicated version", variant="primary", elem_id="dedup-apply")
        w.apply_status = gr.Markdown(elem_id="dedup-apply-status")

        with gr.Accordion("Quality filters", open=False):
            switches = ("skip", "label_field", "off_for_labels")
            with gr.Row():
                w.filter_form.update(options_form(FilterOptions, skip=switches, elem_prefix="filters-option"))
            w.filter_form.update(options_form(FilterOptions, only=("skip",), elem_prefix="filters-option"))
            with gr.Row():
                w.filter_form.update(options_form(FilterOptions, only=switches[1:], elem_prefix="filters-option"))
            with gr.Row():
                w.filter_run = gr.Button("Check filters", elem_id="filters-run")
                w.filter_cancel = gr.Button("Cancel the check", variant="stop", elem_id="filters-cancel")
            w.filter_table = gr.Dataframe(headers=FILTER_HEADERS, interactive=False,
                                          label="Records failing each filter", elem_id="filters-table")
            w.filter_findings = gr.Dataframe(headers=FINDING_HEADERS, interactive=False,
                                             label="Why each record was flagged (switch a filter off for a label "
                                                   "above when it flags good data)", elem_id="filters-findings")
            w.filter_apply = gr.Button("Apply: remove the flagged records", elem_id="filters-apply")
            w.filter_status = gr.Markdown(elem_id="filters-status")

        w.result = gr.State(None)
        w.overrides = gr.State({})
        w.filter_report = gr.State(None)
    return w


# -- handlers: duplicates -------------------------------------------------------------------------

def records_of(ws, result: DedupResult) -> dict[str, Record]:
    """The records of the version the duplicates were found in, by id."""
    return {r.id: r for r in V.load_records(ws, result.version_id)}


def found_result(w: DedupWidgets, data: dict) -> DedupResult:
    """The page's duplicate search; a TuneloopError when there is none yet."""
    if data[w.result] is None:
        raise TuneloopError("nothing to show yet; press 'Find duplicates' first")
    return data[w.result]


def cluster_view(w: DedupWidgets, result: DedupResult, overrides: dict, number, records: dict[str, Record]) -> dict:
    """Cluster ``number`` side by side, its last member chosen; nothing for a number that is no cluster."""
    if not str(number or "").isdigit() or not 1 <= int(number) <= len(result.clusters):
        return {w.members: "", w.member_pick: gr.update(choices=[], value=None)}
    ids = [m.id for m in result.clusters[int(number) - 1].members]
    return {w.members: cluster_html(result, int(number), records, overrides),
            w.member_pick: gr.update(choices=ids, value=ids[-1])}


def run_dedup(ws, w: DedupWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Find duplicates in the chosen version with the form's options; the largest cluster opened."""
    stop = SEARCHES.start(request)
    try:
        options = options_from_form(DedupOptions, form_values(w.form, data))
        progress(0, desc="Reading records")
        result = find_duplicates_in_version(ws, data[w.version] or None, options,
                                            progress=lambda fraction, text: progress(fraction, desc=text),
                                            cancel=stop.is_set)
    except Exception as exc:
        return {w.summary: error_markdown(exc)}
    finally:
        SEARCHES.finish(request, stop)
    records = records_of(ws, result)
    numbers = [str(i) for i in range(1, len(result.clusters) + 1)]
    first = numbers[0] if numbers else None
    return {w.result: result, w.overrides: {}, w.summary: summary_markdown(result, {}),
            w.histogram: histogram_update(result),
            w.clusters: pd.DataFrame(cluster_rows(result, records), columns=CLUSTER_HEADERS),
            w.cluster_pick: gr.update(choices=numbers, value=first),
            **cluster_view(w, result, {}, first, records), w.apply_status: ""}


def cancel_dedup(ws, w: DedupWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's duplicate search."""
    return {w.summary: "Cancelling…" if SEARCHES.cancel(request) else "No search of yours is running."}


def open_cluster(ws, w: DedupWidgets, data: dict) -> dict:
    """The chosen cluster's members side by side."""
    try:
        result = found_result(w, data)
        return cluster_view(w, result, data[w.overrides], data[w.cluster_pick], records_of(ws, result))
    except Exception as exc:
        return {w.summary: error_markdown(exc)}


def _override(ws, w: DedupWidgets, data: dict, fate: str) -> dict:
    try:
        result = found_result(w, data)
        if not data[w.member_pick]:
            raise TuneloopError("choose a member of the cluster first")
        overrides = {**data[w.overrides], data[w.member_pick]: fate}
        shown = cluster_view(w, result, overrides, data[w.cluster_pick], records_of(ws, result))
    except Exception as exc:
        return {w.summary: error_markdown(exc)}
    return {w.overrides: overrides, w.members: shown[w.members], w.summary: summary_markdown(result, overrides)}


def keep_member(ws, w: DedupWidgets, data: dict) -> dict:
    """Keep the chosen member whatever the keeper policy says."""
    return _override(ws, w, data, "keep")


def drop_member(ws, w: DedupWidgets, data: dict) -> dict:
    """Drop the chosen member whatever the keeper policy says."""
    return _override(ws, w, data, "drop")


def apply_dedup_version(ws, w: DedupWidgets, data: dict) -> dict:
    """Apply: the version without the dropped records (overrides honoured), which becomes current."""
    try:
        made = apply_dedup(ws, found_result(w, data), data[w.overrides])
    except Exception as exc:
        return {w.apply_status: error_markdown(exc)}
    return {w.apply_status: f"Made **{made.describe()}** (now current).",
            w.version: gr.update(choices=w.version.tuneloop_choices(), value=made.name)}


# -- handlers: quality filters --------------------------------------------------------------------

def check_filters(ws, w: DedupWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Run the quality filters on the chosen version with the filter form's limits (nothing is changed).
    **Cancel the check** ends it at its next progress report; the tables keep the previous check's results."""
    stop = CHECKS.start(request)

    def report_progress(fraction: float, text: str) -> None:
        if stop.is_set():
            raise TuneloopError("the filter check was cancelled; nothing was changed (the tables still show the "
                                "previous check, if any)")
        progress(fraction, desc=text)

    try:
        options = options_from_form(FilterOptions, form_values(w.filter_form, data))
        report = filter_version(ws, data[w.version] or None, options, progress=report_progress)
    except Exception as exc:
        return {w.filter_status: error_markdown(exc)}
    finally:
        CHECKS.finish(request, stop)
    records = {r.id: r for r in V.load_records(ws, report.version_id)}
    return {w.filter_report: report, w.filter_table: filter_frame(report),
            w.filter_findings: findings_frame(report, records),
            w.filter_status: f"{len(report.flagged):,} of {report.total:,} records flagged."}


def cancel_filters(ws, w: DedupWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's quality-filter check at its next progress report."""
    return {w.filter_status: "Cancelling…" if CHECKS.cancel(request) else "No filter check of yours is running."}


def apply_filter_version(ws, w: DedupWidgets, data: dict) -> dict:
    """Apply: the checked version without the records the filters flagged, which becomes current."""
    try:
        if data[w.filter_report] is None:
            raise TuneloopError("press 'Check filters' first")
        made = apply_filters(ws, data[w.filter_report])
    except Exception as exc:
        return {w.filter_status: error_markdown(exc)}
    return {w.filter_status: f"Made **{made.describe()}** (now current).",
            w.version: gr.update(choices=w.version.tuneloop_choices(), value=made.name)}


# -- wiring ---------------------------------------------------------------------------------------

def build(ws) -> DedupWidgets:
    """The Dedup tab inside the caller's Blocks: ``layout``'s widgets wired to the handlers above."""
    w = layout(ws)

    def on(event, handler, inputs, outputs, **kw):
        return event(bind(handler, ws, w), inputs, outputs, api_name=False, **kw)

    on(w.run_btn.click, run_dedup, {w.version, *w.form.values()}, w.found)
    on(w.cancel_btn.click, cancel_dedup, None, [w.summary])
    on(w.cluster_pick.change, open_cluster, w.cluster, [w.members, w.member_pick, w.summary])
    on(w.keep_btn.click, keep_member, w.cluster, [w.overrides, w.members, w.summary])
    on(w.drop_btn.click, drop_member, w.cluster, [w.overrides, w.members, w.summary])
    on(w.apply_btn.click, apply_dedup_version, {w.result, w.overrides}, [w.apply_status, w.version])
    on(w.filter_run.click, check_filters, {w.version, *w.filter_form.values()},
       [w.filter_report, w.filter_table, w.filter_findings, w.filter_status])
    on(w.filter_cancel.click, cancel_filters, None, [w.filter_status])
    on(w.filter_apply.click, apply_filter_version, {w.filter_report}, [w.filter_status, w.version])
    refresh_on_select(w.tab, ws, [w.version])
    clear_on_input([w.version], [w.summary, w.apply_status, w.filter_status])
    return w
