"""The Splits tab's handlers without a browser: the page's values in, outputs keyed by component out."""
from __future__ import annotations

import gradio as gr
import pytest

from curation.data.versions import create_version, current_version, get_version
from curation.splits.build import SplitOptions
from curation.ui import splits
from tests.tab_page import page
from tests.test_splits import support_tickets


@pytest.fixture
def tab(ws):
    with gr.Blocks():
        with gr.Tabs():
            w = splits.build(ws)
    return ws, w


def test_the_form_is_rendered_from_split_options(tab):
    ws, w = tab
    assert set(w.form) | {"stratify", "group"} == set(SplitOptions().to_dict())
    assert w.form["fix"].value == SplitOptions().fix and w.form["fix"].elem_id == "splits-option-fix"


def test_build_saves_a_split_version_with_the_form_options(tab):
    ws, w = tab
    source = create_version(ws, support_tickets(300, seed=1), parent=None, step="import")
    out = splits.build_split(ws, w, page(w, source=source.name, stratify="label", group="customer",
                                         form={"seed": 3.0, "test": 30.0}))
    made = current_version(ws)
    assert "Saved **v2**" in out[w.status] and made.step == "split" and made.parent_id == source.id
    assert made.params == SplitOptions(stratify="label", group="customer", seed=3, test=30).to_dict()
    assert "Before the fix:" in out[w.leak_md] and "Largest gap" in out[w.balance_md]
    # The pairs under the fixed split are titled as what leaked before the fix, never as leakage now.
    assert out[w.pairs_df]["label"].startswith(("Pairs that leaked before the fix", "No pair leaked"))
    assert out[w.split_pick]["value"] == "v2" and out[w.split_pick]["choices"][0][0].startswith("v2 (current)")
    assert out[w.source]["value"] == "v1"
    chosen = page(w, split_pick=made.name)
    assert "Largest gap" in splits.split_balance(ws, w, chosen)[w.balance_md]
    audited = splits.audit_split_version(ws, w, chosen)
    assert "leaking pair(s)" in audited[w.leak_md] and audited[w.pairs_df]["label"].startswith("Leaking pairs (")
    exported = splits.export_split_version(ws, w, page(w, split_pick=made.name, formats=["jsonl"]))
    assert exported[w.export_file].endswith(".zip") and "Wrote 3 file(s)" in exported[w.export_md]


def test_a_new_source_offers_its_fields_with_a_label_and_a_customer_preselected(tab):
    ws, w = tab
    source = create_version(ws, support_tickets(40, seed=5), parent=None, step="import")
    out = splits.source_fields(ws, w, page(w, source=source.name))
    assert out[w.stratify]["value"] == "label" and out[w.group]["value"] == "customer"
    assert splits.NONE in out[w.group]["choices"]


def test_bad_form_values_are_shown_naming_the_key(tab):
    ws, w = tab
    source = create_version(ws, support_tickets(80, seed=2), parent=None, step="import")
    out = splits.build_split(ws, w, page(w, source=source.name, form={"val": 2.5}))
    assert "val: 2.5 is neither a ratio below 1 nor a whole number" in out[w.status]
    out = splits.build_split(ws, w, page(w, source=source.name, form={"max_per_label": -3}))
    assert "max_per_label: -3 is too small" in out[w.status]
    refused = splits.refix_split_version(ws, w, page(w, split_pick=source.name))
    assert "without a train/val/test split" in refused[w.status]
    assert current_version(ws).id == source.id


def test_refix_keeps_the_splits_and_only_saves_when_something_moved(tab):
    ws, w = tab
    source = create_version(ws, support_tickets(300, seed=4), parent=None, step="import")
    splits.build_split(ws, w, page(w, source=source.name, form={"fix": "none"}))
    leaky = current_version(ws)
    out = splits.refix_split_version(ws, w, page(w, split_pick=leaky.name, form={"fix": "move"}))
    fixed = current_version(ws)
    assert f"Saved **{fixed.name}** from {leaky.name}" in out[w.status]
    assert get_version(ws, fixed.id).params["fix"] == "move" and fixed.parent_id == leaky.id
    assert splits.refix_split_version(ws, w, page(w, split_pick=fixed.name))[w.status] == f"{fixed.name}: nothing to fix"


def test_stop_ends_a_running_build_before_anything_is_saved(tab):
    """Stop pressed while the split is being built (here: at its first progress report) ends it there; Gradio's
    own cancel would have let the running handler finish and save the split."""
    ws, w = tab
    source = create_version(ws, support_tickets(120, seed=4), parent=None, step="import")
    said = []

    def progress_pressing_stop(fraction, desc=None):
        said.append(splits.stop_split(ws, w)[w.status])

    out = splits.build_split(ws, w, page(w, source=source.name), progress=progress_pressing_stop)
    assert said == ["Stopping…"] and "stopped; nothing was saved" in out[w.status]
    assert current_version(ws).id == source.id
    assert splits.stop_split(ws, w)[w.status] == "No split of yours is being built."
