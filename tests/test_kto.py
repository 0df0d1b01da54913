"""KTO data and the KTO stage on a tiny model built here: KTO versions (kind, snapshot, export, the migration
that allows them), an SFT run → KTO examples → a KTO run, and the refusals of data with nothing to train on."""
from __future__ import annotations

import json
import math

import pytest

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import Record
from curation.data.versions import _cache, chat_records, create_version, current_version, export_version, load_records
from tests.tiny_model import build_tiny_model
from training.config import RunConfig
from training.job import run_training
from training.kto import balance_weights, load_kto_examples
from training.preflight import preflight
from training.registry import create_run, read_metrics

GOOD = "Open Settings, choose Security and press Reset password."
BAD = "The quick brown fox jumps over the lazy dog."
QUESTIONS = ["How do I reset my password?", "I forgot my password", "Where is my order?", "Can I get a refund?",
             "reset password please", "password help", "how to reset", "locked out of my account"]


def _chat(i: int, split: str, question: str) -> Record:
    return Record(f"{split}{i}", [{"role": "user", "content": question}, {"role": "assistant", "content": GOOD}],
                  {"split": split})


def _example(i: int, question: str, answer: str, desirable: bool, split: str | None = "train") -> Record:
    return Record(f"k{i}", [{"role": "user", "content": question}], {"split": split} if split else {},
                  completion=[{"role": "assistant", "content": answer}], desirable=desirable)


def _config(tiny_base, version, **extra) -> RunConfig:
    values = dict(base_model=str(tiny_base), datasets=version, adapter="qlora", load_in_4bit=True, lora_r=4,
                  lora_alpha=8, lora_dropout=0.0, sequence_len=96, micro_batch_size=4, max_steps=2, eval_steps=0,
                  save_steps=50, early_stopping_patience=0, rouge_test_samples=0, warmup_ratio=0.0,
                  lr_scheduler="constant", cpu_threads=2)
    return RunConfig.from_dict({**values, **extra})


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("kto") / "tiny")


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_base):
    """A finished SFT run on the tiny model, in its own workspace."""
    ws = Workspace.open(tmp_path_factory.mktemp("kto-ws") / "workspace")
    records = ([_chat(i, "train", q) for i, q in enumerate(QUESTIONS)]
               + [_chat(i, "val", q) for i, q in enumerate(QUESTIONS[:2])]
               + [_chat(i, "test", q) for i, q in enumerate(QUESTIONS[2:4])])
    version = create_version(ws, records, parent=None, step="import")
    sft = run_training(ws, create_run(ws, _config(tiny_base, version.name), name="sft").id)
    assert sft.status == "finished", sft.error
    return ws, version, sft


# -- KTO versions -------------------------------------------------------------------------------

def test_a_kto_version_keeps_its_answers_and_labels_and_is_never_current(ws, tmp_path):
    chat = create_version(ws, [_chat(0, "train", QUESTIONS[0])], parent=None, step="import")
    examples = [_example(0, QUESTIONS[0], GOOD, True), _example(1, QUESTIONS[0], BAD, False, split="test")]
    kto = create_version(ws, examples, parent=chat.id, step="kto")
    assert kto.kind == "kto" and "2 KTO examples" in kto.describe()
    _cache.clear()                                   # read the Parquet snapshot, not the cache
    again = load_records(ws, kto.id)
    assert [(r.completion[0]["content"], r.desirable) for r in again] == [(GOOD, True), (BAD, False)]
    assert again[1].meta == {"split": "test"}
    assert current_version(ws).id == chat.id
    out = export_version(ws, kto.id, tmp_path / "kto.jsonl", single_file=True)
    rows = [json.loads(line) for line in out.path.read_text().splitlines()]
    assert {(r["completion"][0]["content"], r["label"]) for r in rows} == {(GOOD, True), (BAD, False)}
    assert sorted(e.desirable for e in load_kto_examples(ws, str(out.path)).examples) == [False, True]
    with pytest.raises(TuneloopError, match=f"{kto.name} holds KTO examples"):
        chat_records(ws, kto.id, step="dedup")
    with pytest.raises(TuneloopError, match="record 'train0' is a chat record while the records before it are "
                                            "KTO examples; a version holds one kind only"):
        create_version(ws, examples + [_chat(0, "train", "x")], parent=None, step="kto")


