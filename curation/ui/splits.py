"""The Splits tab: build a train/val/test split, audit and fix leakage, check the balance, and export the
split for training. Handlers are module-level functions of the workspace that return outputs keyed by
component name; ``build`` only lays out the components (the form from ``SplitOptions``) and wires them."""
from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from core.options import options_fields
from curation.data import versions as V
from curation.data.records import SPLITS
from curation.splits.balance import COUNT_HEADERS, balance_report, length_histogram
from curation.splits.build import SplitOptions, make_split, save_split_version, split_version
from curation.splits.export import EXPORT_FORMATS, SHAPES, export_split
from curation.splits.fields import field_names
from curation.splits.leakage import PAIR_HEADERS, AuditOptions, audit_leakage
from ui.forms import connect, options_form, options_from_form
from ui.kit import error_markdown, refresh_on_select, version_choices, version_picker

NONE = "(none)"
OPTION_FIELDS = [f.name for f in options_fields(SplitOptions)]
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


def field_defaults(names: list[str]) -> tuple[str, str]:
    """(stratify, group) to preselect: a label field and a customer-like field when the data has them."""
    return ("label" if "label" in names else NONE, next((g for g in GROUP_HINTS if g in names), NONE))


def leakage_markdown(result_leakage: dict, moved: int = 0, dropped: int = 0, fix: str = "move") -> str:
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


def balance_outputs(records, label_field) -> dict:
    """The Balance sub-tab's outputs for these split records."""
    report = balance_report(records, label_field)
    rows = report.count_rows()
    mix = pd.DataFrame([{"split": s, "label": label, "share": share}
                        for label, *cells in rows for s, share in zip(SPLITS, cells[1:6:2])])
    lengths = pd.DataFrame(length_histogram(records, "answer"))
    gap = (f"Largest gap between a label's share in a split and its share overall: **{report.max_gap:.1f} points** "
           f"(labels with at least 20 records)" if label_field else "_Choose a label field to compare label shares._")
    sizes = " · ".join(f"{s} {report.sizes[s]:,}" for s in SPLITS)
    lens = " · ".join(f"{s}: median {report.lengths[s]['answer']['median']} words, p90 {report.lengths[s]['answer']['p90']}"
                      for s in SPLITS)
    return {"balance_md": f"**{sizes}**\n\n{gap}\n\nAnswer lengths — {lens}", "counts_df": rows, "mix_plot": mix,
            "length_plot": lengths}


def form_options(values) -> SplitOptions:
    """The split options the form's values (in OPTION_FIELDS order) ask for; "(none)" means no field."""
    given = dict(zip(OPTION_FIELDS, values))
    for name in ("stratify", "group"):
        given[name] = None if given[name] in (NONE, "", None) else given[name]
    return options_from_form(SplitOptions, given)


def source_fields(ws, version) -> dict:
    """The field pickers for a newly chosen source version, with a label and a customer-like field preselected."""
    names = _fields(ws, version)
    strat_default, group_default = field_defaults(names)
    return {"stratify": gr.update(choices=[NONE] + names, value=strat_default),
            "group": gr.update(choices=[NONE] + names, value=group_default)}


def build_split(ws, version, *values, progress=None) -> dict:
    """Build split: split ``version`` with the form's options, audit and fix leakage, save a new version."""
    try:
        if not version:
            raise TuneloopError("there is no dataset yet; import one in the Data tab first")
        options = form_options(values)
        result, made = split_version(ws, version, options, progress=_progress(progress))
    except Exception as exc:  # shown in the tab, not raised into Gradio
        return {"status": error_markdown(exc)}
    records = {r.id: r for r in V.load_records(ws, version)}
    head = (f"✅ Saved **{made.name}** (hash `{made.content_hash[:12]}`): " +
            " · ".join(f"{s} {result.counts()[s]:,}" for s in SPLITS) +
            (f" · {result.capped} left out by the cap" if result.capped else ""))
    if result.balance_warning():
        head += f"\n\n⚠️ The {result.balance_warning()}."
    return {"status": head, "split_pick": gr.update(choices=version_choices(ws, splits_only=True), value=made.name),
            "leak_md": leakage_markdown(result.leakage, len(result.moved), len(result.dropped), options.fix),
            "pairs_df": result.before.rows(records), **balance_outputs(result.records, options.stratify),
            "source": gr.update(choices=version_choices(ws), value=version)}


