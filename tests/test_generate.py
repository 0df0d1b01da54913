"""Generation for rating: one tiny base model built in the test with a fresh LoRA adapter, on and off; the
prompted base, a live tuneloop endpoint as an arm, and the purpose of an evaluation."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.errors import TuneloopError
from curation.data.records import Record
from curation.data.versions import create_version
from evaluation.arena import get_evaluation, next_pair
from evaluation.generate import (GenerationCancelled, cache_key, generate_answers, generate_pairs, parse_arm,
                                 prepare_evaluation, prompts_for, prompts_from_texts, prompts_from_version, purpose_of,
                                 resolve_adapter, resolve_arms)
from training import registry as R
from training import serve as S
from training.config import RunConfig
from training.inference import DecodingSettings, default_pool, warm_base
from tests.tiny_model import build_tiny_model, plain_replies

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = DecodingSettings(max_new_tokens=6)
QUESTIONS = ["Where is my order?", "How do I reset my password?", "Can I get a refund?",
             "Thank you for contacting support", "The quick brown fox", "refunds within 30 days?"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as training leaves it: ``adapter/`` holding a LoRA adapter on the tiny base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("gen")
    base = build_tiny_model(root / "tiny")
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    # Random (not zero) LoRA weights, so the adapter really changes the answers.
    config = LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(root / "run" / "adapter")
    return root / "run"


def test_adapter_on_and_off_match_separate_models(ws, run_folder):
    models = resolve_adapter(ws, run_folder)
    assert models.adapter.endswith("adapter") and Path(models.base_model).name == "tiny"
    items = prompts_from_texts(QUESTIONS[:3])
    pairs = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=SETTINGS,
                           batch_size=2)
    conversations = [i.messages for i in items]
    assert [b for b, _ in pairs] == plain_replies(models.base_model, None, conversations, SETTINGS)
    assert [t for _, t in pairs] == plain_replies(models.base_model, Path(models.adapter), conversations, SETTINGS)
    assert any(b != t for b, t in pairs)
    assert [m.resolved.name for m in default_pool().models()] == ["tiny"]     # one warm copy, reused
    assert warm_base(ws, models.base_model) is default_pool().models()[0]


def test_responses_are_cached_by_settings_and_cancel_keeps_finished_batches(ws, run_folder):
    models = resolve_adapter(ws, run_folder)
    items = prompts_from_texts(QUESTIONS)
    stop = threading.Event()
    seen = []

    def progress(done, total, what):
        seen.append((done, total))
        if done >= 2:
            stop.set()

    with pytest.raises(GenerationCancelled, match="stopped after 2 of 12"):
        generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=SETTINGS,
                       batch_size=2, progress=progress, cancel=stop)
    assert ws.db.execute("select count(*) from generation_cache").fetchone()[0] == 2
    seen.clear()
    said = []
    first = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=SETTINGS,
                           batch_size=2, progress=lambda d, t, w: seen.append((d, t)) or said.append(w))
    assert seen[:2] == [(0, 12), (2, 12)] and seen[-1] == (12, 12)
    assert said[0].startswith("loading the model")          # said before the model loads, not after a batch
    seen.clear()
    again = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter, settings=SETTINGS,
                           progress=lambda d, t, w: seen.append((d, t)))
    assert again == first and seen == [(0, 12), (12, 12)]
    longer = DecodingSettings(max_new_tokens=8)
    generate_pairs(ws, items[:1], base_model=models.base_model, adapter=models.adapter, settings=longer)
    assert ws.db.execute("select count(*) from generation_cache").fetchone()[0] == 14


def test_prepare_evaluation_from_a_test_split(ws, run_folder):
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": "ref"}],
                      {"split": "test" if i % 2 else "train", "label": "orders"}) for i, q in enumerate(QUESTIONS)]
    version = create_version(ws, records, parent=None, step="split")
    items = prompts_from_version(ws, version.id)
    assert [i.prompt_id for i in items] == ["r1", "r3", "r5"] and items[0].messages[-1]["role"] == "user"
    eid = prepare_evaluation(ws, items, models=resolve_adapter(ws, run_folder), dataset_version=version.id,
                             overlap=2, settings=SETTINGS)
    evaluation = get_evaluation(ws, eid)
    assert evaluation.num_pairs == 3 and evaluation.overlap == 2 and evaluation.base_model == "tiny"
    assert evaluation.settings["max_new_tokens"] == 6
    assert next_pair(ws, eid, "ana").prompt in QUESTIONS


def test_generate_command_creates_an_evaluation(ws, run_folder):
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": "ref"}],
                      {"split": "test"}) for i, q in enumerate(QUESTIONS[:2])]
    version = create_version(ws, records, parent=None, step="split")
    done = subprocess.run([sys.executable, "-m", "evaluation", "generate", "--run", str(run_folder), "--split",
                           version.name, "--max-new-tokens", "4", "--workspace", str(ws.root)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "evaluation 1: 2 prompts from test, arms base, adapter run; rate to measure" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "evaluation", "generate", "--run", "/nowhere", "--split",
                              version.name, "--workspace", str(ws.root)], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "error:" in missing.stderr


def split_version(ws):
    """Four train conversations (the prompted base's examples), one val, two test prompts."""
    splits = ["train"] * 4 + ["val"] + ["test"] * 2
    records = [Record(f"r{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": f"Answer {i}."}],
                      {"split": split}) for i, (q, split) in enumerate(zip(QUESTIONS + ["Is it open?"], splits))]
    return create_version(ws, records, parent=None, step="split")