def test_kto_data_must_name_a_kto_version_or_a_valid_file(ws, tmp_path):
    chat = create_version(ws, [_chat(0, "train", QUESTIONS[0])], parent=None, step="import")
    with pytest.raises(TuneloopError, match=f"kto_data: {chat.name} holds chat records, not KTO examples"):
        load_kto_examples(ws, chat.name)
    path = tmp_path / "kto.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "completion": "hello", "label": True}) + "\n"
                    + json.dumps({"prompt": "hi", "completion": "go away", "label": "bad"}) + "\n"
                    + json.dumps({"prompt": "hi", "label": False}) + "\n")
    with pytest.raises(TuneloopError, match="line 2: label must be true .* not \"bad\"") as err:
        load_kto_examples(ws, str(path))
    assert "line 3: missing completion" in str(err.value)


def test_the_migration_keeps_every_version_and_what_points_at_it(tmp_path):
    from tests.old_workspace import old_workspace
    ws = old_workspace(tmp_path / "workspace", {("curation", "m407_kto_versions")})
    db = ws.db
    v1 = db.execute("insert into dataset_versions (step, content_hash, num_records, path) values"
                    " ('split', 'h1', 2, 'versions/a.parquet')").lastrowid
    v2 = db.execute("insert into dataset_versions (parent_id, step, content_hash, num_records, path, kind) values"
                    " (?, 'preferences', 'h2', 1, 'versions/b.parquet', 'preference')", (v1,)).lastrowid
    db.execute("insert into settings (key, value) values ('current_version', ?)", (str(v1),))
    db.execute("insert into version_events (version_id, event) values (?, 'created')", (v2,))
    db.execute("insert into label_fields (version_id, field) values (?, 'category')", (v1,))
    db.execute("insert into runs (name, status, config, output_dir, dataset, dataset_version, base_model,"
               " preference_version) values ('r', 'finished', '{}', '/r', 'v1', ?, 'tiny', ?)", (v1, v2))
    db.commit()
    with pytest.raises(Exception, match="CHECK constraint failed"):
        db.execute("insert into dataset_versions (step, content_hash, num_records, path, kind) values"
                   " ('kto', 'h3', 1, 'versions/c.parquet', 'kto')")
    db.rollback()
    assert ws.migrate() == ["curation.m407_kto_versions"]
    rows = [tuple(r) for r in db.execute("select id, parent_id, step, kind from dataset_versions order by id")]
    assert rows == [(v1, None, "split", "sft"), (v2, v1, "preferences", "preference")]
    assert db.execute("pragma foreign_key_check").fetchall() == []
    assert db.execute("select version_id from version_events").fetchone()[0] == v2
    assert db.execute("select preference_version from runs").fetchone()[0] == v2
    kto = create_version(ws, [_example(0, "hi", GOOD, True)], parent=v2, step="kto")
    assert kto.kind == "kto" and kto.parent_id == v2


def test_balance_weights_make_both_sides_count_the_same():
    three_good_one_bad = [_example(i, "q", GOOD, i < 3) for i in range(4)]
    assert balance_weights(three_good_one_bad) == (1.0, 3.0)
    assert balance_weights([_example(0, "q", GOOD, True), _example(1, "q", BAD, False),
                            _example(2, "q", BAD, False)]) == (2.0, 1.0)
    assert balance_weights([_example(0, "q", GOOD, True)]) == (1.0, 1.0)


def test_kto_config_names_what_is_missing():
    problems = RunConfig.from_dict({"datasets": "v1", "stage": "kto", "kto_beta": 0, "micro_batch_size": 1}).problems()
    assert {p.split(":")[0] for p in problems} == {"sft_run", "kto_data", "kto_beta", "micro_batch_size"}


# -- the KTO stage ------------------------------------------------------------------------------

