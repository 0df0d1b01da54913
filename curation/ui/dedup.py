"""The Dedup tab: find exact and near duplicates, browse clusters side by side with their differences,
override keep/drop per member, check quality filters, and apply either as a new version.
Only wires widgets to ``curation.dedup`` and ``curation.dedup.filters``."""
from __future__ import annotations

import difflib
import html
import threading

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from curation.data import versions as V
from curation.dedup.clusters import KEEP_POLICIES, TEXT_MODES, DedupOptions, DedupResult, apply_dedup, find_duplicates_in_version
from curation.dedup.filters import FILTERS, FilterOptions, apply_filters, filter_version
from curation.data.records import Record
from curation.ui.common import current_name, short, user_errors, version_choices

CLUSTER_HEADERS = ["cluster", "size", "kind", "keeper", "question"]
FILTER_HEADERS = ["filter", "records", "what it means", "examples"]
INTRO = """### Duplicates and quality filters
The same ticket sent twice, a reply pasted again with a typo fixed: duplicates make a model memorise them and
skew evaluation. **Exact** duplicates are equal after ignoring case, spacing and punctuation; **near**
duplicates are lightly edited copies (similar character shingles, every pair checked; records that only share
a greeting, a signature or a template answer are never merged). Each cluster keeps one record; open a cluster
to compare its members with the keeper and override keep or drop."""
_cancel_flags: dict[str, threading.Event] = {}


def summary_markdown(result: DedupResult, overrides: dict[str, str]) -> str:
    c = result.counts(overrides)
    return (f"**{c['records']:,} records** · {c['exact_duplicates']:,} exact duplicates · "
            f"{c['near_duplicate_clusters']:,} near-duplicate clusters · {c['exact_clusters']:,} exact-only clusters · "
            f"**{c['to_drop']:,} records to drop** ({c['exact_dropped']:,} exact, {c['near_dropped']:,} near)"
            + (f" · {c['overrides']} override(s)" if c["overrides"] else ""))


def histogram_frame(result: DedupResult | None) -> pd.DataFrame:
    sizes = result.size_histogram() if result else {}
    return pd.DataFrame({"cluster size": [str(k) for k in sizes], "clusters": list(sizes.values())})


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


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "default"


