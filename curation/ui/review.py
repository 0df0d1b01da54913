"""The Review tab: read a record, fix it, label it, approve / reject / skip it, with the keyboard.

Everything here is wiring: the work is done by ``curation.review`` (queue, actions, undo, bulk, team,
commit) and ``curation.review.labels`` (the schema). The keyboard shortcuts live in ``REVIEW_HEAD_JS``, which the
app passes to Gradio's ``head=``; ``SHORTCUTS`` is their single list, shown by the help overlay too.
"""
from __future__ import annotations

import html
import json

import gradio as gr

from core.errors import TuneloopError
from curation.review import workflow as R
from curation.review.labels import label_schema, parse_schema, save_schema, stored_schema
from curation.ui.common import current_name, error_markdown, short, version_choices

MAX_FIELDS = 4
ANY = "any"
SERIAL = dict(concurrency_id="review-record", concurrency_limit=1)   # one reviewer's events in order
DRAFTS = dict(concurrency_id="review-draft", concurrency_limit=1)    # keystrokes in order, beside the actions
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


def _keymap() -> dict:
    keys: dict = {}
    for _, _, mapping in SHORTCUTS:
        keys.update(mapping)
    return keys


REVIEW_HEAD_JS = """
<style>
#review-help {display: none; position: fixed; inset: 0; z-index: 1000; background: rgba(0,0,0,.45);}
#review-help.open {display: flex; align-items: center; justify-content: center;}
#review-help .panel {background: var(--background-fill-primary, #fff); color: var(--body-text-color, #111);
  padding: 1.2em 1.6em; border-radius: 10px; max-width: 640px; box-shadow: 0 8px 30px rgba(0,0,0,.3);}
#review-help kbd {border: 1px solid #999; border-radius: 4px; padding: 0 .35em; font-size: .9em;}
#review-help td {padding: .15em .6em; vertical-align: top;}
.review-active-field {outline: 3px solid var(--color-accent, #f97316); outline-offset: 3px; border-radius: 6px;}
</style>
<script>
(() => {
  const KEYS = __KEYMAP__;
  const MAX_FIELDS = __MAX_FIELDS__;
  let activeField = 0;
  const visible = (el) => el && el.offsetParent !== null;
  const byId = (id) => document.getElementById(id);
  const help = () => byId("review-help");
  window.tuneloopReviewHelp = () => { const h = help(); if (h) h.classList.toggle("open"); };
  const click = (id) => { const el = byId(id); if (!visible(el)) return false; el.click(); return true; };
  const focus = (id) => {
    const el = byId(id); const box = el && el.querySelector("textarea, input");
    if (visible(box)) { box.focus(); return true; } return false;
  };
  const fields = () => {
    const out = [];
    for (let i = 0; i < MAX_FIELDS; i++) {
      for (const kind of ["single", "multi", "tags"]) {
        const el = byId(`review-field-${i}-${kind}`);
        if (visible(el)) out.push({el, kind});
      }
    }
    return out;
  };
  const markActive = () => {
    const all = fields();
    if (activeField >= all.length) activeField = 0;
    document.querySelectorAll(".review-active-field").forEach((el) => el.classList.remove("review-active-field"));
    if (all[activeField]) all[activeField].el.classList.add("review-active-field");
    return all[activeField];
  };
  const openList = (id) => {
    const input = byId(id) && byId(id).querySelector("input");
    if (visible(input)) { input.focus(); input.click(); }
  };
  document.addEventListener("keydown", (e) => {
    const root = byId("review-root");
    if (!visible(root)) return;
    const t = e.target;
    const typing = t && (t.tagName === "TEXTAREA" || t.isContentEditable ||
      (t.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(t.type)));
    if (e.key === "Escape") {
      if (help() && help().classList.contains("open")) help().classList.remove("open");
      else if (typing) t.blur();
      else click("review-commit-cancel") || click("review-bulk-cancel");
      return;
    }
    if (typing) {
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && byId("review-comment") && byId("review-comment").contains(t)) {
        e.preventDefault(); click("review-comment-btn");
      }
      return;
    }
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); click("review-undo"); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "?") { e.preventDefault(); window.tuneloopReviewHelp(); return; }
    if (e.key === "Enter") {
      if (click("review-commit-confirm") || click("review-bulk-confirm")) e.preventDefault();
      return;
    }
    if (/^[0-9]$/.test(e.key)) {
      const f = markActive();
      if (!f) return;
      e.preventDefault();
      if (f.kind === "tags") { f.el.querySelector("textarea, input").focus(); return; }
      const n = e.key === "0" ? 9 : Number(e.key) - 1;
      const inputs = f.el.querySelectorAll(f.kind === "single" ? "input[type=radio]" : "input[type=checkbox]");
      if (inputs[n]) inputs[n].click();
      return;
    }
    if (e.key === "f") {
      e.preventDefault(); activeField += 1;
      const f = markActive();
      if (f && f.kind === "tags") f.el.querySelector("textarea, input").focus();
      return;
    }
    const action = KEYS[e.key];
    if (!action) return;
    e.preventDefault();
    if (action[0] === "click") click(action[1]);
    else if (action[0] === "focus") focus(action[1]);
    else if (action[0] === "open") openList(action[1]);
    setTimeout(markActive, 600);
  });
})();
</script>
""".replace("__KEYMAP__", json.dumps(_keymap())).replace("__MAX_FIELDS__", str(MAX_FIELDS))


