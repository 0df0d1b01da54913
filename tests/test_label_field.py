"""The label field: any meta field (Dolly's ``category``) is the label that stratified splits keep the shares
of, that the suggested review schema offers, and that evaluation results are broken down by; ``label`` stays
the default where records have it. Run on a real Dolly slice (tests/data/dolly_200.jsonl, CC BY-SA 3.0)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import gradio as gr
import pytest

from core.errors import TuneloopError
from curation.cli import main as curation_main
from curation.data.demo import load_demo
from curation.data.records import SPLITS, Record
from curation.data.versions import create_version, current_version, load_records
from curation.review.labels import label_field, label_schema, meta_fields, set_label_field, suggested_schema
from curation.splits.build import split_version, version_split_options
from curation.splits.cli import main as splits_main
from curation.ui import review as review_tab
from curation.ui.common import RECORD_HEADERS, record_rows
from curation.ui import splits as splits_tab
from evaluation.arena import EvalItem, create_evaluation, evaluation_votes, next_pair, record_vote
from evaluation.cli import main as evaluation_main
from evaluation.feedback import collect_feedback
from evaluation.generate import prompts_from_version
from evaluation.stats import summarize, votes_from_rows
from evaluation.ui import results_figures
from tests.old_workspace import old_workspace
from tests.tab_page import page

DOLLY = Path(__file__).parent / "data" / "dolly_200.jsonl"


def dolly_records() -> list[Record]:
    """The Dolly slice as chat records: the instruction (and its context) asked, the response answered."""
    out = []
    for n, line in enumerate(DOLLY.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        question = row["instruction"] + (f"\n\n{row['context']}" if row["context"] else "")
        out.append(Record(id=f"dolly-{n}", messages=[{"role": "user", "content": question},
                                                     {"role": "assistant", "content": row["response"]}],
                          meta={"category": row["category"], "source": "dolly"}))
    return out


@pytest.fixture
def dolly(ws):
    """A workspace holding the Dolly slice as v1."""
    return ws, create_version(ws, dolly_records(), parent=None, step="import")


def test_dolly_has_no_label_until_category_is_chosen_and_split_versions_inherit_it(dolly):
    ws, v1 = dolly
    assert label_field(ws, v1.id) is None
    assert [f.name for f in meta_fields(load_records(ws, v1.id))] == ["category", "source"]
    chosen = set_label_field(ws, v1.id, "category", by="ana")
    assert (chosen.records, chosen.values) == (104, 8)
    _, split = split_version(ws, v1.id, version_split_options(ws, v1.id, {"test": 0.2, "val": 0.2, "seed": 1}))
    assert label_field(ws, split.id) == "category"          # made from v1 after the choice
    assert split.params["stratify"] == "category"
    row = record_rows(load_records(ws, split.id)[:1], label_field(ws, split.id))[0]
    assert RECORD_HEADERS[4] == "label" and row[4] == "closed_qa" and "category" not in row[5]


def test_a_stratified_split_keeps_every_categorys_share(dolly):
    ws, v1 = dolly
    set_label_field(ws, v1.id, "category")
    for seed in range(4):
        result, _ = split_version(ws, v1.id, version_split_options(ws, v1.id, {"test": 0.2, "val": 0.2, "seed": seed}))
        overall = Counter(r.meta["category"] for r in result.records)
        sizes = Counter(r.split for r in result.records)
        for s in SPLITS:
            here = Counter(r.meta["category"] for r in result.records if r.split == s)
            for category, count in overall.items():
                # within one record of the category's exact share of this split
                assert abs(here[category] - count * sizes[s] / len(result.records)) < 1, (seed, s, category)


def test_review_suggests_a_single_choice_category_field(dolly):
    ws, v1 = dolly
    assert [f.name for f in label_schema(ws, v1.id).fields] == ["tags"]
    set_label_field(ws, v1.id, "category")
    field = label_schema(ws, v1.id).field("category")
    assert field.kind == "single"
    assert field.options == ["brainstorming", "classification", "closed_qa", "creative_writing", "general_qa",
                             "information_extraction", "open_qa", "summarization"]
    assert field.normalise("open_qa") == "open_qa"


def test_label_stays_the_default_where_the_records_have_it(ws):
    demo = load_demo(ws, n=120)
    assert label_field(ws, demo.id) == "label"
    assert label_schema(ws, demo.id).fields[0].name == "label"
    assert suggested_schema(load_records(ws, demo.id)).fields[0].name == "label"
    assert version_split_options(ws, demo.id).stratify == "label"
    assert version_split_options(ws, demo.id, {"stratify": None}).stratify is None


def test_a_field_that_cannot_be_the_label_is_refused_naming_what_can(ws):
    records = [Record(id=f"r{i}", messages=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
                      meta={"Topic": "x", "topic_list": ["a", "b"], "source": "s", "tier": str(i % 2)})
               for i in range(6)]
    v = create_version(ws, records, parent=None, step="import")
    with pytest.raises(TuneloopError, match=r"no record of v1 has a value in the meta field 'topic_list'.*tier · 6 "
                                            r"records · 2 values"):
        set_label_field(ws, v.id, "topic_list")
    with pytest.raises(TuneloopError, match="Tuneloop itself keeps its own values in meta 'source'"):
        set_label_field(ws, v.id, "source")
    with pytest.raises(TuneloopError, match="lower-case letters.*e.g. to 'topic'"):
        set_label_field(ws, v.id, "Topic")
    assert label_field(ws, v.id) is None
    set_label_field(ws, v.id, "tier")
    assert label_field(ws, v.id) == "tier"


def test_the_cli_sets_the_label_field_and_splits_stratify_by_it(dolly, capsys):
    ws, v1 = dolly
    assert curation_main(["--workspace", str(ws.root), "label-field", "v1"]) == 0
    shown = capsys.readouterr().out
    assert "label field of v1: none" in shown and "category · 104 records · 8 values" in shown
    assert curation_main(["--workspace", str(ws.root), "label-field", "v1", "category"]) == 0
    assert "now category · 104 records · 8 values" in capsys.readouterr().out
    assert splits_main(["v1", "--workspace", str(ws.root), "--test", "0.2", "--seed", "2"]) == 0
    assert current_version(ws).params["stratify"] == "category"
    assert splits_main(["v1", "--workspace", str(ws.root), "--stratify", ""]) == 0
    assert current_version(ws).params["stratify"] is None
    assert curation_main(["--workspace", str(ws.root), "label-field", "v1", "nope"]) == 1
    assert "no record of v1 has a value in the meta field 'nope'" in capsys.readouterr().err


def test_the_review_tab_picks_the_label_field_and_the_splits_tab_preselects_it(dolly):
    ws, v1 = dolly
    with gr.Blocks(), gr.Tabs():
        rw = review_tab.build(ws)
        sw = splits_tab.build(ws)
    shown = review_tab.show_schema(ws, rw, page(rw, version="v1"))
    assert ("category · 104 records · 8 values", "category") in shown[rw.label_field_pick]["choices"]
    assert shown[rw.label_field_pick]["value"] is None
    out = review_tab.choose_label_field(ws, rw, page(rw, version="v1", name="ana", label_field_pick="category"), None)
    assert "label field is now **category**" in out[rw.schema_msg]
    assert '"name": "category"' in out[rw.schema_code] and "category=open_qa" in out[rw.label_f]["choices"]
    assert splits_tab.source_fields(ws, sw, page(sw, source="v1"))[sw.stratify]["value"] == "category"


def test_per_label_results_group_by_category(dolly, capsys):
    ws, v1 = dolly
    set_label_field(ws, v1.id, "category")
    _, split = split_version(ws, v1.id, version_split_options(ws, v1.id, {"test": 0.25, "seed": 3}))
    prompts = prompts_from_version(ws, split.id)
    by_id = {r.id: r for r in load_records(ws, split.id)}
    assert prompts and all(p.label == by_id[p.prompt_id].meta["category"] for p in prompts)
    items = [EvalItem(p.prompt_id, p.messages, base_response=f"base {n}", finetuned_response=f"tuned {n}",
                      label=p.label, split=p.split) for n, p in enumerate(prompts)]
    eid = create_evaluation(ws, "dolly", items, base_model="tiny", dataset_version=split.id)
    first = next_pair(ws, eid, "ana")
    record_vote(ws, first.assignment_id, "ana", "both_bad", corrected_answer="A better answer.")
    while (pair := next_pair(ws, eid, "ana")) is not None:
        record_vote(ws, pair.assignment_id, "ana", "tie")
    summary = summarize(votes_from_rows([v.to_stats_row() for v in evaluation_votes(ws, eid)]))
    assert {g["label"]: g["votes"] for g in summary["by_label"]} == dict(Counter(p.label for p in prompts))
    figures = results_figures(ws, eid, "majority")
    assert figures.label_field == "category" and {row[0] for row in figures.by_label} == {p.label for p in prompts}
    assert evaluation_main(["report", str(eid), "--workspace", str(ws.root)]) == 0
    assert "by category:\n  brainstorming:" in capsys.readouterr().out
    # a corrected answer goes back to the data labelled under the same field
    correction, = collect_feedback(ws, eid).corrections
    assert correction.meta["category"] == by_id[correction.meta["prompt_id"]].meta["category"]
    assert "label" not in correction.meta


def test_the_migration_upgrades_a_workspace_with_data(tmp_path):
    ws = old_workspace(tmp_path / "ws", without={("curation", "m405_label_fields")})
    v = create_version(ws, dolly_records()[:30], parent=None, step="import")
    ws.migrate()
    assert label_field(ws, v.id) is None and len(load_records(ws, v.id)) == 30
    set_label_field(ws, v.id, "category")
    assert label_field(ws, v.id) == "category"
