"""ui.forms: a form rendered from an options dataclass, and its values turned back into validated options."""
from __future__ import annotations

import gradio as gr
import pytest

from core.errors import TuneloopError
from curation.dedup.clusters import DedupOptions
from curation.dedup.filters import FilterOptions
from curation.pii.scrub import PiiOptions
from curation.splits.build import SplitOptions
from ui.forms import options_form, options_from_form


def test_each_field_gets_the_component_its_type_and_metadata_ask_for():
    with gr.Blocks():
        dedup = options_form(DedupOptions, DedupOptions(threshold=0.7), elem_prefix="dedup")
        splits = options_form(SplitOptions, skip=("stratify", "group"))
        pii = options_form(PiiOptions)
        filters = options_form(FilterOptions)
    assert list(dedup) == ["threshold", "ngram", "num_perm", "text", "keep"]
    assert isinstance(dedup["threshold"], gr.Slider) and dedup["threshold"].value == 0.7
    assert dedup["threshold"].elem_id == "dedup-threshold" and "near-duplicate similarity" in dedup["threshold"].info
    assert isinstance(dedup["keep"], gr.Dropdown) and ("longest", "longest") in dedup["keep"].choices
    assert isinstance(splits["val"], gr.Number) and isinstance(splits["max_per_label"], gr.Number)
    assert splits["max_per_label"].value == 0 and isinstance(splits["fix"], gr.Dropdown)
    assert isinstance(pii["entities"], gr.CheckboxGroup) and isinstance(pii["default_protect"], gr.Checkbox)
    assert isinstance(pii["allow"], gr.Textbox) and "custom" not in pii
    assert isinstance(filters["skip"], gr.CheckboxGroup) and filters["skip"].label == "Filters to switch off"


def test_form_values_become_validated_options():
    got = options_from_form(SplitOptions, {"val": 0.2, "test": 50.0, "seed": 3.0, "max_per_label": 0, "fix": "drop"})
    assert got == SplitOptions(val=0.2, test=50, seed=3, max_per_label=None, fix="drop")
    pii = options_from_form(PiiOptions, {"allow": "ACME\nre:SKU-\\d+", "thresholds": "PERSON=0.7"})
    assert pii.allow == ["ACME", "re:SKU-\\d+"] and pii.thresholds == {"PERSON": 0.7}
    with pytest.raises(TuneloopError, match="ngram: 0 is too small; it must be at least 1") as err:
        options_from_form(DedupOptions, {"ngram": 0, "num_perm": 5000})
    assert "num_perm: 5000 is too large" in str(err.value)


def test_only_renders_the_named_fields_in_field_order():
    with gr.Blocks():
        some = options_form(SplitOptions, only=("fix", "seed"), elem_prefix="splits")
    assert list(some) == ["seed", "fix"] and some["fix"].elem_id == "splits-fix"


def test_a_list_typed_in_a_textbox_is_one_item_per_line_commas_and_all():
    got = options_from_form(PiiOptions, {"allow": "Smith, John\nre:\\d{1,3}-X\n\n", "protect": "ACME-\\d{2,4}"})
    assert got.allow == ["Smith, John", "re:\\d{1,3}-X"] and got.protect == ["ACME-\\d{2,4}"]
