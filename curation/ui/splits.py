"""The Splits tab: build a train/val/test split, audit and fix leakage, check the balance, and export the
split for training.

In the house pattern (see ``curation.ui.review``): ``layout`` creates the widgets (a ``SplitsWidgets``; the
form comes from ``SplitOptions``), the module-level handlers take the workspace, the widgets and the values
the page sent and return a dict keyed by component, ``leakage_markdown`` and ``balance_outputs`` present the
results, and ``build`` only wires them with ``ui.kit.bind``. The work is ``curation.splits``."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from core.workspace import export_folder
from curation.data import versions as V
from curation.data.records import SPLITS
from curation.review.labels import label_field
from curation.splits.balance import COUNT_HEADERS, balance_report, count_headers, length_histogram
from curation.splits.build import SplitOptions, make_split, save_split_version, split_records, split_version
from curation.splits.export import EXPORT_FORMATS, SHAPES, export_split
from curation.splits.fields import field_names
from curation.splits.leakage import PAIR_HEADERS, AuditOptions, audit_leakage
from ui.forms import form_values, options_form, options_from_form
from ui.kit import CancelRegistry, bind, clear_on_input, error_markdown, refresh_on_select, version_picker

NONE = "(none)"
BUILDS = CancelRegistry()      # per browser tab: the Stop button of a split being built
CHECKS = CancelRegistry()      # per browser tab: the Leakage sub-tab's Stop (an audit or a fix running)
EXPORTS = CancelRegistry()     # per browser tab: the Export sub-tab's Cancel
INTRO = """### Train / validation / test split
A split is frozen as a new version whose records carry `train`, `val` or `test`. **Group** by a field
(a customer, a conversation) so that it never spans two splits; **stratify** by a label so that every
split holds the same mix. The **leakage audit** then looks for the same question (or nearly the same,
or a shared run of 13 words) on both sides and, by default, moves the leaking groups into one split:
a test set that leaks into training makes every evaluation after it a lie."""


GROUP_HINTS = ("customer_id", "customer", "conversation_id", "user_id", "group")


def _fields(ws, version) -> list[str]:
    if not version:
        return []
    return field_names(V.load_records(ws, version))


def field_defaults(names: list[str], label: str | None) -> tuple[str, str]:
    """(stratify, group) to preselect: the version's label field ``label`` and a customer-like field, when the
    data has them."""
    return (label if label in names else NONE, next((g for g in GROUP_HINTS if g in names), NONE))


def _label_field(ws, version) -> str | None:
    return label_field(ws, version) if version else None


# -- presenters -----------------------------------------------------------------------------------

def leakage_markdown(result_leakage: dict, moved: int = 0, dropped: int = 0, fix: str = "move") -> str:
    """The leakage before (and, unless ``fix`` is none, after) the fix, and what was set aside as boilerplate."""
    before, after = result_leakage["before"], result_leakage["after"]

    def line(report: dict) -> str:
        s = report["summary"]
        kinds = ", ".join(f"{k} {v}" for k, v in s["by kind"].items()) or "none"
        return (f"{report['num_pairs']} leaking pair(s) ({kinds}); leaking records: val {s['leaking records']['val']} "
                f"({s['leaking share']['val']}%), test {s['leaking records']['test']} ({s['leaking share']['test']}%)")
    opts = after["options"]
    text = [f"**Before the fix:** {line(before)}"]
    if fix != "none":
        text.append(f"**After the fix ({fix}):** {line(after)} · moved {moved} · dropped {dropped}")
    text.append(f"_Near duplicate at similarity ≥ {opts['threshold']}; overlap = a shared run of {opts['ngram_words']} "
                f"words. Set aside: {after['boilerplate_ngrams']} boilerplate word runs and {after['canned_answers']} "
                f"canned answers (shared by more than {opts['common_records']} records)._")
    if result_leakage.get("note"):
        text.append(f"⚠️ {result_leakage['note']}")
    if after["num_pairs"] == 0:
        text.append("✅ **No leakage between the splits.**")
    return "\n\n".join(text)


def pairs_table(rows: list, *, fixed: bool) -> dict:
    """The leaking-pairs table, titled for what it shows: pairs leaking now, or (``fixed``) the pairs that
    leaked before the fix moved or dropped them, so it never reads as leakage under "No leakage"."""
    if fixed:
        label = (f"Pairs that leaked before the fix ({len(rows)}; the fix has moved or dropped them)" if rows
                 else "No pair leaked before the fix")
    else:
        label = f"Leaking pairs ({len(rows)}): the val/test record and the record it repeats"
    return gr.update(value=rows, label=label)


def balance_outputs(w: SplitsWidgets, records, label_field) -> dict:
    """The Balance sub-tab's outputs for these split records."""
    report = balance_report(records, label_field)
    rows = report.count_rows()
    mix = pd.DataFrame([{"split": s, "label": label, "share": share}
                        for label, *cells in rows for s, share in zip(SPLITS, cells[1:6:2])])
    lengths = pd.DataFrame(length_histogram(records, "answer"))
    gap = (f"Labels from `{label_field}`. Largest gap between a label's share in a split and its share overall: "
           f"**{report.max_gap:.1f} points** (labels with at least 20 records)" if label_field else
           "_No label field: choose one in the Review tab's Label schema (or stratify by a field) to compare label "
           "shares._")
    sizes = " · ".join(f"{s} {report.sizes[s]:,}" for s in SPLITS)
    lens = " · ".join(f"{s}: median {report.lengths[s]['answer']['median']} words, p90 {report.lengths[s]['answer']['p90']}"
                      for s in SPLITS)
    return {w.balance_md: f"**{sizes}**\n\n{gap}\n\nAnswer lengths — {lens}",
            w.counts_df: pd.DataFrame(rows, columns=count_headers(label_field)),
            w.mix_plot: gr.update(value=mix, title=f"{label_field or 'Label'} mix per split (%)"), w.length_plot: lengths}


