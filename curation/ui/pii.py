"""The PII tab: settings, scan of the current version, before/after review, apply as a new version.
Only wires widgets to ``curation.pii`` and ``curation.pii.review``."""
from __future__ import annotations

import threading

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from curation.pii.scrub import ENTITY_TYPES, OPERATORS, CustomRecognizer, PiiOptions, replace_spans
from curation.pii.review import (apply_scan, decide, edit_message, get_scan, latest_open_scan, load_settings,
                                 review_items, run_scan, save_settings, workspace_salt)
from curation.ui.common import user_errors

DECISION_FILTERS = ("all", "pending", "accept", "reject", "edit")
_cancel_flags: dict[str, threading.Event] = {}


def build(ws) -> None:
    settings = load_settings(ws)
    with gr.Tab("PII"):
        gr.Markdown("Find personal data (names, emails, phones, cards, SSNs, IBANs, IPs, street addresses) in the "
                    "current version, review each change, then apply to make a scrubbed version. Order numbers, "
                    "SKUs, versions, prices and codes are protected.")
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                entities = gr.CheckboxGroup(list(ENTITY_TYPES), value=settings.entities, label="Entity types")
            with gr.Row():
                operator = gr.Dropdown(list(OPERATORS), value=settings.default_operator, label="Replace with")
                threshold = gr.Slider(0, 1, step=0.05, value=settings.default_threshold, label="Minimum score")
                default_protect = gr.Checkbox(value=settings.default_protect,
                                              label="Built-in protected patterns (order numbers, SKUs, versions, prices)")
            per_type = gr.Dataframe(headers=["entity", "operator", "threshold"], datatype=["str", "str", "str"],
                                    value=_per_type_rows(settings), interactive=True, row_count=(1, "dynamic"),
                                    label="Per type (leave blank for the default)")
            with gr.Row():
                allow = gr.Textbox("\n".join(settings.allow), lines=3, label="Allow-list: one per line, re:PATTERN for a regex")
                protect = gr.Textbox("\n".join(settings.protect), lines=3, label="Protected patterns: one regex per line")
            gr.Markdown("**Custom recognizers**")
            with gr.Row():
                c_name = gr.Textbox(label="Name")
                c_entity = gr.Textbox(label="Entity type", placeholder="EMPLOYEE_ID")
                c_kind = gr.Radio(["regex", "deny"], value="regex", label="Kind")
                c_pattern = gr.Textbox(label="Regex, or deny-list words (comma separated)")
                c_context = gr.Textbox(label="Context words (comma separated)")
                c_score = gr.Number(0.6, label="Score")
            with gr.Row():
                add_custom = gr.Button("Add recognizer")
                remove_name = gr.Textbox(label="Remove recognizer named", scale=2)
                remove_custom = gr.Button("Remove")
            custom_table = gr.Dataframe(value=_custom_rows(settings), interactive=False,
                                        headers=["name", "entity", "kind", "pattern / words", "context", "score"])
            save = gr.Button("Save settings")
            settings_status = gr.Markdown()

        with gr.Row():
            scan_button = gr.Button("Scan current version", variant="primary", elem_id="pii-scan")
            cancel_button = gr.Button("Cancel scan")
        scan_status = gr.Markdown(elem_id="pii-scan-status")
        chart = gr.Markdown(elem_id="pii-chart")
        scan_id = gr.State(None)

        with gr.Row():
            type_filter = gr.Dropdown(["all"], value="all", label="Show type", allow_custom_value=True)
            decision_filter = gr.Dropdown(list(DECISION_FILTERS), value="all", label="Decision")
            refresh = gr.Button("Refresh review list")
        review_table = gr.Dataframe(headers=["record", "types", "decision"], interactive=False, label="Changed records")
        record_pick = gr.Dropdown([], label="Record", allow_custom_value=True, elem_id="pii-record")
        message_pick = gr.Dropdown([], label="Message", allow_custom_value=True)
        with gr.Row():
            before = gr.HighlightedText(label="Before", combine_adjacent=False, show_legend=True, elem_id="pii-before")
            after = gr.HighlightedText(label="After", combine_adjacent=False, show_legend=True, elem_id="pii-after")
        edit_box = gr.Textbox(lines=4, label="Edit the scrubbed message")
        with gr.Row():
            accept = gr.Button("Accept", elem_id="pii-accept")
            reject = gr.Button("Reject (keep original)", elem_id="pii-reject")
            save_edit = gr.Button("Save edit")
            accept_all = gr.Button("Accept all shown")
            reject_all = gr.Button("Reject all shown")
        review_status = gr.Markdown(elem_id="pii-review-status")
        apply_button = gr.Button("Apply: make the scrubbed version", variant="primary", elem_id="pii-apply")
        apply_status = gr.Markdown(elem_id="pii-apply-status")

        # -- handlers ----------------------------------------------------------------------
        def current_settings(ents, op, thr, rows, allow_text, protect_text, use_default, custom_rows):
            for r in _rows(rows):
                if r[0] and str(r[2]).strip() and not _is_number(r[2]):
                    raise TuneloopError(f"threshold for {r[0]} must be a number between 0 and 1, not '{r[2]}'")
            return PiiOptions(
                entities=list(ents), default_operator=op, default_threshold=float(thr),
                operators={r[0]: r[1] for r in _rows(rows) if r[0] and r[1]},
                thresholds={r[0]: float(r[2]) for r in _rows(rows) if r[0] and str(r[2]).strip()},
                allow=[a for a in allow_text.splitlines() if a.strip()],
                protect=[p for p in protect_text.splitlines() if p.strip()], default_protect=bool(use_default),
                custom=[_custom_from_row(r) for r in _rows(custom_rows) if r[0]]).validate()

        settings_inputs = [entities, operator, threshold, per_type, allow, protect, default_protect, custom_table]

        @user_errors
        def on_save(*values):
            save_settings(ws, current_settings(*values))
            return "Settings saved."

        @user_errors
        def on_add_custom(rows, name, entity, kind, pattern, context, score):
            recognizer = CustomRecognizer(
                name=name.strip(), entity=entity.strip().upper(), kind=kind,
                pattern=pattern if kind == "regex" else "",
                words=[w.strip() for w in pattern.split(",") if w.strip()] if kind == "deny" else [],
                context=[w.strip().lower() for w in context.split(",") if w.strip()], score=float(score or 0.6))
            recognizer.check()
            existing = [r for r in _rows(rows) if r[0] and r[0] != recognizer.name]
            return pd.DataFrame(existing + [_custom_row(recognizer)], columns=CUSTOM_COLUMNS)

        def on_remove_custom(rows, name):
            return pd.DataFrame([r for r in _rows(rows) if r[0] and r[0] != name.strip()], columns=CUSTOM_COLUMNS)

        @user_errors
        def on_scan(*values, request: gr.Request = None, progress=gr.Progress()):
            settings_now = current_settings(*values)
            save_settings(ws, settings_now)
            flag = _cancel_flags.setdefault(_session(request), threading.Event())
            flag.clear()
            progress(0, desc="Loading the PII engine")

            def report(done, total):
                progress((done, max(total, 1)), desc="Scanning messages", unit="messages")

            scan = run_scan(ws, settings_now, progress=report, cancel=flag.is_set)
            counts = {k: v for k, v in scan.counts.items() if k != "records_with_pii"}
            types = ["all"] + sorted(counts)
            return (scan.id, scan.describe(), _chart_markdown(counts), gr.update(choices=types, value="all"),
                    *list_review(scan.id, "all", "all"))

        def on_cancel(request: gr.Request = None):
            _cancel_flags.setdefault(_session(request), threading.Event()).set()
            return "Cancelling…"

        def resolve(sid):
            if sid is not None:
                return sid
            scan = latest_open_scan(ws)
            if scan is None:
                raise TuneloopError("no open scan of the current version; press 'Scan current version'")
            return scan.id

        @user_errors
        def list_review(sid, type_value, decision_value):
            sid = resolve(sid)
            items = review_items(ws, sid, entity=None if type_value in (None, "all") else type_value,
                                 decision=None if decision_value in (None, "all") else decision_value)
            frame = pd.DataFrame([(i.record_id, ", ".join(i.entities), i.decision) for i in items],
                                 columns=["record", "types", "decision"])
            first = items[0].record_id if items else None
            return (sid, frame, gr.update(choices=[i.record_id for i in items], value=first),
                    f"{len(items)} record(s) shown")

        @user_errors
        def show_record(sid, record_id, message_value=None):
            if not record_id:
                return gr.update(choices=[], value=None), [], [], ""
            sid = resolve(sid)
            item = _item(ws, sid, record_id)
            choices = [f"{m.index + 1} ({m.role})" for m in item.messages]
            chosen = message_value if message_value in choices else choices[0]
            msg = item.messages[choices.index(chosen)]
            proposed = msg.proposed
            if item.edited is not None:
                proposed = item.edited[msg.index]["content"]
            scan = get_scan(ws, sid)
            return (gr.update(choices=choices, value=chosen), _highlight_before(msg),
                    _highlight_after(msg, scan.settings, workspace_salt(ws)), proposed)

        @user_errors
        def set_decision(sid, record_id, decision, type_value, decision_value):
            sid = resolve(sid)
            if not record_id:
                raise TuneloopError("choose a record first")
            decide(ws, sid, [record_id], decision)
            return list_review(sid, type_value, decision_value)

        @user_errors
        def set_all(sid, decision, type_value, decision_value):
            sid = resolve(sid)
            items = review_items(ws, sid, entity=None if type_value in (None, "all") else type_value,
                                 decision=None if decision_value in (None, "all") else decision_value)
            decide(ws, sid, [i.record_id for i in items], decision)
            return list_review(sid, type_value, decision_value)

        @user_errors
        def on_save_edit(sid, record_id, message_value, text, type_value, decision_value):
            sid = resolve(sid)
            item = _item(ws, sid, record_id)
            index = item.messages[[f"{m.index + 1} ({m.role})" for m in item.messages].index(message_value)].index
            edit_message(ws, sid, record_id, index, text)
            return list_review(sid, type_value, decision_value)

        @user_errors
        def on_apply(sid):
            sid = resolve(sid)
            version = apply_scan(ws, sid)
            return None, f"Created {version.describe()}"

        review_outputs = [scan_id, review_table, record_pick, review_status]
        save.click(on_save, settings_inputs, settings_status)
        add_custom.click(on_add_custom, [custom_table, c_name, c_entity, c_kind, c_pattern, c_context, c_score],
                         custom_table)
        remove_custom.click(on_remove_custom, [custom_table, remove_name], custom_table)
        scan_button.click(on_scan, settings_inputs, [scan_id, scan_status, chart, type_filter, *review_outputs])
        cancel_button.click(on_cancel, None, scan_status)
        refresh.click(list_review, [scan_id, type_filter, decision_filter], review_outputs)
        type_filter.change(list_review, [scan_id, type_filter, decision_filter], review_outputs)
        decision_filter.change(list_review, [scan_id, type_filter, decision_filter], review_outputs)
        record_pick.change(show_record, [scan_id, record_pick], [message_pick, before, after, edit_box])
        message_pick.input(show_record, [scan_id, record_pick, message_pick], [message_pick, before, after, edit_box])
        filters = [type_filter, decision_filter]
        accept.click(lambda s, r, t, d: set_decision(s, r, "accept", t, d), [scan_id, record_pick, *filters], review_outputs)
        reject.click(lambda s, r, t, d: set_decision(s, r, "reject", t, d), [scan_id, record_pick, *filters], review_outputs)
        accept_all.click(lambda s, t, d: set_all(s, "accept", t, d), [scan_id, *filters], review_outputs)
        reject_all.click(lambda s, t, d: set_all(s, "reject", t, d), [scan_id, *filters], review_outputs)
        save_edit.click(on_save_edit, [scan_id, record_pick, message_pick, edit_box, *filters], review_outputs)
        apply_button.click(on_apply, scan_id, [scan_id, apply_status])