def help_overlay_html() -> str:
    rows = "".join(f"<tr><td><kbd>{html.escape(keys)}</kbd></td><td>{html.escape(what)}</td></tr>"
                   for keys, what, _ in SHORTCUTS)
    return (f'<div id="review-help" onclick="if (event.target === this) this.classList.remove(\'open\')">'
            f'<div class="panel"><h3>Keyboard shortcuts</h3><table>{rows}</table>'
            f"<p>Shortcuts work when the cursor is not in a text box (press Esc to leave one).</p></div></div>")


def reviewer_name(request: gr.Request | None, typed: str | None) -> str:
    """Who is reviewing: the login when the workspace has logins, else the name typed in the tab."""
    username = getattr(request, "username", None) if request is not None else None
    if username:
        return username
    name = (typed or "").strip()
    if not name:
        raise TuneloopError("type your name in “Your name” first, so your reviews are credited to you")
    return name


def _filters(status, label, source, search, needs, flagged) -> R.QueueFilter:
    return R.QueueFilter(status=status or "to do", label="" if not label or label == ANY else label,
                         source="" if not source or source == ANY else source, search=search or "",
                         needs_answer=bool(needs), flagged=bool(flagged))


def _label_filter_choices(schema) -> list[str]:
    out = [ANY]
    for f in schema.fields:
        out += [f"{f.name}={o}" for o in f.options]
    return out


def _sources(state: R.ReviewState) -> list[str]:
    return [ANY] + sorted({str(r.meta["source"]) for r in state.records if r.meta.get("source") not in (None, "")})


def _chat(messages) -> list[dict]:
    out = []
    for i, m in enumerate(messages, 1):
        text = f"*#{i} system prompt:* {m['content']}" if m["role"] == "system" else m["content"]
        out.append({"role": "user" if m["role"] == "user" else "assistant", "content": text})
    return out


def _field_updates(schema, labels: dict) -> list:
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


def _labels_from_slots(schema, slot_values) -> dict:
    out = {}
    for i, f in enumerate(schema.fields[:MAX_FIELDS]):
        single, multi, tags = slot_values[3 * i: 3 * i + 3]
        out[f.name] = single if f.kind == "single" else multi if f.kind == "multi" else tags
    return out


def _neighbour(queue: list[str], order: dict[str, int], rid: str | None, step: int) -> str | None:
    """The next (step=1) or previous (step=-1) queued record after ``rid`` in dataset order, wrapping."""
    if not queue:
        return None
    if rid is None or rid not in order:
        return queue[0]
    pos = order[rid]
    after = [q for q in queue if (order[q] - pos) * step > 0]
    if after:
        return after[0] if step > 0 else after[-1]
    return queue[0] if step > 0 else queue[-1]


def _progress_line(state: R.ReviewState, reviewer: str | None) -> str:
    if not reviewer:
        return ""
    mine = {rid: d[reviewer] for rid, d in state.decisions.items() if reviewer in d}
    assigned = state.assigned.get(reviewer)
    approved = sum(1 for s in mine.values() if s == "approved")
    rejected = sum(1 for s in mine.values() if s == "rejected")
    of = f" of {len(assigned)} assigned to you" if assigned else f" of {len(state.records):,}"
    return (f"**{reviewer}**: {len(mine)} done{of} · {approved} approved · {rejected} rejected · "
            f"{len(mine) - approved - rejected} skipped")