# -- widgets --------------------------------------------------------------------------------------

class SplitsWidgets(SimpleNamespace):
    """The Splits tab's components by name (``layout`` fills it); ``form`` holds the ``SplitOptions`` fields
    rendered by ``ui.forms`` (stratify and group are the field pickers ``stratify`` and ``group``)."""

    @property
    def options(self) -> set:
        """What the split options are read from."""
        return {*self.form.values(), self.stratify, self.group}

    @property
    def balance(self) -> list:
        return [self.balance_md, self.counts_df, self.mix_plot, self.length_plot]

    @property
    def leakage(self) -> list:
        return [self.status, self.split_pick, self.leak_md, self.pairs_df]


def layout(ws) -> SplitsWidgets:
    """The Splits tab's widgets, created inside the caller's Blocks; nothing is wired yet."""
    w = SplitsWidgets(form={})
    with gr.Tab("Splits", id="splits") as w.tab:
        gr.Markdown(INTRO)
        with gr.Row():
            w.source = version_picker(ws, "Split this version", scale=2, elem_id="splits-source")
            w.form.update(options_form(SplitOptions, only=("val", "test", "seed"), elem_prefix="splits-option"))
        with gr.Row():
            fields = _fields(ws, w.source.value)
            strat_default, group_default = field_defaults(fields, _label_field(ws, w.source.value))
            w.stratify = gr.Dropdown([NONE] + fields, value=strat_default, elem_id="splits-stratify",
                                     label="Stratify by (keep each label's share)")
            w.group = gr.Dropdown([NONE] + fields, value=group_default, elem_id="splits-group",
                                  label="Group by (never split a customer / conversation)")
            w.form.update(options_form(SplitOptions, only=("max_per_label",), elem_prefix="splits-option"))
        with gr.Row():
            w.form.update(options_form(SplitOptions, only=("leakage_threshold", "fix"), elem_prefix="splits-option"))
            with gr.Column():
                w.build_btn = gr.Button("Build split", variant="primary", elem_id="splits-build")
                w.stop_btn = gr.Button("Stop", variant="stop")
        w.status = gr.Markdown(elem_id="splits-status")
        w.split_pick = version_picker(ws, "Split version to audit, balance and export", splits_only=True,
                                      elem_id="splits-version")
        with gr.Tabs():
            with gr.Tab("Leakage"):
                w.leak_md = gr.Markdown(elem_id="splits-leakage")
                with gr.Row():
                    w.audit_btn = gr.Button("Audit the chosen split version again")
                    w.refix_btn = gr.Button("Fix its leakage (keeps its splits; makes a new version)",
                                            elem_id="splits-refix")
                    w.check_stop_btn = gr.Button("Stop the audit / fix", variant="stop", elem_id="splits-check-stop")
                w.pairs_df = gr.Dataframe(headers=PAIR_HEADERS, interactive=False, wrap=True,
                                          label="Leaking pairs: the val/test record and the record it repeats")
            with gr.Tab("Balance"):
                w.balance_md = gr.Markdown(elem_id="splits-balance")
                w.counts_df = gr.Dataframe(headers=COUNT_HEADERS, interactive=False, label="Records per label per split")
                with gr.Row():
                    w.mix_plot = gr.BarPlot(x="split", y="share", color="label", title="Label mix per split (%)",
                                            y_title="% of the split")
                    w.length_plot = gr.LinePlot(x="words", y="share", color="split", title="Answer length (words)",
                                                y_title="% of the split")
            with gr.Tab("Export"):
                with gr.Row():
                    w.formats = gr.CheckboxGroup(list(EXPORT_FORMATS), value=["jsonl"], label="Formats",
                                                 info="hf = a Hugging Face DatasetDict folder (save_to_disk)")
                    w.shape = gr.Radio(list(SHAPES), value="messages", label="Row shape (as trl reads it)")
                    w.label_field = gr.Textbox(label="Label field (input_label shape; empty: the answer)")
                    with gr.Column():
                        w.export_btn = gr.Button("Export", elem_id="splits-export-btn")
                        w.export_cancel_btn = gr.Button("Cancel export", variant="stop",
                                                        elem_id="splits-export-cancel")
                w.export_file = gr.File(label="Download (zip)", interactive=False)
                w.export_md = gr.Markdown()
    return w