@pytest.mark.slow
def test_kto_run_trains_with_a_finite_loss_and_its_adapter_changes_the_logits(sft_run, tiny_base):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws, version, sft = sft_run
    examples = ([_example(i, q, GOOD, True) for i, q in enumerate(QUESTIONS)]
                + [_example(10 + i, q, BAD, False) for i, q in enumerate(QUESTIONS[:4])]
                + [_example(20, QUESTIONS[2], GOOD, True, split="test")])
    kto = create_version(ws, examples, parent=version.id, step="kto")
    config = _config(tiny_base, version.name, stage="kto", sft_run=str(sft.id), kto_data=kto.name,
                     learning_rate=2e-2, max_steps=6)
    report = preflight(ws, config)
    assert "kto data: " + kto.name + ": 12 KTO examples to train on, 0 for evaluation, 1 from test prompts" \
        in report.as_text()
    created = create_run(ws, config, name="kto")
    assert (created.preference_version, created.preference_hash) == (kto.id, kto.content_hash)
    assert created.parent_run_id == sft.id
    run = run_training(ws, created.id)
    assert run.status == "finished", run.error
    rows = [r for r in read_metrics(run) if r.get("event") == "train"]
    assert len(rows) == 6 and all(math.isfinite(r["loss"]) for r in rows)
    assert {"rewards/chosen", "rewards/rejected", "kl"} <= set(rows[-1])
    assert run.metrics["train_examples"] == 12 and run.metrics["test_examples_left_out"] == 1
    assert (run.metrics["desirable"], run.metrics["undesirable"]) == (8, 4)
    assert (run.metrics["desirable_weight"], run.metrics["undesirable_weight"]) == (1.0, 2.0)
    assert not (run.adapter_dir / "ref").exists()

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base))
    ids = tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[0]}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]

    def logits(adapter):
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_base)), str(adapter))
        with torch.no_grad():
            return model(input_ids=ids).logits

    assert (logits(run.adapter_dir) - logits(sft.adapter_dir)).abs().max().item() > 1e-3

    from evaluation.rounds import round_rows
    from training.card import training_card_lines
    rows = {row.run_id: row for row in round_rows(ws)}
    assert rows[run.id].stage == "kto" and rows[run.id].previous_run == sft.id
    assert rows[run.id].round == rows[sft.id].round + 1 and "12 KTO examples" not in rows[run.id].version_text
    assert f"{kto.name} (kto, 13 KTO examples)" == rows[run.id].version_text
    card = "\n".join(training_card_lines(ws, run))
    assert f"- KTO examples: from {kto.name}" in card and "12 trained on (8 desirable, 4 undesirable)" in card


def test_preflight_and_create_refuse_kto_data_with_nothing_to_train_on(sft_run, tiny_base):
    ws, version, sft = sft_run
    only_test = create_version(ws, [_example(i, q, BAD, False, split="test") for i, q in enumerate(QUESTIONS[:3])],
                               parent=version.id, step="kto")
    config = _config(tiny_base, version.name, stage="kto", sft_run=str(sft.id), kto_data=only_test.name)
    message = ("kto_data: none of the 3 KTO examples can be trained on: 3 come from test prompts, which stay out "
               "of training")
    with pytest.raises(TuneloopError, match=message) as err:
        preflight(ws, config)
    assert "Rate to improve instead" in str(err.value)
    with pytest.raises(TuneloopError, match=message):
        create_run(ws, config)


def test_preflight_and_create_refuse_preference_pairs_with_nothing_to_train_on(sft_run, tiny_base):
    ws, version, sft = sft_run
    pairs = [Record(f"p{i}", [{"role": "user", "content": q}], {"split": "test" if i < 2 else "val"},
                    chosen=[{"role": "assistant", "content": GOOD}], rejected=[{"role": "assistant", "content": BAD}])
             for i, q in enumerate(QUESTIONS[:3])]
    prefs = create_version(ws, pairs, parent=version.id, step="preferences")
    config = _config(tiny_base, version.name, stage="dpo", sft_run=str(sft.id), preferences=prefs.name)
    message = ("preferences: none of the 3 preference pairs can be trained on: 2 come from test prompts, which stay "
               "out of training so the test split stays a fair judge; 1 from val prompts, which only evaluate")
    with pytest.raises(TuneloopError, match=message):
        preflight(ws, config)
    with pytest.raises(TuneloopError, match=message):
        create_run(ws, config)


def test_the_train_tab_offers_the_kto_stage_and_its_keys(ws):
    import gradio as gr

    from training import ui
    with gr.Blocks(), gr.Tabs():
        w = ui.build_train_tab(ws)
    assert ("kto", "kto") in w.form["stage"].choices
    assert {"kto_data", "kto_beta", "sft_run"} <= set(w.form)