CUSTOM_COLUMNS = ["name", "entity", "kind", "pattern / words", "context", "score"]


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _session(request) -> str:
    return getattr(request, "session_hash", None) or "default"


def _rows(frame) -> list[list]:
    if frame is None:
        return []
    if isinstance(frame, pd.DataFrame):
        return [["" if pd.isna(v) else v for v in row] for row in frame.itertuples(index=False)]
    return [list(r) for r in frame.get("data", [])] if isinstance(frame, dict) else [list(r) for r in frame]


def _per_type_rows(settings: PiiOptions) -> pd.DataFrame:
    types = sorted(set(settings.operators) | set(settings.thresholds))
    return pd.DataFrame([(t, settings.operators.get(t, ""), str(settings.thresholds.get(t, ""))) for t in types] or
                        [("", "", "")], columns=["entity", "operator", "threshold"])


def _custom_row(c: CustomRecognizer) -> list:
    return [c.name, c.entity, c.kind, c.pattern if c.kind == "regex" else ", ".join(c.words), ", ".join(c.context),
            c.score]


def _custom_rows(settings: PiiOptions) -> pd.DataFrame:
    return pd.DataFrame([_custom_row(c) for c in settings.custom], columns=CUSTOM_COLUMNS)


def _custom_from_row(row) -> CustomRecognizer:
    name, entity, kind, body, context, score = (list(row) + [""] * 6)[:6]
    return CustomRecognizer(name=str(name), entity=str(entity), kind=str(kind),
                            pattern=str(body) if kind == "regex" else "",
                            words=[w.strip() for w in str(body).split(",") if w.strip()] if kind == "deny" else [],
                            context=[w.strip() for w in str(context).split(",") if w.strip()],
                            score=float(score or 0.6))