# -- handlers -------------------------------------------------------------------------------------

def form_options(w: SplitsWidgets, data: dict) -> SplitOptions:
    """The split options the page's form asks for; "(none)" means no field."""
    given = form_values(w.form, data)
    for name, picker in (("stratify", w.stratify), ("group", w.group)):
        given[name] = None if data[picker] in (NONE, "", None) else data[picker]
    return options_from_form(SplitOptions, given)


def source_fields(ws, w: SplitsWidgets, data: dict) -> dict:
    """The field pickers for a newly chosen source version, with its label field and a customer-like field
    preselected."""
    names = _fields(ws, data[w.source])
    strat_default, group_default = field_defaults(names, _label_field(ws, data[w.source]))
    return {w.stratify: gr.update(choices=[NONE] + names, value=strat_default),
            w.group: gr.update(choices=[NONE] + names, value=group_default)}


def build_split(ws, w: SplitsWidgets, data: dict, request: gr.Request = None, progress=gr.Progress()) -> dict:
    """Build split: split the source version with the form's options, audit and fix leakage, save a new version.
    **Stop** ends it at its next progress report, before anything is saved."""
    version = data[w.source]
    stop = BUILDS.start(request)
    try:
        if not version:
            raise TuneloopError("there is no dataset yet; import one in the Data tab first")
        options = form_options(w, data)
        result, made = split_version(ws, version, options, progress=_progress(progress, stop))
    except Exception as exc:  # shown in the tab, not raised into Gradio
        return {w.status: error_markdown(exc)}
    finally:
        BUILDS.finish(request, stop)
    records = {r.id: r for r in V.load_records(ws, version)}
    head = (f"✅ Saved **{made.name}** (hash `{made.content_hash[:12]}`): " +
            " · ".join(f"{s} {result.counts()[s]:,}" for s in SPLITS) +
            (f" · {result.capped} left out by the cap" if result.capped else ""))
    if result.balance_warning():
        head += f"\n\n⚠️ The {result.balance_warning()}."
    return {w.status: head, w.split_pick: gr.update(choices=w.split_pick.tuneloop_choices(), value=made.name),
            w.leak_md: leakage_markdown(result.leakage, len(result.moved), len(result.dropped), options.fix),
            w.pairs_df: pairs_table(result.before.rows(records), fixed=options.fix != "none"),
            **balance_outputs(w, result.records, options.stratify or label_field(ws, version)),
            w.source: gr.update(choices=w.source.tuneloop_choices(), value=version)}


