"""The Splits tab: build a train/val/test split, audit and fix leakage, check the balance, preview the
chat template with the trained tokens, and export the split for training."""
from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from curation.data import versions as V
from curation.splits.leakage import PAIR_HEADERS, AuditOptions, audit_leakage
from curation.dedup.shingles import DEFAULT_THRESHOLD
from curation.data.records import SPLITS
from curation.splits.build import (COUNT_HEADERS, EXPORT_FORMATS, SHAPES, SplitConfig, SplitResult, balance_report,
                             export_split, field_names, length_histogram, make_split, save_split_version)
from training.template_preview import (CONTEXT, CUT, TRAINED, default_sequence_len, preview_record,
                                       token_length_stats)
from curation.ui.common import current_name, error_markdown, version_choices

NONE = "(none)"
INTRO = """### Train / validation / test split
A split is frozen as a new version whose records carry `train`, `val` or `test`. **Group** by a field
(a customer, a conversation) so that it never spans two splits; **stratify** by a label so that every
split holds the same mix. The **leakage audit** then looks for the same question (or nearly the same,
or a shared run of 13 words) on both sides and, by default, moves the leaking groups into one split:
a test set that leaks into training makes every evaluation after it a lie."""
COLORS = {TRAINED: "#16a34a", CONTEXT: "#e5e7eb", CUT: "#f87171"}


def latest_split(ws) -> str | None:
    """The newest version made by a split (data that came split can be chosen by hand)."""
    return next((v.name for v in reversed(V.list_versions(ws)) if v.step == "split"), None)


GROUP_HINTS = ("customer_id", "customer", "conversation_id", "user_id", "group")


def _fields(ws, version) -> list[str]:
    if not version:
        return []
    return field_names(V.load_records(ws, version))


def field_defaults(names: list[str]) -> tuple[str, str]:
    """(stratify, group) to preselect: a label field and a customer-like field when the data has them."""
    return ("label" if "label" in names else NONE, next((g for g in GROUP_HINTS if g in names), NONE))


def _size(value) -> float:
    value = float(value or 0)
    return int(value) if value >= 1 else value


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


def balance_outputs(records, label_field):
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
    return f"**{sizes}**\n\n{gap}\n\nAnswer lengths — {lens}", rows, mix, lengths


@lru_cache(maxsize=2)
def _tokenizer(model: str, root: str):
    from core.workspace import Workspace
    from training.template_preview import load_preview_tokenizer
    return load_preview_tokenizer(model, Workspace.open(root))


