"""The Review tab: read a record, fix it, label it, approve / reject / skip it, with the keyboard.

The house pattern for a tab: ``layout`` creates the widgets (a ``ReviewWidgets``), the module-level
handlers take the workspace, the widgets, the values the page sent and the request, and return a dict
keyed by component; ``build`` only wires the two together. The presenters (``record_panel``,
``commit_question``, ``team_tables`` ...) turn review state into Markdown and tables. The work itself is
done by ``curation.review`` (queue, actions, undo, bulk, team, commit) and ``curation.review.labels``.
The keyboard shortcuts are ``ui/static/review.js`` (the app puts it in the page head); ``SHORTCUTS`` is
their single list, which the help overlay shows and hands to the script.
"""
from __future__ import annotations

import html
import json
from types import SimpleNamespace

import gradio as gr

from core.errors import TuneloopError
from curation.data import versions as V
from curation.review.actions import (BULK_ACTIONS, BulkAction, bulk_apply, bulk_preview, save_draft, submit_review,
                                     undo_last_action)
from curation.review.commit import commit_preview, commit_review
from curation.review.labels import (label_field, label_schema, meta_fields, parse_schema, save_schema, schema_gap,
                                    set_label_field, stored_schema)
from curation.review.state import (QueueFilter, RecordView, ReviewState, STATUS_FILTERS, latest_draft_record,
                                   load_draft, review_state)
from curation.review.team import agreement, assign_reviewers, disagreements, reviewer_progress, settle
from curation.ui.common import short
from ui.kit import bind, caller_name, default_version, error_markdown, version_picker

MAX_FIELDS = 4
ANY = "any"
SERIAL = dict(concurrency_id="review-record", concurrency_limit=1)   # one reviewer's events in order
DRAFTS = dict(concurrency_id="review-draft", concurrency_limit=1)    # keystrokes in order, beside the actions
NO_NAME = "type your name in “Your name” first, so your reviews are credited to you"
INTRO = """### Review
Read each conversation, fix what is wrong, label it, then **approve** or **reject** it. Your work is saved as you
go (drafts too) and becomes a new dataset version when the review is **committed**; rejected records leave it,
and every text you overwrite stays in the history. Press **?** for the keyboard shortcuts."""

# (keys as shown, what they do, {key: [verb, element id]} for the script; special keys are handled there)
SHORTCUTS = [
    ("A", "approve (keeps your edits and labels), then the next record", {"a": ["click", "review-approve"]}),
    ("R", "reject, then the next record", {"r": ["click", "review-reject"]}),
    ("S", "skip for now, then the next record", {"s": ["click", "review-skip"]}),
    ("U or Ctrl+Z", "undo your last action", {"u": ["click", "review-undo"]}),
    ("J or →", "next record", {"j": ["click", "review-next"], "ArrowRight": ["click", "review-next"]}),
    ("K or ←", "previous record", {"k": ["click", "review-prev"], "ArrowLeft": ["click", "review-prev"]}),
    ("1 … 9, 0", "choose option 1 … 10 of the active label field (press again on a multi-choice to untick)", {}),
    ("F", "make the next label field active (a free-tags field takes the cursor)", {}),
    ("E", "edit the selected message", {"e": ["focus", "review-msg-edit"]}),
    ("M", "open the list of messages to edit (arrows and Enter choose one, then E)", {"m": ["open", "review-msg-pick"]}),
    ("C", "write a comment", {"c": ["focus", "review-comment"]}),
    ("Ctrl+Enter", "in the comment box: add the comment", {}),
    ("/", "search", {"/": ["focus", "review-search"]}),
    ("Shift+C", "commit the review as a new version (asks to confirm)", {"C": ["click", "review-commit"]}),
    ("Enter", "confirm the commit or bulk action being asked", {}),
    ("Esc", "leave a text box, cancel a question, close this help", {}),
    ("?", "show or hide this help", {}),
]


def keymap() -> dict:
    """The single-key shortcuts for ``review.js``: {key: [verb, element id]}."""
    keys: dict = {}
    for _, _, mapping in SHORTCUTS:
        keys.update(mapping)
    return keys


def help_overlay_html() -> str:
    """The shortcut help (hidden until ? is pressed); it also hands the keymap to ``review.js``."""
    rows = "".join(f"<tr><td><kbd>{html.escape(keys)}</kbd></td><td>{html.escape(what)}</td></tr>"
                   for keys, what, _ in SHORTCUTS)
    return (f'<div id="review-help" data-keymap="{html.escape(json.dumps(keymap()))}" '
            f'data-max-fields="{MAX_FIELDS}" onclick="if (event.target === this) this.classList.remove(\'open\')">'
            f'<div class="panel"><h3>Keyboard shortcuts</h3><table>{rows}</table>'
            f"<p>Shortcuts work when the cursor is not in a text box (press Esc to leave one).</p></div></div>")


# -- presenters -----------------------------------------------------------------------------------

def queue_filter(status, label, source, search, needs, flagged) -> QueueFilter:
    """The queue filter the filter widgets describe ("any" means no filter)."""
    return QueueFilter(status=status or "to do", label="" if not label or label == ANY else label,
                         source="" if not source or source == ANY else source, search=search or "",
                         needs_answer=bool(needs), flagged=bool(flagged))


def label_filter_choices(schema) -> list[str]:
    """The Label filter's choices: any, then field=option for every option of the schema."""
    out = [ANY]
    for f in schema.fields:
        out += [f"{f.name}={o}" for o in f.options]
    return out


def source_choices(state: ReviewState) -> list[str]:
    """The Source filter's choices: any, then every source the version's records name."""
    return [ANY] + state.sources()