def audit_split_version(ws, w: SplitsWidgets, data: dict, request: gr.Request = None,
                        progress=gr.Progress()) -> dict:
    """Audit the chosen split version again with the form's leakage threshold (nothing is changed). **Stop the
    audit / fix** ends it at its next progress report."""
    stop = CHECKS.start(request)
    try:
        records = split_records(ws, data[w.split_pick])
        report = audit_leakage(records, AuditOptions(threshold=form_options(w, data).leakage_threshold),
                               progress=_progress(progress, stop, "the audit was stopped; nothing was changed"))
    except Exception as exc:
        return {w.leak_md: error_markdown(exc)}
    finally:
        CHECKS.finish(request, stop)
    found = {"before": report.to_dict(), "after": report.to_dict()}
    return {w.leak_md: leakage_markdown(found, fix="none"),
            w.pairs_df: pairs_table(report.rows({r.id: r for r in records}), fixed=False)}


def refix_split_version(ws, w: SplitsWidgets, data: dict, request: gr.Request = None,
                        progress=gr.Progress()) -> dict:
    """Fix the leakage of the chosen split version, keeping its splits; a new version when anything moved.
    **Stop the audit / fix** ends it at its next progress report, before the version is saved."""
    version = data[w.split_pick]
    stop = CHECKS.start(request)
    try:
        records = split_records(ws, version)
        given = form_options(w, data)
        options = SplitOptions(stratify=given.stratify, group=given.group,
                               leakage_threshold=given.leakage_threshold, fix=given.fix)
        result = make_split(records, options, keep_splits=True,
                            progress=_progress(progress, stop, f"the fix was stopped; nothing was saved ({version} "
                                                               "is unchanged)"))
        if stop.is_set():
            raise TuneloopError(f"the fix was stopped; nothing was saved ({version} is unchanged)")
        if result.before.clean or options.fix == "none":
            return {w.status: f"{version}: nothing to fix" if result.before.clean else f"{version}: reported only",
                    w.leak_md: leakage_markdown(result.leakage, fix="none"),
                    w.pairs_df: pairs_table(result.before.rows({r.id: r for r in records}), fixed=False)}
        made = save_split_version(ws, result, parent=V.parse_version_id(version))
    except Exception as exc:  # shown in the tab, not raised into Gradio
        return {w.status: error_markdown(exc)}
    finally:
        CHECKS.finish(request, stop)
    return {w.status: f"Saved **{made.name}** from {version} (splits kept, leakage fixed by {options.fix})",
            w.split_pick: gr.update(choices=w.split_pick.tuneloop_choices(), value=made.name),
            w.leak_md: leakage_markdown(result.leakage, len(result.moved), len(result.dropped), options.fix),
            w.pairs_df: pairs_table(result.before.rows({r.id: r for r in records}), fixed=True)}


def split_balance(ws, w: SplitsWidgets, data: dict) -> dict:
    """The Balance sub-tab for the chosen split version (labels from the field it was stratified by, else from
    its label field)."""
    try:
        records = split_records(ws, data[w.split_pick])
        label = V.get_version(ws, data[w.split_pick]).params.get("stratify")
        return balance_outputs(w, records, label or label_field(ws, data[w.split_pick]))
    except Exception as exc:
        return {w.balance_md: error_markdown(exc)}


