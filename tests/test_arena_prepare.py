"""The rater checks from the admin's Prepare form, called without a browser: the same settings as the generate
command's flags (gold pairs from a file, gold and repeat rates, the vote cap, pairs of arms per prompt)."""
from __future__ import annotations

import json

from evaluation import prepare_ui
from evaluation.arena import get_evaluation, rater_progress
from tests.tab_page import page
from tests.test_generate import QUESTIONS, finished_run, run_folder, split_version  # noqa: F401  (run_folder: fixture)
from tests.test_prepare_ui import no_progress, tab  # noqa: F401  (tab: fixture)


def test_the_prepare_form_sets_the_rater_checks_and_gold_pairs(ws, tab, run_folder, tmp_path):  # noqa: F811
    w = tab.prepare
    version = split_version(ws)
    run = finished_run(ws, run_folder, version)
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"prompt": f"Parcel {i}?", "better": "It left today.", "worse": "Dunno."}) + "\n"
                            for i in range(4)))
    data = page(w, source="typed", purpose="improve", typed="\n".join(QUESTIONS[:3]), version=version.name,
                runs=[str(run.id)], prompted=True, system_prompt="Be brief.", examples=1,
                decoding={"max_new_tokens": 3},
                gold=str(gold), pairs_per_prompt=2, checks={"gold_rate": 0.5, "repeat_rate": 0.4, "vote_cap": 5})
    out = prepare_ui.generate_clicked(ws, w, tab, data, None, progress=no_progress)
    assert "✅ Evaluation #1 is ready" in out[w.status], out[w.status]
    evaluation = get_evaluation(ws, 1)
    assert (evaluation.pairs_per_prompt, evaluation.gold_rate, evaluation.repeat_rate, evaluation.vote_cap) == (
        2, 0.5, 0.4, 5)
    assert evaluation.num_pairs == 3 * 2 + 4 and rater_progress(ws, 1, "ana").total == 5
    wrong = prepare_ui.generate_clicked(ws, w, tab, {**data, w.checks["repeat_rate"]: 3}, None, progress=no_progress)
    assert "repeat_rate: 3.0 is too large" in wrong[w.status]
    gold.write_text('{"prompt": "Parcel?"}\n')
    missing = prepare_ui.generate_clicked(ws, w, tab, data, None, progress=no_progress)
    assert "line 1: missing better, worse" in missing[w.status]