def chat_turns(messages) -> list[dict]:
    """A record's messages for gr.Chatbot, numbered as the message picker numbers them."""
    out = []
    for i, m in enumerate(messages, 1):
        text = f"*#{i} system prompt:* {m['content']}" if m["role"] == "system" else m["content"]
        out.append({"role": "user" if m["role"] == "user" else "assistant", "content": text})
    return out


def field_slot_updates(schema, labels: dict) -> list:
    """Updates for the label slots (single, multi, tags per field): the schema's fields shown with
    ``labels``' values, the unused slots hidden."""
    updates = []
    for i in range(MAX_FIELDS):
        f = schema.fields[i] if i < len(schema.fields) else None
        value = labels.get(f.name) if f else None
        label = f"{f.name}" + (f" — {f.description}" if f and f.description else "") if f else ""
        choices = [(f"{n % 10 if n <= 10 else '·'}  {o}", o) for n, o in enumerate(f.options, 1)] if f else []
        updates.append(gr.update(visible=bool(f and f.kind == "single"), choices=choices, label=label,
                                 value=value if f and f.kind == "single" and value in f.options else None))
        multi = [v for v in (value if isinstance(value, list) else [value] if value else []) if f and v in f.options]
        updates.append(gr.update(visible=bool(f and f.kind == "multi"), choices=choices, label=label,
                                 value=multi if f and f.kind == "multi" else []))
        tags = ", ".join(value) if isinstance(value, list) else (value or "")
        updates.append(gr.update(visible=bool(f and f.kind == "tags"), label=label + " (comma-separated)",
                                 value=tags if f and f.kind == "tags" else ""))
    return updates


def labels_from_slots(schema, slot_values) -> dict:
    """The labels the slots hold, by field name (the inverse of ``field_slot_updates``)."""
    out = {}
    for i, f in enumerate(schema.fields[:MAX_FIELDS]):
        single, multi, tags = slot_values[3 * i: 3 * i + 3]
        out[f.name] = single if f.kind == "single" else multi if f.kind == "multi" else tags
    return out


def progress_line(state: ReviewState, reviewer: str | None) -> str:
    """One reviewer's progress on this version, in one line."""
    if not reviewer:
        return ""
    mine = {rid: d[reviewer] for rid, d in state.decisions.items() if reviewer in d}
    assigned = state.assigned.get(reviewer)
    approved = sum(1 for s in mine.values() if s == "approved")
    rejected = sum(1 for s in mine.values() if s == "rejected")
    of = f" of {len(assigned)} assigned to you" if assigned else f" of {state.count:,}"
    return (f"**{reviewer}**: {len(mine)} done{of} · {approved} approved · {rejected} rejected · "
            f"{len(mine) - approved - rejected} skipped")


def record_summary(view: RecordView) -> str:
    """The line above the conversation: id, status, your decision, source, flags, draft."""
    meta = view.record.meta
    bits = [f"**{view.record.id}**", f"status **{view.status}**", f"your decision **{view.my_decision or '—'}**"]
    bits += [f"{k} {html.escape(str(meta[k]))}" for k in ("source", "customer_id") if meta.get(k)]
    if meta.get("flags"):
        bits.append(f"⚑ flagged: {html.escape(str(meta['flags']))}")
    if meta.get("needs_answer"):
        bits.append("needs an answer")
    if view.draft:
        bits.append("✎ draft restored")
    return " · ".join(bits)


def comments_markdown(comments: list[dict]) -> str:
    return "\n".join(f"- **{html.escape(c['by'])}** ({c['at'].replace('T', ' ').rstrip('Z')}): "
                     f"{html.escape(c['text'])}" for c in comments) or "_No comments yet._"


def history_markdown(edits: list[dict]) -> str:
    return "\n".join(f"- #{e['message'] + 1} edited by **{html.escape(e['by'])}** at "
                     f"{e['at'].replace('T', ' ').rstrip('Z')}; before: “{html.escape(short(e['previous'], 200))}”"
                     for e in edits) or "_No edits yet._"


def guidelines_markdown(schema) -> str:
    return schema.guidelines or "_No guidelines yet: an admin can write them in “Label schema”._"


def schema_json(schema) -> str:
    return json.dumps({"fields": [f.to_dict() for f in schema.fields]}, indent=2, ensure_ascii=False)


def commit_question(version_name: str, c: dict) -> str:
    """What the commit is about to do, asked before it does it."""
    disputed = (f" **{c['disputed']}** records have unsettled disagreements; they keep their earlier values "
                f"(settle them in Team)." if c["disputed"] else "")
    return (f"Commit the review of **{version_name}**? The new version will hold **{c['records']:,}** records: "
            f"{c['approved']} approved, {c['rejected']} rejected (left out), {c['edited']} edited, "
            f"{c['labelled']} labelled.{disputed} Press **Enter** to confirm, **Esc** to cancel.")


def team_tables(ws, version_name) -> tuple[list, list, list]:
    """(progress rows, agreement rows, disagreement rows) of the Team tab."""
    progress = [[p["reviewer"], p["assigned"], p["done"], p["approved"], p["rejected"], p["skipped"],
                 p["labelled"], p["edited"], p["to_do"]] for p in reviewer_progress(ws, version_name)]
    figures = [[a.field, "—" if a.alpha is None else round(a.alpha, 3),
                "—" if a.percent is None else f"{a.percent:.0%}", a.records, a.reviewers, a.note]
               for a in agreement(ws, version_name)]
    disputes = [[d.record_id, d.field, d.describe()] for d in disagreements(ws, version_name)]
    return progress, figures, disputes