def _chart_markdown(counts: dict) -> str:
    """Findings per type as a bar chart in text (Gradio's bar plot drops bars when updated from empty)."""
    if not counts:
        return "No personal data found."
    top = max(counts.values())
    rows = [f"| {entity} | {n} | {'█' * max(1, round(30 * n / top))} |" for entity, n in
            sorted(counts.items(), key=lambda kv: -kv[1])]
    return "**Findings per type**\n\n| type | findings | |\n|---|---:|---|\n" + "\n".join(rows)


def _item(ws, sid, record_id):
    for item in review_items(ws, sid):
        if item.record_id == record_id:
            return item
    raise TuneloopError(f"record {record_id} has no findings in this scan")


def _highlight_before(msg) -> list[tuple[str, str | None]]:
    out, pos = [], 0
    for start, end, entity, _ in msg.spans:
        out += [(msg.original[pos:start], None), (msg.original[start:end], entity)]
        pos = end
    return [seg for seg in out + [(msg.original[pos:], None)] if seg[0]]


def _highlight_after(msg, settings: PiiOptions, salt: str) -> list[tuple[str, str | None]]:
    out, pos = [], 0
    for start, end, entity, score in msg.spans:
        value = msg.original[start:end]
        out += [(msg.original[pos:start], None),
                (replace_spans(value, [(0, len(value), entity, score)], settings, salt), entity)]
        pos = end
    return [seg for seg in out + [(msg.original[pos:], None)] if seg[0]]