def export_split_version(ws, w: SplitsWidgets, data: dict, request: gr.Request = None,
                         progress=gr.Progress()) -> dict:
    """Write the chosen split version in the chosen formats and shape, and offer it as a zip. **Cancel
    export** ends it at its next progress report; the folder and zip of this export are then removed."""
    version, shape = data[w.split_pick], data[w.shape]
    stop = EXPORTS.start(request)
    out = archive = None
    try:
        records = split_records(ws, version)
        if not data[w.formats]:
            raise TuneloopError("choose at least one format")
        out = ws.path("exports", f"{version}-{shape}")
        if out.exists():   # this tab's own folder: an earlier export's files (other formats, old names) go
            shutil.rmtree(out)
        archive = export_folder(ws) / f"{version}-{shape}"
        Path(f"{archive}.zip").unlink(missing_ok=True)   # an earlier zip would no longer match the folder
        cancelled = f"the export was cancelled; no file was kept ({version} is unchanged)"
        written = export_split(records, out, formats=data[w.formats], shape=shape,
                               label_field=(data[w.label_field] or "").strip() or None,
                               progress=_progress(progress, stop, cancelled))
        _progress(progress, stop, cancelled)(0.95, "zipping")
        zipped = shutil.make_archive(str(archive), "zip", out)
    except Exception as exc:
        if stop.is_set():   # nothing half-written stays behind
            if out is not None and out.exists():
                shutil.rmtree(out)
            if archive is not None:
                Path(f"{archive}.zip").unlink(missing_ok=True)
        return {w.export_file: None, w.export_md: error_markdown(exc)}
    finally:
        EXPORTS.finish(request, stop)
    return {w.export_file: zipped, w.export_md: f"Wrote {len(written)} file(s) to `{out}`: " +
            ", ".join(p.name for p in written)}


def stop_split(ws, w: SplitsWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's split build (Gradio's own cancel lets a running handler finish and save)."""
    return {w.status: "Stopping…" if BUILDS.cancel(request) else "No split of yours is being built."}


def stop_check(ws, w: SplitsWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's leakage audit or fix at its next progress report."""
    return {w.leak_md: "Stopping…" if CHECKS.cancel(request) else "No audit or fix of yours is running."}


def cancel_export(ws, w: SplitsWidgets, request: gr.Request = None) -> dict:
    """Cancel this browser tab's export at its next progress report (its files are removed)."""
    return {w.export_md: "Cancelling…" if EXPORTS.cancel(request) else "No export of yours is running."}


def _progress(progress, stop=None, stopped: str = "the split was stopped; nothing was saved"):
    def report(fraction: float, text: str) -> None:
        if stop is not None and stop.is_set():
            raise TuneloopError(stopped)
        progress(fraction, desc=text)
    return report


# -- wiring ---------------------------------------------------------------------------------------

def build(ws) -> SplitsWidgets:
    """The Splits tab inside the caller's Blocks: ``layout``'s widgets wired to the handlers above."""
    w = layout(ws)

    def on(event, handler, inputs, outputs, **kw):
        return event(bind(handler, ws, w), inputs, outputs, api_name=False, **kw)

    on(w.build_btn.click, build_split, {w.source, *w.options}, w.leakage + w.balance + [w.source])
    on(w.stop_btn.click, stop_split, None, [w.status])
    on(w.audit_btn.click, audit_split_version, {w.split_pick, *w.options}, [w.leak_md, w.pairs_df])
    on(w.refix_btn.click, refix_split_version, {w.split_pick, *w.options}, w.leakage)
    on(w.check_stop_btn.click, stop_check, None, [w.leak_md])
    on(w.split_pick.change, split_balance, {w.split_pick}, w.balance)
    on(w.export_btn.click, export_split_version, {w.split_pick, w.formats, w.shape, w.label_field},
       [w.export_file, w.export_md])
    on(w.export_cancel_btn.click, cancel_export, None, [w.export_md])
    on(w.source.change, source_fields, {w.source}, [w.stratify, w.group])
    refresh_on_select(w.tab, ws, [w.source, w.split_pick])
    clear_on_input([w.source], [w.status])
    clear_on_input([w.split_pick], [w.leak_md, w.export_md])
    return w