def build(ws) -> None:
    with gr.Tab("Splits", id="splits") as tab:
        gr.Markdown(INTRO)
        with gr.Row():
            source = gr.Dropdown(version_choices(ws), value=current_name(ws), label="Split this version", scale=2,
                                 elem_id="splits-source")
            val = gr.Number(value=0.1, label="Validation (ratio, or number of records)", minimum=0)
            test = gr.Number(value=0.1, label="Test (ratio, or number of records)", minimum=0)
            seed = gr.Number(value=0, precision=0, label="Seed (same seed, same split)")
        with gr.Row():
            fields = _fields(ws, current_name(ws))
            strat_default, group_default = field_defaults(fields)
            stratify = gr.Dropdown([NONE] + fields, value=strat_default,
                                   label="Stratify by (keep each label's share)", elem_id="splits-stratify")
            group = gr.Dropdown([NONE] + fields, value=group_default,
                                label="Group by (never split a customer / conversation)", elem_id="splits-group")
            cap = gr.Number(value=0, precision=0, minimum=0, label="Cap per label (0: no cap)")
        with gr.Row():
            threshold = gr.Slider(0.3, 1.0, value=DEFAULT_THRESHOLD, step=0.05,
                                  label="Leakage: near-duplicate similarity threshold")
            fix = gr.Radio(["move", "drop", "none"], value="move", label="Fix leakage by",
                           info="move leaking groups into one split; drop leaking val/test records (≤ 3%); or only report")
            with gr.Column():
                build_btn = gr.Button("Build split", variant="primary", elem_id="splits-build")
                stop_btn = gr.Button("Stop", variant="stop")
        status = gr.Markdown(elem_id="splits-status")
        split_pick = gr.Dropdown(version_choices(ws), value=latest_split(ws), elem_id="splits-version",
                                 label="Split version to audit, balance, preview and export")
        with gr.Tabs():
            with gr.Tab("Leakage"):
                leak_md = gr.Markdown(elem_id="splits-leakage")
                with gr.Row():
                    audit_btn = gr.Button("Audit the chosen split version again")
                    refix_btn = gr.Button("Fix its leakage (keeps its splits; makes a new version)",
                                          elem_id="splits-refix")
                pairs_df = gr.Dataframe(headers=PAIR_HEADERS, interactive=False, wrap=True,
                                        label="Leaking pairs: the val/test record and the record it repeats")
            with gr.Tab("Balance"):
                balance_md = gr.Markdown(elem_id="splits-balance")
                counts_df = gr.Dataframe(headers=COUNT_HEADERS, interactive=False, label="Records per label per split")
                with gr.Row():
                    mix_plot = gr.BarPlot(x="split", y="share", color="label", title="Label mix per split (%)",
                                          y_title="% of the split")
                    length_plot = gr.LinePlot(x="words", y="share", color="split", title="Answer length (words)",
                                              y_title="% of the split")
            with gr.Tab("Template preview"):
                with gr.Row():
                    model = gr.Textbox(value="default", label="Base model (default: SmolLM2-135M-Instruct)")
                    seq_len = gr.Number(value=default_sequence_len(), precision=0, minimum=16,
                                        label="Sequence length (tokens; training cuts there)")
                    record_id = gr.Textbox(label="Record id (empty: the first test record)", elem_id="splits-record")
                    preview_btn = gr.Button("Preview", elem_id="splits-preview-btn")
                    lengths_btn = gr.Button("Token lengths of the split")
                preview_md = gr.Markdown(elem_id="splits-preview-counts")
                preview_hl = gr.HighlightedText(label="Exactly what the model sees (green: trained on)",
                                                color_map=COLORS, show_legend=True, combine_adjacent=True,
                                                elem_id="splits-preview")
                tokens_md = gr.Markdown()
                tokens_plot = gr.BarPlot(x="tokens", y="records", color="part", title="Tokens per conversation",
                                         color_map={"fits": "#2563eb", CUT: "#f87171"}, x_title="tokens (bin start)")
            with gr.Tab("Export"):
                with gr.Row():
                    formats = gr.CheckboxGroup(list(EXPORT_FORMATS), value=["jsonl"], label="Formats",
                                               info="hf = a Hugging Face DatasetDict folder (save_to_disk)")
                    shape = gr.Radio(list(SHAPES), value="messages", label="Row shape (as trl reads it)")
                    label_field = gr.Textbox(label="Label field (input_label shape; empty: the answer)")
                    export_btn = gr.Button("Export", elem_id="splits-export-btn")
                export_file = gr.File(label="Download (zip)", interactive=False)
                export_md = gr.Markdown()

    def refresh_sources():
        return (gr.update(choices=version_choices(ws), value=current_name(ws)),
                gr.update(choices=version_choices(ws), value=latest_split(ws)))

    def on_source(version):
        names = _fields(ws, version)
        strat_default, group_default = field_defaults(names)
        return (gr.update(choices=[NONE] + names, value=strat_default),
                gr.update(choices=[NONE] + names, value=group_default))

    def do_build(version, val_v, test_v, seed_v, strat, grp, cap_v, thr, fix_v, progress=gr.Progress()):
        try:
            if not version:
                raise TuneloopError("there is no dataset yet; import one in the Data tab first")
            records = V.load_records(ws, version)
            config = SplitConfig(val=_size(val_v), test=_size(test_v), stratify=None if strat == NONE else strat,
                                 group=None if grp == NONE else grp, seed=int(seed_v or 0),
                                 max_per_label=int(cap_v) if cap_v else None)
            result: SplitResult = make_split(records, config, leakage_threshold=float(thr), fix=fix_v,
                                             progress=lambda f, d: progress(f, desc=d))
            made = save_split_version(ws, result, parent=V.parse_version_id(version))
        except Exception as exc:  # shown in the tab, not raised into Gradio
            return [error_markdown(exc)] + [gr.update()] * 8
        pairs = result.before.rows({r.id: r for r in records})
        summary, rows, mix, lengths = balance_outputs(result.records, config.stratify)
        head = (f"✅ Saved **{made.name}** (hash `{made.content_hash[:12]}`): " +
                " · ".join(f"{s} {result.counts()[s]:,}" for s in SPLITS) +
                (f" · {result.capped} left out by the cap" if result.capped else ""))
        if result.balance_warning():
            head += f"\n\n⚠️ The {result.balance_warning()}."
        return [head, gr.update(choices=version_choices(ws), value=made.name),
                leakage_markdown(result.leakage, len(result.moved), len(result.dropped), fix_v), pairs,
                summary, rows, mix, lengths, gr.update(choices=version_choices(ws), value=version)]

    build_event = build_btn.click(
        do_build, [source, val, test, seed, stratify, group, cap, threshold, fix],
        [status, split_pick, leak_md, pairs_df, balance_md, counts_df, mix_plot, length_plot, source])
    stop_btn.click(None, None, None, cancels=[build_event])

    def split_records(version):
        if not version:
            raise TuneloopError("there is no split version yet; build a split first")
        records = V.load_records(ws, version)
        if any(r.split not in SPLITS for r in records):
            raise TuneloopError(f"{version} has records without a train/val/test split; build a split first")
        return records

    def do_audit(version, thr, progress=gr.Progress()):
        try:
            records = split_records(version)
            report = audit_leakage(records, AuditOptions(threshold=float(thr)),
                                   progress=lambda f, d: progress(f, desc=d))
        except Exception as exc:
            return error_markdown(exc), gr.update()
        data = {"before": report.to_dict(), "after": report.to_dict()}
        return leakage_markdown(data, fix="none"), report.rows({r.id: r for r in records})

    audit_btn.click(do_audit, [split_pick, threshold], [leak_md, pairs_df])

    def do_refix(version, strat, grp, thr, fix_v, progress=gr.Progress()):
        try:
            records = split_records(version)
            config = SplitConfig(stratify=None if strat == NONE else strat, group=None if grp == NONE else grp)
            result = make_split(records, config, leakage_threshold=float(thr), fix=fix_v, keep_splits=True,
                                progress=lambda f, d: progress(f, desc=d))
            if result.before.clean or fix_v == "none":
                return (f"{version}: nothing to fix" if result.before.clean else f"{version}: reported only",
                        gr.update(), leakage_markdown(result.leakage, fix="none"),
                        result.before.rows({r.id: r for r in records}))
            made = save_split_version(ws, result, parent=V.parse_version_id(version))
        except Exception as exc:  # shown in the tab, not raised into Gradio
            return error_markdown(exc), gr.update(), gr.update(), gr.update()
        return (f"Saved **{made.name}** from {version} (splits kept, leakage fixed by {fix_v})",
                gr.update(choices=version_choices(ws), value=made.name),
                leakage_markdown(result.leakage, len(result.moved), len(result.dropped), fix_v),
                result.before.rows({r.id: r for r in records}))

    refix_btn.click(do_refix, [split_pick, stratify, group, threshold, fix], [status, split_pick, leak_md, pairs_df])

    def do_balance(version):
        try:
            records = split_records(version)
            label = V.get_version(ws, version).params.get("stratify")
            return balance_outputs(records, label or ("label" if any("label" in r.meta for r in records) else None))
        except Exception as exc:
            return error_markdown(exc), gr.update(), gr.update(), gr.update()

    split_pick.change(do_balance, [split_pick], [balance_md, counts_df, mix_plot, length_plot])

    def do_preview(version, model_name, length, rid):
        try:
            records = split_records(version)
            record = (next((r for r in records if r.id == rid.strip()), None) if rid and rid.strip()
                      else next((r for r in records if r.split == "test"), records[0]))
            if record is None:
                raise TuneloopError(f"there is no record '{rid}' in {version}")
            tokenizer, name = _tokenizer(model_name.strip() or "default", str(ws.root))
            preview = preview_record(tokenizer, record, int(length or default_sequence_len()))
        except Exception as exc:
            return error_markdown(exc), gr.update()
        counts = preview.counts()
        md = (f"**{record.id}** ({record.split}) rendered for **{name}**: {counts['tokens']} tokens, "
              f"**{counts['trained']} trained** (assistant turns), {counts['context']} context"
              + (f", ⚠️ {counts['cut off']} cut off past {preview.sequence_len}" if counts["cut off"] else ""))
        return md, [(text, kind) for text, kind in preview.segments]

    preview_btn.click(do_preview, [split_pick, model, seq_len, record_id], [preview_md, preview_hl])

    def do_lengths(version, model_name, length, progress=gr.Progress()):
        try:
            records = split_records(version)
            tokenizer, name = _tokenizer(model_name.strip() or "default", str(ws.root))
            stats = token_length_stats(tokenizer, records, int(length or default_sequence_len()),
                                       progress=lambda f, d: progress(f, desc=d))
        except Exception as exc:
            return error_markdown(exc), gr.update()
        s = stats.summary()
        md = (f"{s['records']:,} conversations for **{name}**: median {s['median']} tokens, p95 {s['p95']}, "
              f"max {s['max']}; **{s['cut off']} ({s['cut off %']}%) longer than the sequence length "
              f"{s['sequence length']}** (red: their ends are cut off in training)")
        return md, pd.DataFrame(stats.histogram())

    lengths_btn.click(do_lengths, [split_pick, model, seq_len], [tokens_md, tokens_plot])

    def do_export(version, fmts, shape_v, label_v, progress=gr.Progress()):
        try:
            records = split_records(version)
            if not fmts:
                raise TuneloopError("choose at least one format")
            progress(0.1, desc="writing the split")
            out = ws.path("exports", f"{version}-{shape_v}")
            written = export_split(records, out, formats=fmts, shape=shape_v, label_field=(label_v or "").strip() or None)
            archive = Path(tempfile.mkdtemp(prefix="tuneloop-split-")) / f"{version}-{shape_v}"
            zipped = shutil.make_archive(str(archive), "zip", out)
        except Exception as exc:
            return None, error_markdown(exc)
        return zipped, f"Wrote {len(written)} file(s) to `{out}`: " + ", ".join(p.name for p in written)

    export_btn.click(do_export, [split_pick, formats, shape, label_field], [export_file, export_md])

    source.change(on_source, [source], [stratify, group])
    tab.select(refresh_sources, None, [source, split_pick])