# -- widgets --------------------------------------------------------------------------------------

class ReviewWidgets(SimpleNamespace):
    """The Review tab's components by name (``layout`` fills it), and the groups the handlers read and write."""

    @property
    def filters(self) -> list:
        return [self.status_f, self.label_f, self.source_f, self.search, self.needs_cb, self.flagged_cb]

    @property
    def record(self) -> list:
        """What shows one record: every output of a move in the queue."""
        return [self.cur_rid, self.record_info, self.chat, self.msg_pick, self.msg_edit, *self.slots, self.comment,
                self.comments_md, self.history_md, self.queue_info, self.action_msg, self.draft_msg]

    @property
    def opened(self) -> list:
        """What opening the tab (or a version) fills besides the record."""
        return [self.name, self.saved_name, self.version, self.label_f, self.source_f, self.guidelines_md,
                self.schema_code, self.schema_guidelines, self.bulk_field]

    @property
    def bulk(self) -> list:
        return [self.bulk_msg, self.bulk_confirm, self.bulk_cancel, self.bulk_expected]

    @property
    def team(self) -> list:
        return [self.team_msg, self.progress_df, self.agreement_df, self.disagree_df]

    @property
    def commit_ask(self) -> list:
        return [self.commit_msg, self.commit_confirm, self.commit_cancel]


def layout(ws) -> ReviewWidgets:
    """The Review tab's widgets, created inside the caller's Blocks; nothing is wired yet."""
    from core.users import has_users

    w = ReviewWidgets()
    with gr.Tab("Review", id="review") as w.tab:
        with gr.Column(elem_id="review-root"):
            gr.Markdown(INTRO)
            with gr.Row():
                w.name = gr.Textbox(label="Your name", placeholder="e.g. Ana", scale=1, elem_id="review-name",
                                  visible=not has_users(ws), info="press Enter; your reviews are credited to it")
                w.version = version_picker(ws, "Version under review", scale=2, elem_id="review-version")
            with gr.Row():
                w.status_f = gr.Dropdown(list(STATUS_FILTERS), value="to do", label="Status",
                                       info="to do / skipped: yours; the others: the record's", elem_id="review-status-filter")
                w.label_f = gr.Dropdown([ANY], value=ANY, label="Label", elem_id="review-label-filter")
                w.source_f = gr.Dropdown([ANY], value=ANY, label="Source", elem_id="review-source-filter")
                w.search = gr.Textbox(label="Search (all words; press Enter)", elem_id="review-search")
                with gr.Column(min_width=180):
                    w.needs_cb = gr.Checkbox(label="Needs an answer (from rating)", elem_id="review-needs-answer")
                    w.flagged_cb = gr.Checkbox(label="Flagged by PII / dedup", elem_id="review-flagged")
            w.queue_info = gr.Markdown(elem_id="review-queue-info")
            with gr.Tabs():
                with gr.Tab("Label", id="review-label"):
                    with gr.Row():
                        with gr.Column(scale=3):
                            w.record_info = gr.Markdown(elem_id="review-record-info")
                            w.chat = gr.Chatbot(label="Conversation", height=420, elem_id="review-chat",
                                              feedback_options=None)
                            with gr.Row():
                                w.msg_pick = gr.Dropdown(label="Message to edit (M)", choices=[], scale=1, min_width=240,
                                                       elem_id="review-msg-pick")
                                w.msg_edit = gr.Textbox(label="Its text (E to edit, Esc when done)", lines=5, scale=4,
                                                      elem_id="review-msg-edit")
                            with gr.Accordion("History of this record", open=False):
                                w.history_md = gr.Markdown(elem_id="review-history")
                        with gr.Column(scale=2):
                            with gr.Accordion("Guidelines", open=True):
                                w.guidelines_md = gr.Markdown(elem_id="review-guidelines")
                            w.slots = []
                            for i in range(MAX_FIELDS):
                                w.slots.append(gr.Radio(visible=False, elem_id=f"review-field-{i}-single"))
                                w.slots.append(gr.CheckboxGroup(visible=False, elem_id=f"review-field-{i}-multi"))
                                w.slots.append(gr.Textbox(visible=False, elem_id=f"review-field-{i}-tags"))
                            w.comment = gr.Textbox(label="Comment for colleagues (C; Ctrl+Enter adds it)", lines=2,
                                                 elem_id="review-comment")
                            w.comment_btn = gr.Button("Add comment", size="sm", elem_id="review-comment-btn")
                            w.comments_md = gr.Markdown(elem_id="review-comments")
                            with gr.Row():
                                w.approve_btn = gr.Button("✓ Approve (A)", variant="primary", elem_id="review-approve")
                                w.reject_btn = gr.Button("✗ Reject (R)", variant="stop", elem_id="review-reject")
                                w.skip_btn = gr.Button("Skip (S)", elem_id="review-skip")
                            with gr.Row():
                                w.prev_btn = gr.Button("← Previous (K)", size="sm", elem_id="review-prev")
                                w.next_btn = gr.Button("Next (J) →", size="sm", elem_id="review-next")
                                w.undo_btn = gr.Button("↶ Undo (U)", size="sm", elem_id="review-undo")
                                w.help_btn = gr.Button("⌨ Shortcuts (?)", size="sm", elem_id="review-help-btn")
                            w.action_msg = gr.Markdown(elem_id="review-message")
                            w.draft_msg = gr.Markdown(elem_id="review-draft-status")
                with gr.Tab("Bulk actions", id="review-bulk-tab"):
                    gr.Markdown("Act on **every record the filters above select** (status, label, source, search…). "
                                "You see how many records change before you confirm; **Undo** takes it back.")
                    with gr.Row():
                        w.bulk_kind = gr.Radio(list(BULK_ACTIONS), value="approve", label="Action")
                        w.bulk_field = gr.Dropdown([], label="Label field (for label)")
                        w.bulk_value = gr.Dropdown([], label="Value", allow_custom_value=True)
                    with gr.Row():
                        w.bulk_preview_btn = gr.Button("Preview", elem_id="review-bulk-preview")
                        w.bulk_confirm = gr.Button("Confirm", variant="primary", visible=False,
                                                 elem_id="review-bulk-confirm")
                        w.bulk_cancel = gr.Button("Cancel", visible=False, elem_id="review-bulk-cancel")
                    w.bulk_expected = gr.State(None)
                    w.bulk_msg = gr.Markdown(elem_id="review-bulk-message")
                with gr.Tab("Team", id="review-team") as w.team_tab:
                    gr.Markdown("Give each record to **k** reviewers (overlap) to measure agreement; each reviewer's "
                                "queue then holds only their records. Settle disagreements below: the settled "
                                "value is what the dataset keeps.")
                    with gr.Row():
                        w.team_names = gr.Textbox(label="Reviewers (comma-separated)", placeholder="ana, bo, cy", scale=3)
                        w.team_k = gr.Number(value=2, precision=0, minimum=1, label="Reviewers per record (k)", scale=1)
                        w.assign_btn = gr.Button("Assign the records the filters select", scale=2)
                    w.team_msg = gr.Markdown()
                    w.progress_df = gr.Dataframe(headers=["reviewer", "assigned", "done", "approved", "rejected",
                                                        "skipped", "labelled", "edited", "to do"],
                                               label="Progress", interactive=False)
                    w.agreement_df = gr.Dataframe(headers=["field", "Krippendorff's alpha", "all agree", "records",
                                                         "reviewers", "note"],
                                                label="Agreement (records with two or more reviewers)", interactive=False)
                    w.disagree_df = gr.Dataframe(headers=["record", "field", "values"], label="Disagreements to settle",
                                               interactive=False, wrap=True)
                    with gr.Row():
                        w.settle_rid = gr.Textbox(label="Record (click a disagreement)")
                        w.settle_field = gr.Textbox(label="Field")
                        w.settle_value = gr.Textbox(label="Settled value (commas for several)")
                        w.settle_btn = gr.Button("Settle")
                with gr.Tab("Label schema", id="review-schema") as w.schema_tab:
                    gr.Markdown('Label fields of this dataset: `kind` is `single` (one option), `multi` (several) '
                                'or `tags` (free words). Until you save, a schema suggested from the data is used.')
                    with gr.Row():
                        w.label_field_pick = gr.Dropdown(
                            [], label="Label field", scale=3, elem_id="review-label-field",
                            info="The meta field that is each record's label: splits keep its shares, the suggested "
                                 "schema offers its values, results are broken down by it")
                        w.label_field_btn = gr.Button("Use as the label field", scale=1, elem_id="review-label-field-btn")
                    w.schema_code = gr.Code(language="json", label="Fields", lines=14, elem_id="review-schema-json")
                    w.schema_guidelines = gr.Textbox(label="Guidelines shown beside every record (Markdown)", lines=8)
                    w.schema_btn = gr.Button("Save the schema", variant="primary")
                    w.schema_msg = gr.Markdown()
            with gr.Row():
                w.commit_note = gr.Textbox(label="Note for the new version (optional)", scale=3)
                w.commit_btn = gr.Button("Commit review → new version (Shift+C)", scale=2, elem_id="review-commit")
                w.commit_confirm = gr.Button("Confirm (Enter)", variant="primary", visible=False, scale=1,
                                           elem_id="review-commit-confirm")
                w.commit_cancel = gr.Button("Cancel (Esc)", visible=False, scale=1, elem_id="review-commit-cancel")
            w.commit_msg = gr.Markdown(elem_id="review-commit-message")
            gr.HTML(help_overlay_html())
        w.saved_name = gr.BrowserState("", storage_key="tuneloop-review-name")
        w.cur_rid = gr.State(None)
    return w


