"""The Splits tab's handlers without a browser: form values in, outputs keyed by component name out."""
from __future__ import annotations

from curation.data.versions import create_version, current_version, get_version
from curation.splits.build import SplitOptions
from curation.ui.splits import (NONE, OPTION_FIELDS, audit_split_version, build_split, export_split_version,
                                refix_split_version, split_balance)
from tests.test_splits import support_tickets


def form_values(**changes) -> list:
    """What the form sends: every SplitOptions field, in order, as the widgets hold them."""
    options = {**SplitOptions().to_dict(), "stratify": NONE, "group": NONE, **changes}
    return [options[name] for name in OPTION_FIELDS]


def test_build_saves_a_split_version_with_the_form_options(ws):
    source = create_version(ws, support_tickets(300, seed=1), parent=None, step="import")
    out = build_split(ws, source.name, *form_values(stratify="label", group="customer", seed=3.0, test=30.0))
    made = current_version(ws)
    assert "Saved **v2**" in out["status"] and made.step == "split" and made.parent_id == source.id
    assert made.params == SplitOptions(stratify="label", group="customer", seed=3, test=30).to_dict()
    assert "Before the fix:" in out["leak_md"] and "Largest gap" in out["balance_md"]
    assert "v2" == out["split_pick"]["value"]
    assert "Largest gap" in split_balance(ws, made.name)["balance_md"]
    assert "leaking pair(s)" in audit_split_version(ws, made.name, *form_values())["leak_md"]
    exported = export_split_version(ws, made.name, ["jsonl"], "messages", "")
    assert exported["export_file"].endswith(".zip") and "Wrote 3 file(s)" in exported["export_md"]


def test_bad_form_values_are_shown_naming_the_key(ws):
    source = create_version(ws, support_tickets(80, seed=2), parent=None, step="import")
    out = build_split(ws, source.name, *form_values(val=2.5))
    assert "val: 2.5 is neither a ratio below 1 nor a whole number" in out["status"]
    out = build_split(ws, source.name, *form_values(max_per_label=-3))
    assert "max_per_label: -3 is too small" in out["status"]
    assert "without a train/val/test split" in refix_split_version(ws, source.name, *form_values())["status"]
    assert current_version(ws).id == source.id


def test_refix_keeps_the_splits_and_only_saves_when_something_moved(ws):
    source = create_version(ws, support_tickets(300, seed=4), parent=None, step="import")
    build_split(ws, source.name, *form_values(fix="none"))
    leaky = current_version(ws)
    out = refix_split_version(ws, leaky.name, *form_values(fix="move"))
    fixed = current_version(ws)
    assert f"Saved **{fixed.name}** from {leaky.name}" in out["status"]
    assert get_version(ws, fixed.id).params["fix"] == "move" and fixed.parent_id == leaky.id
    assert refix_split_version(ws, fixed.name, *form_values())["status"] == f"{fixed.name}: nothing to fix"