def split_records(ws, version):
    """The records of a split version; a TuneloopError when it is not split."""
    if not version:
        raise TuneloopError("there is no split version yet; build a split first")
    records = V.load_records(ws, version)
    if any(r.split not in SPLITS for r in records):
        raise TuneloopError(f"{version} has records without a train/val/test split; build a split first")
    return records


def audit_split_version(ws, version, *values, progress=None) -> dict:
    """Audit the chosen split version again with the form's leakage threshold (nothing is changed)."""
    try:
        records = split_records(ws, version)
        report = audit_leakage(records, AuditOptions(threshold=form_options(values).leakage_threshold),
                               progress=_progress(progress))
    except Exception as exc:
        return {"leak_md": error_markdown(exc)}
    data = {"before": report.to_dict(), "after": report.to_dict()}
    return {"leak_md": leakage_markdown(data, fix="none"), "pairs_df": report.rows({r.id: r for r in records})}


def refix_split_version(ws, version, *values, progress=None) -> dict:
    """Fix the leakage of the chosen split version, keeping its splits; a new version when anything moved."""
    try:
        records = split_records(ws, version)
        given = form_options(values)
        options = SplitOptions(stratify=given.stratify, group=given.group,
                               leakage_threshold=given.leakage_threshold, fix=given.fix)
        result = make_split(records, options, keep_splits=True, progress=_progress(progress))
        if result.before.clean or options.fix == "none":
            return {"status": f"{version}: nothing to fix" if result.before.clean else f"{version}: reported only",
                    "leak_md": leakage_markdown(result.leakage, fix="none"),
                    "pairs_df": result.before.rows({r.id: r for r in records})}
        made = save_split_version(ws, result, parent=V.parse_version_id(version))
    except Exception as exc:  # shown in the tab, not raised into Gradio
        return {"status": error_markdown(exc)}
    return {"status": f"Saved **{made.name}** from {version} (splits kept, leakage fixed by {options.fix})",
            "split_pick": gr.update(choices=version_choices(ws, splits_only=True), value=made.name),
            "leak_md": leakage_markdown(result.leakage, len(result.moved), len(result.dropped), options.fix),
            "pairs_df": result.before.rows({r.id: r for r in records})}


def split_balance(ws, version) -> dict:
    """The Balance sub-tab for the chosen split version (labels from the field it was stratified by)."""
    try:
        records = split_records(ws, version)
        label = V.get_version(ws, version).params.get("stratify")
        return balance_outputs(records, label or ("label" if any("label" in r.meta for r in records) else None))
    except Exception as exc:
        return {"balance_md": error_markdown(exc)}


def export_split_version(ws, version, fmts, shape_v, label_v, progress=None) -> dict:
    """Write the chosen split version in the chosen formats and shape, and offer it as a zip."""
    try:
        records = split_records(ws, version)
        if not fmts:
            raise TuneloopError("choose at least one format")
        if progress is not None:
            progress(0.1, desc="writing the split")
        out = ws.path("exports", f"{version}-{shape_v}")
        written = export_split(records, out, formats=fmts, shape=shape_v, label_field=(label_v or "").strip() or None)
        archive = Path(tempfile.mkdtemp(prefix="tuneloop-split-")) / f"{version}-{shape_v}"
        zipped = shutil.make_archive(str(archive), "zip", out)
    except Exception as exc:
        return {"export_file": None, "export_md": error_markdown(exc)}
    return {"export_file": zipped, "export_md": f"Wrote {len(written)} file(s) to `{out}`: " +
            ", ".join(p.name for p in written)}


def _all_but(*names: str) -> tuple[str, ...]:
    return tuple(n for n in OPTION_FIELDS if n not in names)


def _progress(progress):
    return None if progress is None else (lambda f, d: progress(f, desc=d))


