"""Automatic evaluation, the rounds view data and the model card, on two real rounds of a tiny model."""
from __future__ import annotations

import json

import pytest

from evaluation.auto import format_auto_evaluation, latest_auto_evaluation
from evaluation.cli import main as evaluation_cli
from evaluation.model_card import CARD_FILE, model_card
from evaluation.rounds import COMPARED, round_rows, round_summaries, rounds_table
from evaluation.stats import summarize, votes_from_rows
from tests.round_workspace import build_two_rounds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    return build_two_rounds(tmp_path_factory.mktemp("rounds"))


def test_auto_evaluation_stores_both_models_figures_with_the_version(loop):
    from curation.data.versions import get_version
    result = latest_auto_evaluation(loop.ws, loop.sft1)
    assert result.run_id == loop.sft1 and result.dataset_version == loop.v1 and result.split == "test"
    assert result.dataset_hash == get_version(loop.ws, loop.v1).content_hash
    for model in ("base", "finetuned"):
        figures = result.metrics[model]
        assert figures["answers"] == 3
        assert 0 <= figures["rouge_l"] <= 1 and 0 <= figures["bleu"] <= 100
        assert figures["exact_match"] is None            # no classification records in this data
        assert figures["perplexity_val"] > 1 and figures["perplexity_test"] > 1
    # Training on the answers makes them more likely than under the untrained base.
    assert result.metrics["finetuned"]["perplexity_test"] < result.metrics["base"]["perplexity_test"]
    assert result.metrics["regression"] == [{"suite": "house rules", "total": 2, "base_passed": 1,
                                             "finetuned_passed": 1}]
    text = format_auto_evaluation(result)
    assert f"run {loop.sft1} on v{loop.v1}/test (3 answers" in text and "perplexity (test)" in text
    assert "regression 'house rules': base 1/2, fine-tuned 1/2 cases pass" in text


def test_auto_cli_prints_json(loop, capsys):
    code = evaluation_cli(["auto", "--run", str(loop.sft1), "--split", f"v{loop.v1}", "--limit", "2",
                           "--max-new-tokens", "6", "--json", "--workspace", str(loop.ws.root)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_id"] == loop.sft1 and data["metrics"]["finetuned"]["answers"] == 2
    assert latest_auto_evaluation(loop.ws, loop.sft1).id == data["id"]


def test_rounds_line_up_versions_runs_evaluations_and_feedback(loop):
    rows = {r.run_id: r for r in round_rows(loop.ws)}
    first, sft2, dpo = rows[loop.sft1], rows[loop.sft2], rows[loop.dpo]
    assert (first.round, first.previous_run, first.stage) == (1, None, "sft")
    assert (sft2.round, sft2.previous_run, sft2.stage, sft2.version) == (2, loop.sft1, "sft", loop.v2)
    assert (dpo.round, dpo.previous_run, dpo.stage) == (2, loop.sft1, "dpo")
    assert dpo.version_text == f"v{loop.preferences} (preferences, 8 pairs)"   # what DPO trained on
    assert sft2.version_text.startswith(f"v{loop.v2} (feedback, ")
    assert first.next_versions == [loop.v2, loop.preferences]      # merged corrections, then preference pairs
    assert first.feedback == {"preference_pairs": 8, "corrected": 2, "kto_examples": 18, "needs_answer": 0}
    assert first.figures["win_rate"] == 1.0 and first.figures["votes"] == 8
    assert [r.run_id for r in round_rows(loop.ws)] == [loop.sft1, loop.sft2, loop.dpo]


def test_each_round_is_compared_figure_by_figure_with_the_run_before(loop):
    rows = {r.run_id: r for r in round_rows(loop.ws)}
    before, after = rows[loop.sft1], rows[loop.dpo]
    compared = {c.figure: c for c in after.changes}
    for key, title, higher, tolerance in COMPARED:
        a, b = before.figures.get(key), after.figures.get(key)
        if a is None or b is None:
            assert title not in compared
            continue
        expected = "unchanged" if abs(b - a) <= tolerance else ("helped" if (b > a) == higher else "regressed")
        assert compared[title].verdict == expected, title
    assert {"ROUGE-L", "BLEU", "perplexity (test)", "regression pass rate"} <= set(compared)
    summaries = round_summaries(list(rows.values()))
    assert any(s.startswith(f"Round 2, run #{loop.dpo} (DPO) vs run #{loop.sft1}:") for s in summaries)
    table = {row["run"].split(" ")[0]: row for row in rounds_table(round_rows(loop.ws))}
    assert table[f"#{loop.sft1}"]["next version"] == f"v{loop.v2}, v{loop.preferences}"
    assert table[f"#{loop.sft1}"]["human (win rate, 95% CI)"].startswith("100% [")
    assert table[f"#{loop.dpo}"]["run"] == f"#{loop.dpo} DPO (finished) ← #{loop.sft1}"
    assert table[f"#{loop.sft1}"]["vs previous round"] == "–"


def test_model_card_has_every_section_with_the_figures(loop, tmp_path):
    from evaluation.arena import evaluation_votes
    from training.registry import get_run
    card = model_card(loop.ws, loop.sft1)
    for heading in ("## Base model", "## Data", "## Training", "## Automatic metrics", "## Human evaluation",
                    "## Regression suites", "## Known limits"):
        assert heading in card
    run = get_run(loop.ws, loop.sft1)
    assert run.dataset_hash[:16] in card and f"v{loop.v1}" in card
    stats = summarize(votes_from_rows([v.to_stats_row() for v in evaluation_votes(loop.ws, loop.evaluation)]))
    assert f"Win rate 100.0% (Wilson 95%: {100 * stats['wilson_low']:.1f}%–100.0%" in card
    assert "| house rules | 1/2 | 1/2 | order path |" in card
    assert "Evaluation #1 had a single rater" in card
    assert (run.adapter_dir / CARD_FILE).read_text().startswith(f"# {run.name}")
    dpo_card = model_card(loop.ws, loop.dpo)
    assert "A DPO LoRA adapter" in dpo_card and f"preference pairs: from v{loop.preferences} (hash" in dpo_card
    assert "8 trained on" in dpo_card and f"started from run #{loop.sft1}" in dpo_card
    assert "No blind evaluation yet." in dpo_card
    from training.export import export_run
    exported = export_run(loop.ws, loop.dpo, "adapter", tmp_path / "export")
    assert (exported / CARD_FILE).read_text() == model_card(loop.ws, loop.dpo)