def finished_run(ws, run_folder, version) -> R.Run:
    """A finished run in the registry whose adapter is the test's adapter."""
    base = resolve_adapter(ws, run_folder).base_model
    run = R.create_run(ws, RunConfig(base_model=base, datasets=version.name), name="round 1")
    shutil.copytree(run_folder / "adapter", run.adapter_dir)
    R.update_run(ws, run.id, status="finished")
    return R.get_run(ws, run.id)


def test_the_prompted_base_answers_with_k_train_examples_as_earlier_turns_and_records_them(ws, run_folder):
    version = split_version(ws)
    base = resolve_adapter(ws, run_folder).base_model
    items = prompts_for(ws, "test", purpose="measure", version=version.id)
    system = "You answer support questions in one sentence."
    asked = [parse_arm("base"), parse_arm("prompted:2", system_prompt=system, seed=3)]
    model, arms = resolve_arms(ws, asked, items=items, version=version.id, base_model=base)
    prompted = arms[1]
    assert model == base and [a.kind for a in arms] == ["base", "prompted"]
    examples = prompted.settings["examples"]
    assert len(examples) == 2 and {e["id"] for e in examples} <= {"r0", "r1", "r2", "r3"}      # train only
    assert prompted.settings["system_prompt"] == system and prompted.settings["version"] == version.id
    assert [e["messages"][1]["content"] for e in examples] == [f"Answer {e['id'][1:]}." for e in examples]
    again = resolve_arms(ws, asked, items=items, version=version.id, base_model=base)[1][1]
    assert again.settings == prompted.settings                                     # the seed reproduces the draw

    answers = generate_answers(ws, items, arms, base_model=model, settings=SETTINGS)
    turns = [m for e in examples for m in e["messages"]]
    sent = [[{"role": "system", "content": system}, *turns, *i.messages] for i in items]
    assert answers[prompted.name] == plain_replies(base, None, sent, SETTINGS)
    # the tiny base answers briefly whatever it is sent: what it was sent is what the cache keys its answers by
    warm = default_pool().get(ws, base)
    keys = [cache_key(warm, SETTINGS, conversation, adapter_identity=None) for conversation in sent]
    cached = {r[0] for r in ws.db.execute("select key from generation_cache")}
    assert set(keys) <= cached
    assert answers["base"] == plain_replies(base, None, [i.messages for i in items], SETTINGS)

    pool = prompts_for(ws, "train", purpose="improve", version=version.id, limit=2)
    with pytest.raises(TuneloopError, match="ask for at most 2"):          # the rated prompts are never examples
        resolve_arms(ws, [parse_arm("base"), parse_arm("prompted:3")], items=pool, version=version.id,
                     base_model=base)