def build(ws) -> None:
    defaults = DedupOptions()
    with gr.Tab("Dedup"):
        gr.Markdown(INTRO)
        with gr.Row():
            version = gr.Dropdown(version_choices(ws), value=current_name(ws), label="Version", scale=2,
                                  elem_id="dedup-version")
            threshold = gr.Slider(0.3, 1.0, step=0.05, value=defaults.threshold, label="Similarity threshold")
            text = gr.Radio(list(TEXT_MODES), value=defaults.text, label="Compare")
            keep = gr.Dropdown(list(KEEP_POLICIES), value=defaults.keep, label="Keep in each cluster")
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                ngram = gr.Number(defaults.ngram, precision=0, label="Shingle length (characters)")
                num_perm = gr.Number(defaults.num_perm, precision=0, label="MinHash permutations")
        with gr.Row():
            run_button = gr.Button("Find duplicates", variant="primary", elem_id="dedup-run")
            cancel_button = gr.Button("Cancel")
            refresh = gr.Button("Refresh versions")
        summary = gr.Markdown(elem_id="dedup-summary")
        histogram = gr.BarPlot(value=histogram_frame(None), x="cluster size", y="clusters", label="Cluster sizes")
        clusters = gr.Dataframe(headers=CLUSTER_HEADERS, interactive=False, label="Clusters (largest first)",
                                elem_id="dedup-clusters")
        with gr.Row():
            cluster_pick = gr.Dropdown([], label="Open cluster", allow_custom_value=True, elem_id="dedup-cluster")
            member_pick = gr.Dropdown([], label="Member", allow_custom_value=True, elem_id="dedup-member")
            keep_button = gr.Button("Keep this member", elem_id="dedup-keep")
            drop_button = gr.Button("Drop this member", elem_id="dedup-drop")
        members = gr.HTML(elem_id="dedup-members")
        apply_button = gr.Button("Apply: make the deduplicated version", variant="primary", elem_id="dedup-apply")
        apply_status = gr.Markdown(elem_id="dedup-apply-status")

        with gr.Accordion("Quality filters", open=False):
            with gr.Row():
                f_min = gr.Number(FilterOptions.min_answer_words, precision=0, label="Shortest answer (words)")
                f_max = gr.Number(FilterOptions.max_answer_words, precision=0, label="Longest answer (words)")
                f_repeat = gr.Slider(0, 1, step=0.05, value=FilterOptions.max_repeated_ngrams,
                                     label="Most repeated 3-grams (share)")
                f_garbage = gr.Slider(0, 1, step=0.05, value=FilterOptions.max_garbage,
                                      label="Most non-text characters (share)")
            f_enabled = gr.CheckboxGroup(list(FILTERS), value=list(FILTERS), label="Filters to apply")
            f_run = gr.Button("Check filters", elem_id="filters-run")
            f_table = gr.Dataframe(headers=FILTER_HEADERS, interactive=False, label="Records failing each filter",
                                   elem_id="filters-table")
            f_apply = gr.Button("Apply: remove the flagged records", elem_id="filters-apply")
            f_status = gr.Markdown(elem_id="filters-status")

        result_state = gr.State(None)
        overrides_state = gr.State({})
        filter_state = gr.State(None)

        def records_of(result: DedupResult) -> dict[str, Record]:
            return {r.id: r for r in V.load_records(ws, result.version_id)}

        def require(result):
            if result is None:
                raise TuneloopError("nothing to show yet; press 'Find duplicates' first")
            return result

        @user_errors
        def on_run(version_name, thr, mode, policy, n, perms, request: gr.Request = None, progress=gr.Progress()):
            flag = _cancel_flags.setdefault(_session(request), threading.Event())
            flag.clear()
            options = DedupOptions(threshold=float(thr), ngram=int(n or defaults.ngram),
                                   num_perm=int(perms or defaults.num_perm), text=mode, keep=policy)
            progress(0, desc="Reading records")
            result = find_duplicates_in_version(ws, version_name or None, options,
                                                progress=lambda f, d: progress(f, desc=d), cancel=flag.is_set)
            records = records_of(result)
            numbers = [str(i) for i in range(1, len(result.clusters) + 1)]
            first = numbers[0] if numbers else None
            html_view, member_update = show_cluster(result, {}, first, records)
            return (result, {}, summary_markdown(result, {}), histogram_frame(result),
                    pd.DataFrame(cluster_rows(result, records), columns=CLUSTER_HEADERS),
                    gr.update(choices=numbers, value=first), member_update, html_view, "")

        def on_cancel(request: gr.Request = None):
            _cancel_flags.setdefault(_session(request), threading.Event()).set()
            return "Cancelling…"

        def show_cluster(result, overrides, number, records=None):
            if result is None or not number or not str(number).isdigit() or not (
                    1 <= int(number) <= len(result.clusters)):
                return "", gr.update(choices=[], value=None)
            records = records or records_of(result)
            cluster = result.clusters[int(number) - 1]
            ids = [m.id for m in cluster.members]
            return cluster_html(result, int(number), records, overrides), gr.update(choices=ids, value=ids[-1])

        @user_errors
        def on_pick(result, overrides, number):
            return show_cluster(require(result), overrides, number)

        @user_errors
        def on_override(result, overrides, number, member, choice):
            result = require(result)
            if not member:
                raise TuneloopError("choose a member of the cluster first")
            overrides = {**overrides, member: choice}
            html_view, _ = show_cluster(result, overrides, number)
            return overrides, html_view, summary_markdown(result, overrides)

        @user_errors
        def on_apply(result, overrides):
            result = require(result)
            version_made = apply_dedup(ws, result, overrides)
            return (f"Made **{version_made.describe()}** (now current).",
                    gr.update(choices=version_choices(ws), value=current_name(ws)))

        @user_errors
        def on_filters(version_name, low, high, repeat, garbage, progress=gr.Progress()):
            options = FilterOptions(min_answer_words=int(low or 0), max_answer_words=int(high or 1),
                                    max_repeated_ngrams=float(repeat), max_garbage=float(garbage))
            report = filter_version(ws, version_name or None, options, progress=lambda f, d: progress(f, desc=d))
            return report, filter_frame(report), f"{len(report.flagged):,} of {report.total:,} records flagged."

        @user_errors
        def on_filters_apply(report, enabled):
            if report is None:
                raise TuneloopError("press 'Check filters' first")
            version_made = apply_filters(ws, report, only=list(enabled))
            return (f"Made **{version_made.describe()}** (now current).",
                    gr.update(choices=version_choices(ws), value=current_name(ws)))

        run_button.click(
            on_run, [version, threshold, text, keep, ngram, num_perm],
            [result_state, overrides_state, summary, histogram, clusters, cluster_pick, member_pick, members,
             apply_status])
        cancel_button.click(on_cancel, None, summary)
        refresh.click(lambda: gr.update(choices=version_choices(ws), value=current_name(ws)), None, version)
        cluster_pick.change(on_pick, [result_state, overrides_state, cluster_pick], [members, member_pick])
        keep_button.click(lambda r, o, n, m: on_override(r, o, n, m, "keep"),
                          [result_state, overrides_state, cluster_pick, member_pick],
                          [overrides_state, members, summary])
        drop_button.click(lambda r, o, n, m: on_override(r, o, n, m, "drop"),
                          [result_state, overrides_state, cluster_pick, member_pick],
                          [overrides_state, members, summary])
        apply_button.click(on_apply, [result_state, overrides_state], [apply_status, version])
        f_run.click(on_filters, [version, f_min, f_max, f_repeat, f_garbage], [filter_state, f_table, f_status])
        f_apply.click(on_filters_apply, [filter_state, f_enabled], [f_status, version])