def build(ws) -> None:
    """The Splits tab, inside the caller's Blocks."""
    view: dict = {}
    with gr.Tab("Splits", id="splits") as tab:
        gr.Markdown(INTRO)
        with gr.Row():
            view["source"] = version_picker(ws, "Split this version", scale=2, elem_id="splits-source")
            form = options_form(SplitOptions, skip=_all_but("val", "test", "seed"))
        with gr.Row():
            fields = _fields(ws, view["source"].value)
            strat_default, group_default = field_defaults(fields)
            view["stratify"] = gr.Dropdown([NONE] + fields, value=strat_default, elem_id="splits-stratify",
                                           label="Stratify by (keep each label's share)")
            view["group"] = gr.Dropdown([NONE] + fields, value=group_default, elem_id="splits-group",
                                        label="Group by (never split a customer / conversation)")
            form.update(options_form(SplitOptions, skip=_all_but("max_per_label")))
        with gr.Row():
            form.update(options_form(SplitOptions, skip=_all_but("leakage_threshold", "fix")))
            with gr.Column():
                build_btn = gr.Button("Build split", variant="primary", elem_id="splits-build")
                stop_btn = gr.Button("Stop", variant="stop")
        view.update(form)
        view["status"] = gr.Markdown(elem_id="splits-status")
        view["split_pick"] = version_picker(ws, "Split version to audit, balance and export", splits_only=True,
                                            elem_id="splits-version")
        with gr.Tabs():
            with gr.Tab("Leakage"):
                view["leak_md"] = gr.Markdown(elem_id="splits-leakage")
                with gr.Row():
                    audit_btn = gr.Button("Audit the chosen split version again")
                    refix_btn = gr.Button("Fix its leakage (keeps its splits; makes a new version)",
                                          elem_id="splits-refix")
                view["pairs_df"] = gr.Dataframe(headers=PAIR_HEADERS, interactive=False, wrap=True,
                                                label="Leaking pairs: the val/test record and the record it repeats")
            with gr.Tab("Balance"):
                view["balance_md"] = gr.Markdown(elem_id="splits-balance")
                view["counts_df"] = gr.Dataframe(headers=COUNT_HEADERS, interactive=False,
                                                 label="Records per label per split")
                with gr.Row():
                    view["mix_plot"] = gr.BarPlot(x="split", y="share", color="label", title="Label mix per split (%)",
                                                  y_title="% of the split")
                    view["length_plot"] = gr.LinePlot(x="words", y="share", color="split",
                                                      title="Answer length (words)", y_title="% of the split")
            with gr.Tab("Export"):
                with gr.Row():
                    view["formats"] = gr.CheckboxGroup(list(EXPORT_FORMATS), value=["jsonl"], label="Formats",
                                                       info="hf = a Hugging Face DatasetDict folder (save_to_disk)")
                    view["shape"] = gr.Radio(list(SHAPES), value="messages", label="Row shape (as trl reads it)")
                    view["label_field"] = gr.Textbox(label="Label field (input_label shape; empty: the answer)")
                    export_btn = gr.Button("Export", elem_id="splits-export-btn")
                view["export_file"] = gr.File(label="Download (zip)", interactive=False)
                view["export_md"] = gr.Markdown()

    on = functools.partial
    balance = ["balance_md", "counts_df", "mix_plot", "length_plot"]
    build_event = connect(build_btn.click, on(build_split, ws), view, inputs=["source", *OPTION_FIELDS],
                          outputs=["status", "split_pick", "leak_md", "pairs_df", *balance, "source"])
    stop_btn.click(None, None, None, cancels=[build_event])
    connect(audit_btn.click, on(audit_split_version, ws), view, inputs=["split_pick", *OPTION_FIELDS],
            outputs=["leak_md", "pairs_df"])
    connect(refix_btn.click, on(refix_split_version, ws), view, inputs=["split_pick", *OPTION_FIELDS],
            outputs=["status", "split_pick", "leak_md", "pairs_df"])
    connect(view["split_pick"].change, on(split_balance, ws), view, inputs=["split_pick"], outputs=balance)
    connect(export_btn.click, on(export_split_version, ws), view, inputs=["split_pick", "formats", "shape", "label_field"],
            outputs=["export_file", "export_md"])
    connect(view["source"].change, on(source_fields, ws), view, inputs=["source"], outputs=["stratify", "group"])
    refresh_on_select(tab, ws, [view["source"], view["split_pick"]])