def test_an_endpoint_arm_answers_from_a_live_tuneloop_endpoint_and_served_requests_become_prompts(
        ws, run_folder, monkeypatch):
    from tests.test_serve import serving
    run = finished_run(ws, run_folder, split_version(ws))
    items = prompts_from_texts(QUESTIONS[:2])
    endpoint = S.Endpoint(ws, run_id=run.id, engine="transformers", log_text=True)
    monkeypatch.setenv("TUNELOOP_TEST_KEY", "sk-test-never-stored")
    with serving(endpoint) as client:
        url = str(client.base_url).rstrip("/")
        asked = [parse_arm(f"run:{run.id}"), parse_arm(f"endpoint:{url}#run-{run.id}", api_key_env="TUNELOOP_TEST_KEY")]
        model, arms = resolve_arms(ws, asked, items=items)
        answers = generate_answers(ws, items, arms, base_model=model, settings=SETTINGS)
        monkeypatch.delenv("TUNELOOP_TEST_KEY")
        fresh = prompts_from_texts(["Is the shop open on Sunday?"])
        with pytest.raises(TuneloopError, match="environment variable TUNELOOP_TEST_KEY, which is not set"):
            generate_answers(ws, fresh, arms[1:], base_model=model, settings=SETTINGS)
    assert [a.name for a in arms] == [f"run {run.id}", f"endpoint run-{run.id}"]
    assert answers[f"endpoint run-{run.id}"] == answers[f"run {run.id}"]      # the served run answers as the warm one
    assert "sk-test" not in json.dumps(arms[1].settings) and arms[1].settings["api_key_env"] == "TUNELOOP_TEST_KEY"
    served = S.request_log(ws)
    assert len(served) == 2 and all(r["status"] == 200 for r in served)
    # the endpoint is gone: the same answers come from the cache, no request is sent
    assert generate_answers(ws, items, arms, base_model=model, settings=SETTINGS) == answers
    improve = prompts_for(ws, "served", purpose="improve")
    assert [i.messages for i in improve] == [i.messages for i in items]
    assert [i.prompt_id for i in improve] == [r["id"] for r in served] and {i.split for i in improve} == {"train"}
    with pytest.raises(TuneloopError, match="serve rating to improve, not to measure"):
        prompts_for(ws, "served", purpose="measure")


def test_an_endpoint_that_is_not_there_is_named_in_the_error(ws):
    model, arms = resolve_arms(ws, [parse_arm("endpoint:http://127.0.0.1:9/v1#m"), parse_arm("endpoint:x#n")])
    with pytest.raises(TuneloopError, match=r"the endpoint http://127.0.0.1:9/v1/chat/completions did not answer"):
        generate_answers(ws, prompts_from_texts(["hi"]), arms[:1], base_model=model, settings=SETTINGS)
    with pytest.raises(TuneloopError, match="is not an arm"):
        parse_arm("endpoint:http://127.0.0.1:9/v1")


def test_the_purpose_is_stored_and_prompts_to_improve_with_carry_the_train_split(ws, run_folder):
    version = split_version(ws)
    with pytest.raises(TuneloopError, match="serve rating to improve, not to measure; to measure, take prompts "
                                            "from: test"):
        prompts_for(ws, "train", purpose="measure", version=version.id)
    items = prompts_for(ws, "typed", purpose="improve", texts=["Where is my order?", "Is it open?"])
    assert {i.split for i in items} == {"train"}
    eid = prepare_evaluation(ws, items, models=resolve_adapter(ws, run_folder), purpose="improve",
                             prompt_source="typed", settings=SETTINGS)
    evaluation = get_evaluation(ws, eid)
    assert purpose_of(evaluation.settings) == "improve" and evaluation.settings["prompt_source"] == "typed"
    assert evaluation.settings["max_new_tokens"] == 6
    assert {r[0] for r in ws.db.execute("select split from eval_pairs where evaluation_id=?", (eid,))} == {"train"}
    with pytest.raises(TuneloopError, match="serve rating to measure, not to improve"):
        prepare_evaluation(ws, items, models=resolve_adapter(ws, run_folder), purpose="improve", prompt_source="test")


def test_generate_command_rates_to_improve_with_the_prompted_base_and_a_run(ws, run_folder):
    version = split_version(ws)
    run = finished_run(ws, run_folder, version)
    done = subprocess.run([sys.executable, "-m", "evaluation", "generate", "--arm", "base", "--arm", "prompted:1",
                           "--arm", f"run:{run.id}", "--system-prompt", "Be brief.", "--split", version.name,
                           "--prompts-from", "train", "--limit", "2", "--max-new-tokens", "4",
                           "--workspace", str(ws.root)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (f"2 prompts from train, arms base, prompted base (1 examples), run {run.id}; rate to improve"
            in done.stdout)
    evaluation = get_evaluation(ws, 1)
    assert purpose_of(evaluation.settings) == "improve" and evaluation.settings["prompt_source"] == "train"
    from evaluation.arena import evaluation_arms
    prompted = evaluation_arms(ws, 1)[1]
    assert prompted.kind == "prompted" and prompted.settings["system_prompt"] == "Be brief."
    assert [e["id"] for e in prompted.settings["examples"]] != [] and prompted.settings["examples"][0]["id"] in (
        "r2", "r3")                                       # from train, never one of the two prompts rated (r0, r1)
    wrong = subprocess.run([sys.executable, "-m", "evaluation", "generate", "--arm", "base", "--arm", "run",
                            "--workspace", str(ws.root)], cwd=ROOT, capture_output=True, text=True)
    assert wrong.returncode == 2 and "is not an arm" in wrong.stderr