# -- handlers: the queue and one record ------------------------------------------------------------

def reviewer(ws, request, typed) -> str:
    """Who is reviewing: the login, or in local mode the name typed in the tab (required)."""
    return caller_name(ws, request, typed, missing=NO_NAME)


def reviewer_or_none(ws, request, typed) -> str | None:
    try:
        return reviewer(ws, request, typed)
    except TuneloopError:
        return None


def filters_of(w: ReviewWidgets, data: dict) -> QueueFilter:
    return queue_filter(*(data[c] for c in w.filters))


def record_panel(w: ReviewWidgets, state: ReviewState, who: str | None, filters: QueueFilter,
                 rid: str | None, message: str = "") -> dict:
    """Everything that shows record ``rid`` of the queue (its first record when ``rid`` is not there)."""
    queue = state.queue_of(who, filters)
    if not state.has(rid):
        rid = queue.first()
    if rid is None:
        return {w.cur_rid: None, w.record_info: "🎉 **Nothing left in this queue.** Change the filters, or commit "
                "the review.", w.chat: [], w.msg_pick: gr.update(choices=[], value=None), w.msg_edit: "",
                **dict(zip(w.slots, field_slot_updates(state.schema, {}))), w.comment: "", w.comments_md: "",
                w.history_md: "", w.queue_info: "**0** records in this queue · " + progress_line(state, who),
                w.action_msg: message, w.draft_msg: ""}
    at = queue.where(rid)
    where = f"record {at + 1:,} of {len(queue):,}" if at is not None else "this record is not in the queue any more"
    view = state.view(rid, who)
    draft = view.draft or {}
    labels = {**{k: view.record.meta.get(k) for k in state.schema.names}, **view.my_labels, **draft.get("labels", {})}
    messages = [dict(m) for m in view.messages]
    for i, text in {int(k): v for k, v in draft.get("edits", {}).items()}.items():
        if 0 <= i < len(messages):
            messages[i]["content"] = text
    pick_choices = [(f"#{i + 1} {m['role']}: {short(m['content'], 40)}", f"{rid}#{i}") for i, m in enumerate(messages)]
    pick = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=0)
    return {w.cur_rid: rid, w.record_info: record_summary(view), w.chat: chat_turns(messages),
            w.msg_pick: gr.update(choices=pick_choices, value=f"{rid}#{pick}"),
            w.msg_edit: messages[pick]["content"] if messages else "",
            **dict(zip(w.slots, field_slot_updates(state.schema, labels))), w.comment: draft.get("comment", ""),
            w.comments_md: comments_markdown(view.comments), w.history_md: history_markdown(view.edits),
            w.queue_info: f"**{len(queue):,}** records in this queue · {where} · " + progress_line(state, who),
            w.action_msg: message, w.draft_msg: ""}     # a draft's note (or error) is about the record before