def build(ws) -> None:
    from core.users import has_users

    with gr.Tab("Review", id="review") as tab:
        with gr.Column(elem_id="review-root"):
            gr.Markdown(INTRO)
            with gr.Row():
                name = gr.Textbox(label="Your name", placeholder="e.g. Ana", scale=1, elem_id="review-name",
                                  visible=not has_users(ws), info="press Enter; your reviews are credited to it")
                version = gr.Dropdown(version_choices(ws), value=current_name(ws), label="Version under review",
                                      scale=2, elem_id="review-version")
            with gr.Row():
                status_f = gr.Dropdown(list(R.STATUS_FILTERS), value="to do", label="Status",
                                       info="to do / skipped: yours; the others: the record's", elem_id="review-status-filter")
                label_f = gr.Dropdown([ANY], value=ANY, label="Label", elem_id="review-label-filter")
                source_f = gr.Dropdown([ANY], value=ANY, label="Source", elem_id="review-source-filter")
                search = gr.Textbox(label="Search (all words; press Enter)", elem_id="review-search")
                with gr.Column(min_width=180):
                    needs_cb = gr.Checkbox(label="Needs an answer (from rating)", elem_id="review-needs-answer")
                    flagged_cb = gr.Checkbox(label="Flagged by PII / dedup", elem_id="review-flagged")
            queue_info = gr.Markdown(elem_id="review-queue-info")
            with gr.Tabs():
                with gr.Tab("Label", id="review-label"):
                    with gr.Row():
                        with gr.Column(scale=3):
                            record_info = gr.Markdown(elem_id="review-record-info")
                            chat = gr.Chatbot(label="Conversation", height=420, elem_id="review-chat",
                                              feedback_options=None)
                            with gr.Row():
                                msg_pick = gr.Dropdown(label="Message to edit (M)", choices=[], scale=1, min_width=240,
                                                       elem_id="review-msg-pick")
                                msg_edit = gr.Textbox(label="Its text (E to edit, Esc when done)", lines=5, scale=4,
                                                      elem_id="review-msg-edit")
                            with gr.Accordion("History of this record", open=False):
                                history_md = gr.Markdown(elem_id="review-history")
                        with gr.Column(scale=2):
                            with gr.Accordion("Guidelines", open=True):
                                guidelines_md = gr.Markdown(elem_id="review-guidelines")
                            slots = []
                            for i in range(MAX_FIELDS):
                                slots.append(gr.Radio(visible=False, elem_id=f"review-field-{i}-single"))
                                slots.append(gr.CheckboxGroup(visible=False, elem_id=f"review-field-{i}-multi"))
                                slots.append(gr.Textbox(visible=False, elem_id=f"review-field-{i}-tags"))
                            comment = gr.Textbox(label="Comment for colleagues (C; Ctrl+Enter adds it)", lines=2,
                                                 elem_id="review-comment")
                            comment_btn = gr.Button("Add comment", size="sm", elem_id="review-comment-btn")
                            comments_md = gr.Markdown(elem_id="review-comments")
                            with gr.Row():
                                approve_btn = gr.Button("✓ Approve (A)", variant="primary", elem_id="review-approve")
                                reject_btn = gr.Button("✗ Reject (R)", variant="stop", elem_id="review-reject")
                                skip_btn = gr.Button("Skip (S)", elem_id="review-skip")
                            with gr.Row():
                                prev_btn = gr.Button("← Previous (K)", size="sm", elem_id="review-prev")
                                next_btn = gr.Button("Next (J) →", size="sm", elem_id="review-next")
                                undo_btn = gr.Button("↶ Undo (U)", size="sm", elem_id="review-undo")
                                help_btn = gr.Button("⌨ Shortcuts (?)", size="sm", elem_id="review-help-btn")
                            action_msg = gr.Markdown(elem_id="review-message")
                            draft_msg = gr.Markdown(elem_id="review-draft-status")
                with gr.Tab("Bulk actions", id="review-bulk-tab"):
                    gr.Markdown("Act on **every record the filters above select** (status, label, source, search…). "
                                "You see how many records change before you confirm; **Undo** takes it back.")
                    with gr.Row():
                        bulk_kind = gr.Radio(list(R.BULK_ACTIONS), value="approve", label="Action")
                        bulk_field = gr.Dropdown([], label="Label field (for label)")
                        bulk_value = gr.Dropdown([], label="Value", allow_custom_value=True)
                    with gr.Row():
                        bulk_preview_btn = gr.Button("Preview", elem_id="review-bulk-preview")
                        bulk_confirm = gr.Button("Confirm", variant="primary", visible=False,
                                                 elem_id="review-bulk-confirm")
                        bulk_cancel = gr.Button("Cancel", visible=False, elem_id="review-bulk-cancel")
                    bulk_expected = gr.State(None)
                    bulk_msg = gr.Markdown(elem_id="review-bulk-message")
                with gr.Tab("Team", id="review-team") as team_tab:
                    gr.Markdown("Give each record to **k** reviewers (overlap) to measure agreement; each reviewer's "
                                "queue then holds only their records. Settle disagreements below: the settled "
                                "value is what the dataset keeps.")
                    with gr.Row():
                        team_names = gr.Textbox(label="Reviewers (comma-separated)", placeholder="ana, bo, cy", scale=3)
                        team_k = gr.Number(value=2, precision=0, minimum=1, label="Reviewers per record (k)", scale=1)
                        assign_btn = gr.Button("Assign the records the filters select", scale=2)
                    team_msg = gr.Markdown()
                    progress_df = gr.Dataframe(headers=["reviewer", "assigned", "done", "approved", "rejected",
                                                        "skipped", "labelled", "edited", "to do"],
                                               label="Progress", interactive=False)
                    agreement_df = gr.Dataframe(headers=["field", "Krippendorff's alpha", "all agree", "records",
                                                         "reviewers", "note"],
                                                label="Agreement (records with two or more reviewers)", interactive=False)
                    disagree_df = gr.Dataframe(headers=["record", "field", "values"], label="Disagreements to settle",
                                               interactive=False, wrap=True)
                    with gr.Row():
                        settle_rid = gr.Textbox(label="Record (click a disagreement)")
                        settle_field = gr.Textbox(label="Field")
                        settle_value = gr.Textbox(label="Settled value (commas for several)")
                        settle_btn = gr.Button("Settle")
                with gr.Tab("Label schema", id="review-schema") as schema_tab:
                    gr.Markdown('Label fields of this dataset: `kind` is `single` (one option), `multi` (several) '
                                'or `tags` (free words). Until you save, a schema suggested from the data is used.')
                    schema_code = gr.Code(language="json", label="Fields", lines=14, elem_id="review-schema-json")
                    schema_guidelines = gr.Textbox(label="Guidelines shown beside every record (Markdown)", lines=8)
                    schema_btn = gr.Button("Save the schema", variant="primary")
                    schema_msg = gr.Markdown()
            with gr.Row():
                commit_note = gr.Textbox(label="Note for the new version (optional)", scale=3)
                commit_btn = gr.Button("Commit review → new version (Shift+C)", scale=2, elem_id="review-commit")
                commit_confirm = gr.Button("Confirm (Enter)", variant="primary", visible=False, scale=1,
                                           elem_id="review-commit-confirm")
                commit_cancel = gr.Button("Cancel (Esc)", visible=False, scale=1, elem_id="review-commit-cancel")
            commit_msg = gr.Markdown(elem_id="review-commit-message")
            gr.HTML(help_overlay_html())
        saved_name = gr.BrowserState("", storage_key="tuneloop-review-name")
        cur_rid = gr.State(None)

    filter_in = [status_f, label_f, source_f, search, needs_cb, flagged_cb]
    record_out = [cur_rid, record_info, chat, msg_pick, msg_edit, *slots, comment, comments_md,
                  history_md, queue_info, action_msg]

    def panel(state: R.ReviewState, reviewer: str | None, filters: R.QueueFilter, rid: str | None,
              message: str = "") -> list:
        queue = state.queue(reviewer, filters)
        if rid is None or rid not in state.by_id:
            rid = queue[0] if queue else None
        where = (f"record {queue.index(rid) + 1} of {len(queue)}" if rid in queue
                 else "this record is not in the queue any more")
        info = f"**{len(queue):,}** records in this queue · {where} · " + _progress_line(state, reviewer)
        if rid is None:
            return ([None, "🎉 **Nothing left in this queue.** Change the filters, or commit the review.", [],
                     gr.update(choices=[], value=None), ""] + _field_updates(state.schema, {})
                    + ["", "", "", f"**0** records in this queue · " + _progress_line(state, reviewer), message])
        view = state.view(rid, reviewer)
        draft = view.draft or {}
        meta = view.record.meta
        bits = [f"**{rid}**", f"status **{view.status}**", f"your decision **{view.my_decision or '—'}**"]
        bits += [f"{k} {html.escape(str(meta[k]))}" for k in ("source", "customer_id") if meta.get(k)]
        if meta.get("flags"):
            bits.append(f"⚑ flagged: {html.escape(str(meta['flags']))}")
        if meta.get("needs_answer"):
            bits.append("needs an answer")
        if draft:
            bits.append("✎ draft restored")
        labels = {**{k: meta.get(k) for k in state.schema.names}, **view.my_labels, **draft.get("labels", {})}
        edits = {int(k): v for k, v in draft.get("edits", {}).items()}
        messages = [dict(m) for m in view.messages]
        for i, text in edits.items():
            if 0 <= i < len(messages):
                messages[i]["content"] = text
        pick_choices = [(f"#{i + 1} {m['role']}: {short(m['content'], 40)}", f"{rid}#{i}")
                        for i, m in enumerate(messages)]
        pick = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=0)
        comments = "\n".join(f"- **{html.escape(c['by'])}** ({c['at'].replace('T', ' ').rstrip('Z')}): "
                             f"{html.escape(c['text'])}" for c in view.comments) or "_No comments yet._"
        history = "\n".join(f"- #{e['message'] + 1} edited by **{html.escape(e['by'])}** at "
                            f"{e['at'].replace('T', ' ').rstrip('Z')}; before: “{html.escape(short(e['previous'], 200))}”"
                            for e in view.edits) or "_No edits yet._"
        return ([rid, " · ".join(bits), _chat(messages), gr.update(choices=pick_choices, value=f"{rid}#{pick}"),
                 messages[pick]["content"] if messages else ""]
                + _field_updates(state.schema, labels)
                + [draft.get("comment", ""), comments, history, info, message])

    def fail(exc: Exception) -> list:
        return [gr.update()] * (len(record_out) - 1) + [error_markdown(exc)]

    def guidelines_of(state: R.ReviewState) -> str:
        return state.schema.guidelines or "_No guidelines yet: an admin can write them in “Label schema”._"

    def open_tab(saved, typed, version_name, status, label, source, text, needs, flagged, request: gr.Request):
        current_typed = (typed or "").strip()
        typed = current_typed or saved or ""
        if not version_name:
            version_name = current_name(ws)
        try:
            if version_name is None:
                raise TuneloopError("this workspace has no dataset yet; import one in the Data tab")
            state = R.ReviewState(ws, version_name)
            try:
                reviewer = reviewer_name(request, typed)
            except TuneloopError:
                reviewer = None
            rid = R.latest_draft_record(ws, state.version.id, reviewer) if reviewer else None
            filters = _filters(status, label, source, text, needs, flagged)
            records = panel(state, reviewer, filters, rid,
                            "" if reviewer else "Type your name above and press Enter to start.")
        except Exception as exc:
            return [gr.update()] * 9 + fail(exc)
        schema_json = json.dumps({"fields": [f.to_dict() for f in state.schema.fields]}, indent=2, ensure_ascii=False)
        # the box keeps what the user is typing; it is only filled from the browser's memory when empty
        return ([saved if saved and not current_typed else gr.update(), typed or gr.update(),
                 gr.update(choices=version_choices(ws), value=state.version.name),
                 gr.update(choices=_label_filter_choices(state.schema)), gr.update(choices=_sources(state)),
                 guidelines_of(state), schema_json, state.schema.guidelines,
                 gr.update(choices=state.schema.names, value=state.schema.names[0] if state.schema.names else None)]
                + records)

    open_out = [name, saved_name, version, label_f, source_f, guidelines_md, schema_code, schema_guidelines, bulk_field]
    open_in = [saved_name, name, version, *filter_in]
    tab.select(open_tab, open_in, open_out + record_out, **SERIAL)
    name.submit(open_tab, open_in, open_out + record_out, **SERIAL)
    version.input(open_tab, open_in, open_out + record_out, **SERIAL)

    def filters_of(data) -> R.QueueFilter:
        return _filters(*(data[c] for c in filter_in))

    def who_or_none(request, typed) -> str | None:
        try:
            return reviewer_name(request, typed)
        except TuneloopError:
            return None

    def refilter(data, request: gr.Request):
        try:
            state = R.ReviewState(ws, data[version])
            reviewer = who_or_none(request, data[name])
            filters = filters_of(data)
            rid = data[cur_rid]
            return panel(state, reviewer, filters, rid if rid in state.queue(reviewer, filters) else None)
        except Exception as exc:
            return fail(exc)

    refilter_in = {name, version, cur_rid, *filter_in}
    for trigger in (status_f.input, label_f.input, source_f.input, search.submit, needs_cb.input, flagged_cb.input):
        trigger(refilter, refilter_in, record_out, **SERIAL)

    def typed_edits(data, reviewer: str) -> dict:
        """The draft's edits, and the editor's text when the editor shows this record (the picker says which)."""
        draft = R.load_draft(ws, data[version], data[cur_rid], reviewer) or {}
        edits = dict(draft.get("edits", {}))
        shown_rid, _, index = str(data[msg_pick] or "").rpartition("#")
        if shown_rid == data[cur_rid] and index.isdigit() and data[msg_edit] is not None:
            edits[int(index)] = data[msg_edit]
        return edits

    def act(decision: str | None, data, request) -> list:
        try:
            reviewer = reviewer_name(request, data[name])
            rid = data[cur_rid]
            if rid is None:
                raise TuneloopError("no record is open; change the filters to find one")
            state = R.ReviewState(ws, data[version])
            current = state.messages(rid)
            changed = {i: t for i, t in typed_edits(data, reviewer).items()
                       if 0 <= i < len(current) and t != current[i]["content"]}
            R.submit_review(ws, state.version.id, rid, reviewer, decision=decision,
                            labels=_labels_from_slots(state.schema, [data[c] for c in slots]), edits=changed,
                            comment=data[comment] or "")
            state = R.ReviewState(ws, state.version.id)
            filters = filters_of(data)
            if decision is None:
                return panel(state, reviewer, filters, rid, "💬 Saved.")
            order = {r.id: i for i, r in enumerate(state.records)}
            following = _neighbour(state.queue(reviewer, filters), order, rid, 1)
            return panel(state, reviewer, filters, following, f"**{rid}** {decision}.")
        except Exception as exc:
            return fail(exc)

    def approve(data, request: gr.Request):
        return act("approved", data, request)

    def reject(data, request: gr.Request):
        return act("rejected", data, request)

    def skip(data, request: gr.Request):
        return act("skipped", data, request)

    def add_comment(data, request: gr.Request):
        return act(None, data, request)

    act_in = {name, version, cur_rid, msg_pick, msg_edit, comment, *slots, *filter_in}
    approve_btn.click(approve, act_in, record_out, **SERIAL)
    reject_btn.click(reject, act_in, record_out, **SERIAL)
    skip_btn.click(skip, act_in, record_out, **SERIAL)
    comment_btn.click(add_comment, act_in, record_out, **SERIAL)

    def move(step: int, data, request) -> list:
        try:
            state = R.ReviewState(ws, data[version])
            reviewer = who_or_none(request, data[name])
            filters = filters_of(data)
            order = {r.id: i for i, r in enumerate(state.records)}
            return panel(state, reviewer, filters, _neighbour(state.queue(reviewer, filters), order, data[cur_rid], step))
        except Exception as exc:
            return fail(exc)

    def next_record(data, request: gr.Request):
        return move(1, data, request)

    def previous_record(data, request: gr.Request):
        return move(-1, data, request)

    next_btn.click(next_record, refilter_in, record_out, **SERIAL)
    prev_btn.click(previous_record, refilter_in, record_out, **SERIAL)

    def undo(data, request: gr.Request):
        try:
            reviewer = reviewer_name(request, data[name])
            done = R.undo_last_action(ws, data[version], reviewer)
            state = R.ReviewState(ws, data[version])
            if done is None:
                return panel(state, reviewer, filters_of(data), data[cur_rid], "Nothing of yours to undo.")
            back = done["record_ids"][0] if len(done["record_ids"]) == 1 else data[cur_rid]
            return panel(state, reviewer, filters_of(data), back,
                         f"↶ Undid “{done['kind']}” on {len(done['record_ids'])} record(s).")
        except Exception as exc:
            return fail(exc)

    undo_btn.click(undo, refilter_in, record_out, **SERIAL)
    help_btn.click(None, js="() => { if (window.tuneloopReviewHelp) window.tuneloopReviewHelp(); }")

    def save(data, request: gr.Request):
        try:
            reviewer = reviewer_name(request, data[name])
            if data[cur_rid] is None:
                return ""
            schema = label_schema(ws, data[version])
            kept = R.save_draft(ws, data[version], data[cur_rid], reviewer,
                                {"edits": typed_edits(data, reviewer),
                                 "labels": _labels_from_slots(schema, [data[c] for c in slots]),
                                 "comment": data[comment]})
        except Exception as exc:
            return error_markdown(exc)
        return f"✎ Draft of {data[cur_rid]} saved." if kept else ""

    save_in = {name, version, cur_rid, msg_pick, msg_edit, comment, *slots}
    for box in [msg_edit, comment, *slots]:
        # "multiple": each keystroke is sent with the values it was typed against, in order
        box.input(save, save_in, draft_msg, trigger_mode="multiple", show_progress="hidden", **DRAFTS)

    def pick_message(data, request: gr.Request):
        shown_rid, _, index = str(data[msg_pick] or "").rpartition("#")
        if shown_rid != data[cur_rid] or not index.isdigit():
            return gr.update()
        reviewer = who_or_none(request, data[name])
        draft = (R.load_draft(ws, data[version], shown_rid, reviewer) if reviewer else None) or {}
        if int(index) in draft.get("edits", {}):
            return draft["edits"][int(index)]
        messages = R.ReviewState(ws, data[version]).messages(shown_rid)
        return messages[int(index)]["content"] if int(index) < len(messages) else ""

    msg_pick.input(pick_message, {name, version, cur_rid, msg_pick}, msg_edit, **DRAFTS)

    # -- commit ---------------------------------------------------------------------------------
    def commit_ask(version_name):
        try:
            c = R.commit_preview(ws, version_name)
        except Exception as exc:
            return error_markdown(exc), gr.update(visible=False), gr.update(visible=False)
        disputed = (f" **{c['disputed']}** records have unsettled disagreements; they keep their earlier values "
                    f"(settle them in Team)." if c["disputed"] else "")
        return (f"Commit the review of **{version_name}**? The new version will hold **{c['records']:,}** records: "
                f"{c['approved']} approved, {c['rejected']} rejected (left out), {c['edited']} edited, "
                f"{c['labelled']} labelled.{disputed} Press **Enter** to confirm, **Esc** to cancel.",
                gr.update(visible=True), gr.update(visible=True))

    commit_btn.click(commit_ask, [version], [commit_msg, commit_confirm, commit_cancel], **SERIAL)
    commit_cancel.click(lambda: ("Commit cancelled.", gr.update(visible=False), gr.update(visible=False)), None,
                        [commit_msg, commit_confirm, commit_cancel])

    def commit(typed, version_name, note, request: gr.Request = None):
        hide = [gr.update(visible=False), gr.update(visible=False)]
        try:
            who = reviewer_name(request, typed)
            v = R.commit_review(ws, version_name, by=who, note=note or "")
        except Exception as exc:
            return [error_markdown(exc)] + hide + [gr.update()]
        return ([f"✅ Committed as **{v.name}** ({v.describe()}); it is now the current version, and the review "
                 f"goes on there."] + hide + [gr.update(choices=version_choices(ws), value=v.name)])

    commit_confirm.click(commit, [name, version, commit_note], [commit_msg, commit_confirm, commit_cancel, version],
                         **SERIAL).then(open_tab, open_in, open_out + record_out, **SERIAL)

    # -- bulk -----------------------------------------------------------------------------------
    def bulk_action(kind, field_name, value) -> R.BulkAction:
        return R.BulkAction(kind, field=field_name or "", value=value)

    def bulk_values(version_name, field_name):
        try:
            f = label_schema(ws, version_name).field(field_name)
        except Exception:
            return gr.update(choices=[], value=None)
        return gr.update(choices=f.options, value=f.options[0] if f.options else None)

    bulk_field.change(bulk_values, [version, bulk_field], bulk_value)

    def bulk_ask(data, request: gr.Request):
        hidden = [gr.update(visible=False), gr.update(visible=False), None]
        try:
            reviewer = reviewer_name(request, data[name])
            action = bulk_action(data[bulk_kind], data[bulk_field], data[bulk_value])
            selected, changing = R.bulk_preview(ws, data[version], reviewer, filters_of(data), action)
        except Exception as exc:
            return [error_markdown(exc)] + hidden
        if not changing:
            return [f"The filters select {selected:,} records; **{action.describe()}** would change none."] + hidden
        return ([f"The filters select **{selected:,}** records; **{action.describe()}** changes **{changing:,}** of "
                 f"them (as {reviewer}). Confirm?", gr.update(visible=True, value=f"Confirm: change {changing:,} records"),
                 gr.update(visible=True), changing])

    bulk_in = {name, version, bulk_kind, bulk_field, bulk_value, bulk_expected, *filter_in}
    bulk_out = [bulk_msg, bulk_confirm, bulk_cancel, bulk_expected]
    bulk_preview_btn.click(bulk_ask, bulk_in, bulk_out, **SERIAL)
    bulk_cancel.click(lambda: ("Cancelled; nothing changed.", gr.update(visible=False), gr.update(visible=False), None),
                      None, bulk_out)

    def bulk_do(data, request: gr.Request):
        hidden = [gr.update(visible=False), gr.update(visible=False), None]
        try:
            reviewer = reviewer_name(request, data[name])
            n = R.bulk_apply(ws, data[version], reviewer, filters_of(data),
                             bulk_action(data[bulk_kind], data[bulk_field], data[bulk_value]), expected=data[bulk_expected])
        except Exception as exc:
            return [error_markdown(exc)] + hidden
        return [f"✅ Changed {n:,} records. **Undo** (U) in the Label tab takes it back."] + hidden

    bulk_confirm.click(bulk_do, bulk_in, bulk_out, **SERIAL).then(refilter, refilter_in, record_out, **SERIAL)

    # -- team -----------------------------------------------------------------------------------
    def team_tables(version_name):
        progress = [[p["reviewer"], p["assigned"], p["done"], p["approved"], p["rejected"], p["skipped"],
                     p["labelled"], p["edited"], p["to_do"]] for p in R.reviewer_progress(ws, version_name)]
        figures = [[a.field, "—" if a.alpha is None else round(a.alpha, 3),
                    "—" if a.percent is None else f"{a.percent:.0%}", a.records, a.reviewers, a.note]
                   for a in R.agreement(ws, version_name)]
        disputes = [[d.record_id, d.field, d.describe()] for d in R.disagreements(ws, version_name)]
        return progress, figures, disputes

    def team_refresh(version_name):
        try:
            return ["", *team_tables(version_name)]
        except Exception as exc:
            return [error_markdown(exc), gr.update(), gr.update(), gr.update()]

    team_out = [team_msg, progress_df, agreement_df, disagree_df]
    team_tab.select(team_refresh, [version], team_out)

    def assign(data):
        try:
            filters = filters_of(data)
            filters.status = ANY if filters.status == "to do" else filters.status
            filters.assigned_only = False
            counts = R.assign_reviewers(ws, data[version], (data[team_names] or "").split(","), int(data[team_k] or 1),
                                        filters=filters)
            return [f"✅ Assigned: " + ", ".join(f"{who} {n}" for who, n in counts.items()), *team_tables(data[version])]
        except Exception as exc:
            return [error_markdown(exc), gr.update(), gr.update(), gr.update()]

    assign_btn.click(assign, {version, team_names, team_k, *filter_in}, team_out, **SERIAL)

    def pick_dispute(evt: gr.SelectData):
        row = evt.row_value or []
        return (row[0], row[1]) if len(row) >= 2 else (gr.update(), gr.update())

    disagree_df.select(pick_dispute, None, [settle_rid, settle_field])

    def do_settle(typed, version_name, rid, field_name, value, request: gr.Request = None):
        try:
            who = reviewer_name(request, typed)
            parts = [p.strip() for p in (value or "").split(",")]
            R.settle(ws, version_name, (rid or "").strip(), (field_name or "").strip(),
                     parts if len(parts) > 1 else parts[0], by=who)
            return [f"✅ Settled {rid} {field_name} = {value}.", *team_tables(version_name)]
        except Exception as exc:
            return [error_markdown(exc), gr.update(), gr.update(), gr.update()]

    settle_btn.click(do_settle, [name, version, settle_rid, settle_field, settle_value], team_out, **SERIAL)

    # -- schema ---------------------------------------------------------------------------------
    def schema_show(version_name):
        schema = label_schema(ws, version_name)
        note = "" if stored_schema(ws, version_name) else "_Suggested from the data; not saved yet._"
        return json.dumps({"fields": [f.to_dict() for f in schema.fields]}, indent=2, ensure_ascii=False), \
            schema.guidelines, note

    schema_tab.select(schema_show, [version], [schema_code, schema_guidelines, schema_msg])

    def schema_save(typed, version_name, code, guidelines, request: gr.Request = None):
        try:
            who = reviewer_name(request, typed)
            data = json.loads(code or "{}") if (code or "").strip() else {}
            if not isinstance(data, dict):
                raise TuneloopError('the fields must be an object: {"fields": [...]}')
            schema = save_schema(ws, version_name, parse_schema({**data, "guidelines": guidelines or ""}), by=who)
        except json.JSONDecodeError as exc:
            return [error_markdown(TuneloopError(f"the fields are not valid JSON (line {exc.lineno}: {exc.msg})")),
                    gr.update(), gr.update(), gr.update()]
        except Exception as exc:
            return [error_markdown(exc), gr.update(), gr.update(), gr.update()]
        return [f"✅ Saved: {', '.join(schema.names) or 'no fields'}. Reopen the Label tab to use it.",
                schema.guidelines or "_No guidelines yet._", gr.update(choices=_label_filter_choices(schema)),
                gr.update(choices=schema.names)]

    schema_btn.click(schema_save, [name, version, schema_code, schema_guidelines],
                     [schema_msg, guidelines_md, label_f, bulk_field], **SERIAL)
