"""The rounds comparison says which way each figure is better: a lower perplexity, a higher ROUGE-L ..."""
from __future__ import annotations

import pytest

from evaluation.rounds import COMPARED, RoundRow, compare_rows, round_rows

# Each figure and the direction a user means by "better".
BETTER = {"rouge_l": "higher", "bleu": "higher", "exact_match": "higher", "perplexity_test": "lower",
          "win_rate": "higher", "regression_pass_rate": "higher", "guard_pass_rate": "higher"}


def _row(run_id: int, **figures) -> RoundRow:
    return RoundRow(round=run_id, run_id=run_id, run_name=f"run {run_id}", stage="sft", status="finished",
                    version=None, version_text="", previous_run=None, figures=figures)


def test_every_compared_figure_has_a_stated_direction():
    assert {key for key, *_ in COMPARED} == set(BETTER)


@pytest.mark.parametrize("key", sorted(BETTER))
def test_a_better_figure_helped_and_a_worse_one_regressed(key):
    low, high = {"bleu": (20.0, 60.0), "perplexity_test": (4.0, 9.0)}.get(key, (0.2, 0.6))
    better, worse = (high, low) if BETTER[key] == "higher" else (low, high)
    improved = _row(2, **{key: better})
    compare_rows(_row(1, **{key: worse}), improved)
    degraded = _row(3, **{key: worse})
    compare_rows(_row(1, **{key: better}), degraded)
    assert [c.verdict for c in improved.changes] == ["helped"]
    assert [c.verdict for c in degraded.changes] == ["regressed"]


def test_a_change_within_the_tolerance_is_unchanged():
    after = _row(2, rouge_l=0.501, perplexity_test=5.005)
    compare_rows(_row(1, rouge_l=0.5, perplexity_test=5.0), after)
    assert [c.verdict for c in after.changes] == ["unchanged", "unchanged"]


def test_rounds_follow_the_lineage_rows(ws):
    """version → run → evaluation → feedback version → next run, and a DPO run's parent, from the keys alone."""
    import json

    from curation.data.records import Record
    from curation.data.versions import create_version
    from evaluation.arena import EvalItem, create_evaluation
    from tests.test_arena import register_run

    chat = [Record("a", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], {"split": "train"})]
    v1 = create_version(ws, chat, parent=None, step="split")
    register_run(ws, 1)
    ws.db.execute("update runs set dataset_version=?, config=? where id=1", (v1.id, json.dumps({"stage": "sft"})))
    eid = create_evaluation(ws, "e", [EvalItem("a", [{"role": "user", "content": "q"}], "b", "t")], base_model="m",
                            run_id=1)
    v2 = create_version(ws, chat + [Record("b", chat[0].messages, {"split": "train"})], parent=v1.id, step="feedback",
                        params={"evaluation": "not parsed"})
    ws.db.execute("insert into feedback_versions values (?, ?, 'corrections', 'majority')", (v2.id, eid))
    register_run(ws, 2)
    ws.db.execute("update runs set dataset_version=?, config=? where id=2", (v2.id, json.dumps({"stage": "sft"})))
    register_run(ws, 3)
    ws.db.execute("update runs set dataset_version=?, config=?, parent_run_id=1 where id=3",
                  (v1.id, json.dumps({"stage": "dpo", "sft_run": "not parsed"})))
    rows = {r.run_id: r for r in round_rows(ws)}
    assert (rows[1].round, rows[1].previous_run, rows[1].next_versions) == (1, None, [v2.id])
    assert (rows[2].round, rows[2].previous_run) == (2, 1)
    assert (rows[3].round, rows[3].previous_run, rows[3].stage) == (2, 1, "dpo")