def open_review(ws, w: ReviewWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Open the tab, a version or a reviewer's name: the version's filters, schema and first record (the
    reviewer's latest draft, when there is one). The name box is filled from the browser's memory only
    when it is empty."""
    current_typed = (data[w.name] or "").strip()
    typed = current_typed or data[w.saved_name] or ""
    version_name = data[w.version] or default_version(ws)
    try:
        if version_name is None:
            raise TuneloopError("this workspace has no dataset yet; import one in the Data tab")
        state = review_state(ws, version_name, progress=lambda f, text: progress(f, desc=text))
        who = reviewer_or_none(ws, request, typed)
        rid = latest_draft_record(ws, state.version.id, who) if who else None
        shown = record_panel(w, state, who, filters_of(w, data), rid,
                             "" if who else "Type your name above and press Enter to start.")
    except Exception as exc:
        return {w.action_msg: error_markdown(exc)}
    names = state.schema.names
    out = {w.version: gr.update(value=state.version.name, choices=w.version.tuneloop_choices()),
           w.label_f: gr.update(choices=label_filter_choices(state.schema)),
           w.source_f: gr.update(choices=source_choices(state)), w.guidelines_md: guidelines_markdown(state.schema),
           w.schema_code: schema_json(state.schema), w.schema_guidelines: state.schema.guidelines,
           w.bulk_field: gr.update(choices=names, value=names[0] if names else None), **shown}
    if data[w.saved_name] and not current_typed:
        out[w.name] = data[w.saved_name]
    if typed:
        out[w.saved_name] = typed
    return out


def refilter(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """The queue the filters now select, keeping the open record when it is still in it."""
    try:
        state = review_state(ws, data[w.version])
        who = reviewer_or_none(ws, request, data[w.name])
        filters = filters_of(w, data)
        rid = data[w.cur_rid]
        kept = state.queue_of(who, filters).where(rid) is not None
        return record_panel(w, state, who, filters, rid if kept else None)
    except Exception as exc:
        return {w.action_msg: error_markdown(exc)}


def typed_edits(ws, w: ReviewWidgets, data: dict, who: str) -> dict[int, str]:
    """The draft's edits, and the editor's text when the editor shows this record (the picker says which)."""
    draft = load_draft(ws, data[w.version], data[w.cur_rid], who) or {}
    edits = dict(draft.get("edits", {}))
    shown_rid, _, index = str(data[w.msg_pick] or "").rpartition("#")
    if shown_rid == data[w.cur_rid] and index.isdigit() and data[w.msg_edit] is not None:
        edits[int(index)] = data[w.msg_edit]
    return edits


def submit(ws, w: ReviewWidgets, decision: str | None, data: dict, request: gr.Request = None) -> dict:
    """Store the open record's edits, labels and comment with ``decision`` (None: only the comment), then
    show the next record of the queue (or the same one, for a comment)."""
    try:
        who = reviewer(ws, request, data[w.name])
        rid = data[w.cur_rid]
        if rid is None:
            raise TuneloopError("no record is open; change the filters to find one")
        state = review_state(ws, data[w.version])
        current = state.messages(rid)
        changed = {i: t for i, t in typed_edits(ws, w, data, who).items()
                   if 0 <= i < len(current) and t != current[i]["content"]}
        submit_review(ws, state.version.id, rid, who, decision=decision,
                        labels=labels_from_slots(state.schema, [data[c] for c in w.slots]), edits=changed,
                        comment=data[w.comment] or "")
        state = review_state(ws, state.version.id)
        filters = filters_of(w, data)
        if decision is None:
            return record_panel(w, state, who, filters, rid, "💬 Saved.")
        following = state.queue_of(who, filters).neighbour(rid, 1)
        return record_panel(w, state, who, filters, following, f"**{rid}** {decision}.")
    except Exception as exc:
        return {w.action_msg: error_markdown(exc)}


def approve(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    return submit(ws, w, "approved", data, request)


def reject(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    return submit(ws, w, "rejected", data, request)


def skip(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    return submit(ws, w, "skipped", data, request)


def add_comment(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    return submit(ws, w, None, data, request)


def move(ws, w: ReviewWidgets, step: int, data: dict, request: gr.Request = None) -> dict:
    """The next (step=1) or previous (step=-1) record of the queue; going back also reaches the records the
    reviewer decided (which left a "to do" queue), so Previous after Approve shows the record just approved."""
    try:
        state = review_state(ws, data[w.version])
        who = reviewer_or_none(ws, request, data[w.name])
        filters = filters_of(w, data)
        trail = state.decided_by(who, filters) if step < 0 and who else None
        return record_panel(w, state, who, filters,
                            state.queue_of(who, filters).neighbour(data[w.cur_rid], step, also=trail))
    except Exception as exc:
        return {w.action_msg: error_markdown(exc)}


def next_record(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    return move(ws, w, 1, data, request)


def previous_record(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    return move(ws, w, -1, data, request)


def undo(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """Undo the reviewer's last action and show the record it changed."""
    try:
        who = reviewer(ws, request, data[w.name])
        done = undo_last_action(ws, data[w.version], who)
        state = review_state(ws, data[w.version])
        if done is None:
            return record_panel(w, state, who, filters_of(w, data), data[w.cur_rid], "Nothing of yours to undo.")
        back = done["record_ids"][0] if len(done["record_ids"]) == 1 else data[w.cur_rid]
        return record_panel(w, state, who, filters_of(w, data), back,
                            f"↶ Undid “{done['kind']}” on {len(done['record_ids'])} record(s).")
    except Exception as exc:
        return {w.action_msg: error_markdown(exc)}


def save_typing(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """Save what the reviewer is typing (edits, labels, comment) as the open record's draft."""
    try:
        who = reviewer(ws, request, data[w.name])
        if data[w.cur_rid] is None:
            return {w.draft_msg: ""}
        schema = label_schema(ws, data[w.version])
        kept = save_draft(ws, data[w.version], data[w.cur_rid], who,
                            {"edits": typed_edits(ws, w, data, who),
                             "labels": labels_from_slots(schema, [data[c] for c in w.slots]),
                             "comment": data[w.comment]})
    except Exception as exc:
        return {w.draft_msg: error_markdown(exc)}
    return {w.draft_msg: f"✎ Draft of {data[w.cur_rid]} saved." if kept else ""}


def show_typed(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """The conversation as the reviewer's edits (applied, drafted and in the editor) make it, when they leave
    the editor."""
    who = reviewer_or_none(ws, request, data[w.name])
    if who is None or data[w.cur_rid] is None:
        return {}
    try:
        messages = review_state(ws, data[w.version]).messages(data[w.cur_rid])
    except TuneloopError:
        return {}
    for i, text in typed_edits(ws, w, data, who).items():
        if 0 <= i < len(messages) and text is not None:
            messages[i]["content"] = text
    return {w.chat: chat_turns(messages)}


def pick_message(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """Put the picked message's text (the draft's, when there is one) in the editor."""
    shown_rid, _, index = str(data[w.msg_pick] or "").rpartition("#")
    if shown_rid != data[w.cur_rid] or not index.isdigit():
        return {}
    who = reviewer_or_none(ws, request, data[w.name])
    draft = (load_draft(ws, data[w.version], shown_rid, who) if who else None) or {}
    if int(index) in draft.get("edits", {}):
        return {w.msg_edit: draft["edits"][int(index)]}
    messages = review_state(ws, data[w.version]).messages(shown_rid)
    return {w.msg_edit: messages[int(index)]["content"] if int(index) < len(messages) else ""}


# -- handlers: commit -----------------------------------------------------------------------------

def ask_commit(ws, w: ReviewWidgets, data: dict) -> dict:
    """Say what committing would make, and show Confirm / Cancel."""
    try:
        counts = commit_preview(ws, data[w.version])
    except Exception as exc:
        return {w.commit_msg: error_markdown(exc), w.commit_confirm: gr.update(visible=False),
                w.commit_cancel: gr.update(visible=False)}
    return {w.commit_msg: commit_question(data[w.version], counts), w.commit_confirm: gr.update(visible=True),
            w.commit_cancel: gr.update(visible=True)}


def cancel_commit(ws, w: ReviewWidgets) -> dict:
    return {w.commit_msg: "Commit cancelled.", w.commit_confirm: gr.update(visible=False),
            w.commit_cancel: gr.update(visible=False)}


def commit(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """Commit the review as a new version, which becomes current and is then under review."""
    hidden = {w.commit_confirm: gr.update(visible=False), w.commit_cancel: gr.update(visible=False)}
    try:
        who = reviewer(ws, request, data[w.name])
        made = commit_review(ws, data[w.version], by=who, note=data[w.commit_note] or "")
    except Exception as exc:
        return {w.commit_msg: error_markdown(exc), **hidden}
    return {w.commit_msg: f"✅ Committed as **{made.name}** ({made.describe()}); it is now the current version, and "
                          f"the review goes on there.",
            w.version: gr.update(choices=w.version.tuneloop_choices(), value=made.name), **hidden}


# -- handlers: bulk -------------------------------------------------------------------------------

def bulk_action(w: ReviewWidgets, data: dict) -> BulkAction:
    return BulkAction(data[w.bulk_kind], field=data[w.bulk_field] or "", value=data[w.bulk_value])


def bulk_values(ws, w: ReviewWidgets, data: dict) -> dict:
    """The chosen label field's options as the bulk values."""
    try:
        f = label_schema(ws, data[w.version]).field(data[w.bulk_field])
    except Exception:  # no version or no field chosen yet: nothing to offer
        return {w.bulk_value: gr.update(choices=[], value=None)}
    return {w.bulk_value: gr.update(choices=f.options, value=f.options[0] if f.options else None)}


def _bulk_hidden(w: ReviewWidgets, message: str) -> dict:
    return {w.bulk_msg: message, w.bulk_confirm: gr.update(visible=False), w.bulk_cancel: gr.update(visible=False),
            w.bulk_expected: None}


def ask_bulk(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """How many of the records the filters select the bulk action would change; Confirm when any."""
    try:
        who = reviewer(ws, request, data[w.name])
        action = bulk_action(w, data)
        selected, changing = bulk_preview(ws, data[w.version], who, filters_of(w, data), action)
    except Exception as exc:
        return _bulk_hidden(w, error_markdown(exc))
    if not changing:
        return _bulk_hidden(w, f"The filters select {selected:,} records; **{action.describe()}** would change none.")
    return {w.bulk_msg: f"The filters select **{selected:,}** records; **{action.describe()}** changes "
                        f"**{changing:,}** of them (as {who}). Confirm?",
            w.bulk_confirm: gr.update(visible=True, value=f"Confirm: change {changing:,} records"),
            w.bulk_cancel: gr.update(visible=True), w.bulk_expected: changing}


def cancel_bulk(ws, w: ReviewWidgets) -> dict:
    return _bulk_hidden(w, "Cancelled; nothing changed.")


def apply_bulk(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """Apply the bulk action, provided it changes as many records as the preview said."""
    try:
        who = reviewer(ws, request, data[w.name])
        n = bulk_apply(ws, data[w.version], who, filters_of(w, data), bulk_action(w, data),
                         expected=data[w.bulk_expected])
    except Exception as exc:
        return _bulk_hidden(w, error_markdown(exc))
    return _bulk_hidden(w, f"✅ Changed {n:,} records. **Undo** (U) in the Label tab takes it back.")


# -- handlers: team -------------------------------------------------------------------------------

def _team(w: ReviewWidgets, ws, version_name, message: str) -> dict:
    progress, figures, disputes = team_tables(ws, version_name)
    return {w.team_msg: message, w.progress_df: progress, w.agreement_df: figures, w.disagree_df: disputes}


def show_team(ws, w: ReviewWidgets, data: dict) -> dict:
    try:
        return _team(w, ws, data[w.version], "")
    except Exception as exc:
        return {w.team_msg: error_markdown(exc)}


def assign(ws, w: ReviewWidgets, data: dict) -> dict:
    """Give each record the filters select (whatever its status) to k of the named reviewers."""
    try:
        filters = filters_of(w, data)
        filters.status = ANY if filters.status == "to do" else filters.status
        filters.assigned_only = False
        counts = assign_reviewers(ws, data[w.version], (data[w.team_names] or "").split(","),
                                    int(data[w.team_k] or 1), filters=filters)
        return _team(w, ws, data[w.version], "✅ Assigned: " + ", ".join(f"{who} {n}" for who, n in counts.items()))
    except Exception as exc:
        return {w.team_msg: error_markdown(exc)}


def pick_dispute(ws, w: ReviewWidgets, evt: gr.SelectData) -> dict:
    """A clicked disagreement fills the record and field to settle."""
    row = evt.row_value or []
    return {w.settle_rid: row[0], w.settle_field: row[1]} if len(row) >= 2 else {}


def settle_disagreement(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """Settle a record's field: the value the dataset keeps whatever its reviewers said."""
    try:
        who = reviewer(ws, request, data[w.name])
        rid, field_name, value = (data[w.settle_rid] or "").strip(), (data[w.settle_field] or "").strip(), \
            data[w.settle_value] or ""
        parts = [p.strip() for p in value.split(",")]
        settle(ws, data[w.version], rid, field_name, parts if len(parts) > 1 else parts[0], by=who)
        return _team(w, ws, data[w.version], f"✅ Settled {rid} {field_name} = {value}.")
    except Exception as exc:
        return {w.team_msg: error_markdown(exc)}


# -- handlers: label schema -----------------------------------------------------------------------

def label_field_choices(ws, version) -> dict:
    """The Label field picker for a version: its meta fields with their counts, its label field chosen."""
    records = V.load_records(ws, version)
    return gr.update(choices=[(f.describe(), f.name) for f in meta_fields(records)], value=label_field(ws, version))


def show_schema(ws, w: ReviewWidgets, data: dict) -> dict:
    schema = label_schema(ws, data[w.version])
    note = "" if stored_schema(ws, data[w.version]) else "_Suggested from the data; not saved yet._"
    gap = schema_gap(ws, data[w.version])
    return {w.schema_code: schema_json(schema), w.schema_guidelines: schema.guidelines,
            w.schema_msg: note + (f"\n\n⚠️ {gap[0].upper()}{gap[1:]}." if gap else ""),
            w.label_field_pick: label_field_choices(ws, data[w.version])}


def choose_label_field(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """Make the picked meta field the label field of the version under review (and the versions made from it)."""
    try:
        version = data[w.version]
        if not version:
            raise TuneloopError("there is no version to review; import a dataset in the Data tab first")
        chosen = set_label_field(ws, version, data[w.label_field_pick] or "", by=reviewer(ws, request, data[w.name]))
    except Exception as exc:
        return {w.schema_msg: error_markdown(exc)}
    schema = label_schema(ws, version)
    gap = schema_gap(ws, version)
    return {w.schema_msg: f"✅ The label field is now **{chosen.name}** ({chosen.records:,} records, {chosen.values:,} "
                          f"values). " + (f"⚠️ {gap[0].upper()}{gap[1:]}." if gap else "Reopen the Label tab to use it."),
            w.schema_code: schema_json(schema), w.label_f: gr.update(choices=label_filter_choices(schema)),
            w.bulk_field: gr.update(choices=schema.names)}


def save_label_schema(ws, w: ReviewWidgets, data: dict, request: gr.Request = None) -> dict:
    """Save the schema as edited (fields as JSON, guidelines as Markdown)."""
    try:
        who = reviewer(ws, request, data[w.name])
        code = data[w.schema_code] or ""
        try:
            fields = json.loads(code) if code.strip() else {}
        except json.JSONDecodeError as exc:
            raise TuneloopError(f"the fields are not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(fields, dict):
            raise TuneloopError('the fields must be an object: {"fields": [...]}')
        schema = save_schema(ws, data[w.version], parse_schema({**fields, "guidelines": data[w.schema_guidelines] or ""}),
                             by=who)
    except Exception as exc:
        return {w.schema_msg: error_markdown(exc)}
    return {w.schema_msg: f"✅ Saved: {', '.join(schema.names) or 'no fields'}. Reopen the Label tab to use it.",
            w.guidelines_md: schema.guidelines or "_No guidelines yet._",
            w.label_f: gr.update(choices=label_filter_choices(schema)), w.bulk_field: gr.update(choices=schema.names)}


# -- wiring ---------------------------------------------------------------------------------------

def build(ws) -> ReviewWidgets:
    """The Review tab inside the caller's Blocks: ``layout``'s widgets wired to the handlers above."""
    w = layout(ws)
    quiet = dict(api_name=False)

    def on(event, handler, inputs, outputs, **kw):
        return event(bind(handler, ws, w), inputs, outputs, **quiet, **kw)

    opening = {w.saved_name, w.name, w.version, *w.filters}
    for event in (w.tab.select, w.name.submit, w.version.input):
        on(event, open_review, opening, w.opened + w.record, **SERIAL)
    moving = {w.name, w.version, w.cur_rid, *w.filters}
    for event in (w.status_f.input, w.label_f.input, w.source_f.input, w.search.submit, w.needs_cb.input,
                  w.flagged_cb.input):
        on(event, refilter, moving, w.record, **SERIAL)
    acting = {w.name, w.version, w.cur_rid, w.msg_pick, w.msg_edit, w.comment, *w.slots, *w.filters}
    for button, handler in ((w.approve_btn, approve), (w.reject_btn, reject), (w.skip_btn, skip),
                            (w.comment_btn, add_comment)):
        # A key pressed while the last action is still pending is done after it ("always_last"), not dropped:
        # under load the default ("once") lost the A of the next record.
        on(button.click, handler, acting, w.record, trigger_mode="always_last", **SERIAL)
    on(w.next_btn.click, next_record, moving, w.record, trigger_mode="always_last", **SERIAL)
    on(w.prev_btn.click, previous_record, moving, w.record, trigger_mode="always_last", **SERIAL)
    on(w.undo_btn.click, undo, moving, w.record, **SERIAL)
    w.help_btn.click(None, js="() => { if (window.tuneloopReviewHelp) window.tuneloopReviewHelp(); }", **quiet)
    typing_in = {w.name, w.version, w.cur_rid, w.msg_pick, w.msg_edit, w.comment, *w.slots}
    for box in [w.msg_edit, w.comment, *w.slots]:
        # "multiple": each keystroke is sent with the values it was typed against, in order
        on(box.input, save_typing, typing_in, [w.draft_msg], trigger_mode="multiple", show_progress="hidden", **DRAFTS)
    on(w.msg_pick.input, pick_message, {w.name, w.version, w.cur_rid, w.msg_pick}, [w.msg_edit], **DRAFTS)
    on(w.msg_edit.blur, show_typed, {w.name, w.version, w.cur_rid, w.msg_pick, w.msg_edit}, [w.chat], **DRAFTS)

    on(w.commit_btn.click, ask_commit, {w.version}, w.commit_ask, **SERIAL)
    on(w.commit_cancel.click, cancel_commit, None, w.commit_ask)
    on(w.commit_confirm.click, commit, {w.name, w.version, w.commit_note}, w.commit_ask + [w.version],
       **SERIAL).then(bind(open_review, ws, w), opening, w.opened + w.record, **quiet, **SERIAL)

    bulk_in = {w.name, w.version, w.bulk_kind, w.bulk_field, w.bulk_value, w.bulk_expected, *w.filters}
    on(w.bulk_field.change, bulk_values, {w.version, w.bulk_field}, [w.bulk_value])
    on(w.bulk_preview_btn.click, ask_bulk, bulk_in, w.bulk, **SERIAL)
    on(w.bulk_cancel.click, cancel_bulk, None, w.bulk)
    on(w.bulk_confirm.click, apply_bulk, bulk_in, w.bulk, **SERIAL).then(
        bind(refilter, ws, w), moving, w.record, **quiet, **SERIAL)

    on(w.team_tab.select, show_team, {w.version}, w.team)
    on(w.assign_btn.click, assign, {w.version, w.team_names, w.team_k, *w.filters}, w.team, **SERIAL)
    on(w.disagree_df.select, pick_dispute, None, [w.settle_rid, w.settle_field])
    on(w.settle_btn.click, settle_disagreement, {w.name, w.version, w.settle_rid, w.settle_field, w.settle_value}, w.team, **SERIAL)

    on(w.schema_tab.select, show_schema, {w.version},
       [w.schema_code, w.schema_guidelines, w.schema_msg, w.label_field_pick])
    on(w.label_field_btn.click, choose_label_field, {w.name, w.version, w.label_field_pick},
       [w.schema_msg, w.schema_code, w.label_f, w.bulk_field], **SERIAL)
    on(w.schema_btn.click, save_label_schema, {w.name, w.version, w.schema_code, w.schema_guidelines},
       [w.schema_msg, w.guidelines_md, w.label_f, w.bulk_field], **SERIAL)
    return w
