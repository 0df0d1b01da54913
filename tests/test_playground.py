"""The playground: streaming, shared decoding settings, taking turns, stopping, and answers sent to the dataset.

A tiny base model built in the test carries fresh LoRA adapters with random (not zero) weights, so the
fine-tuned side really answers differently from the base side.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import TuneloopError
from curation.data.records import Record
from curation.data.versions import create_version, current_version, load_records
from evaluation.playground import (answer_pair, example_conversation, example_origin, matchup_for, playground_runs,
                                   send_to_dataset, split_examples, stream_pair)
from training.inference import BasePool, DecodingSettings, default_pool
from tests.tiny_model import build_tiny_model, make_adapter

ROOT = Path(__file__).resolve().parent.parent
QUESTION = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny base model, two runs' adapters on it, and an adapter on a different tiny base model."""
    root = tmp_path_factory.mktemp("playground")
    base = build_tiny_model(root / "tiny")
    other_base = build_tiny_model(root / "other-tiny", seed=3)
    return {"base": base,
            "run": make_adapter(base, root / "run-a" / "adapter", seed=1),
            "second": make_adapter(base, root / "run-b" / "adapter", seed=2),
            "foreign": make_adapter(other_base, root / "foreign" / "adapter", seed=1)}


@pytest.fixture(scope="module")
def pool():
    return BasePool()


def reference_reply(base: Path, adapter: Path | None, messages, settings) -> str:
    """Plain transformers/peft generation of one answer with ``settings``: what each side must reproduce."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=settings.max_new_tokens, do_sample=False,
                             repetition_penalty=settings.repetition_penalty, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_streaming_yields_both_answers_incrementally(ws, models):
    matchup = matchup_for(ws, models["run"])
    assert matchup.left.kind == "base" and matchup.right.kind == "fine-tuned"
    assert matchup.left.label == "Base model · tiny" and matchup.right.label == "Fine-tuned · run-a"
    updates = list(stream_pair(ws, matchup, QUESTION, DecodingSettings(max_new_tokens=24), pool=BasePool()))
    assert updates[0].status == "loading"            # a fresh pool loads the model first, and says so
    assert updates[-1].status == "done"
    streaming = [u for u in updates if u.status == "streaming"]
    final = updates[-1].texts
    for side in (0, 1):
        seen = [u.texts[side] for u in streaming]
        assert all(final[side].startswith(text) for text in seen)       # each update extends the last
        assert all(len(a) <= len(b) for a, b in zip(seen, seen[1:]))
    assert len({u.texts[0] for u in streaming}) >= 3                    # the text arrived in several pieces
    counts = [u.stats[1].tokens for u in streaming]
    assert counts[0] < counts[-1] <= 24                                 # the fine-tuned side was counted as it grew
    assert final[0] != final[1]
    for stats in updates[-1].stats:
        assert stats.tokens and stats.first_token_s is not None


@pytest.mark.parametrize("penalty, max_new", [(1.0, 8), (1.3, 12)])
def test_both_sides_use_the_same_decoding_settings(ws, models, pool, penalty, max_new):
    settings = DecodingSettings(max_new_tokens=max_new, repetition_penalty=penalty)
    last = answer_pair(ws, matchup_for(ws, models["run"]), QUESTION, settings, pool=pool)
    assert last.texts[0].strip() == reference_reply(models["base"], None, QUESTION, settings)
    assert last.texts[1].strip() == reference_reply(models["base"], models["run"], QUESTION, settings)
    assert all(s.tokens <= max_new for s in last.stats)
    # A second run instead of the base: both adapters sit on the one warm model, same settings again.
    runs = answer_pair(ws, matchup_for(ws, models["run"], against=models["second"]), QUESTION, settings, pool=pool)
    assert runs.texts[0].strip() == reference_reply(models["base"], models["second"], QUESTION, settings)
    assert runs.texts[1].strip() == last.texts[1].strip()
    assert len(pool.models()) == 1


def test_each_side_continues_its_own_conversation_and_the_system_prompt_is_shared(ws, models, pool):
    settings = DecodingSettings(max_new_tokens=6)
    matchup = matchup_for(ws, models["run"])
    first = answer_pair(ws, matchup, QUESTION, settings, pool=pool)
    follow = {"role": "user", "content": "Can I get a refund?"}
    left = QUESTION + [{"role": "assistant", "content": first.texts[0].strip()}, follow]
    right = QUESTION + [{"role": "assistant", "content": first.texts[1].strip()}, follow]
    system = "You are a support agent."
    second = answer_pair(ws, matchup, (left, right), settings, system_prompt=system, pool=pool)
    with_system = lambda c: [{"role": "system", "content": system}] + c  # noqa: E731
    assert second.texts[0].strip() == reference_reply(models["base"], None, with_system(left), settings)
    assert second.texts[1].strip() == reference_reply(models["base"], models["run"], with_system(right), settings)


def test_stop_ends_a_long_answer_early(ws, models, pool):
    import threading
    cancel = threading.Event()
    updates = []
    for update in stream_pair(ws, matchup_for(ws, models["run"]), QUESTION, DecodingSettings(max_new_tokens=400),
                              cancel=cancel, pool=pool):
        updates.append(update)
        if update.status == "streaming":
            cancel.set()
    assert updates[-1].status == "stopped"
    assert all(s.tokens < 400 for s in updates[-1].stats)


def test_requests_take_turns_and_see_their_place_in_line(ws, models, pool):
    import threading
    matchup = matchup_for(ws, models["run"])
    stop_first = threading.Event()
    first = stream_pair(ws, matchup, QUESTION, DecodingSettings(max_new_tokens=400), cancel=stop_first, pool=pool)
    while next(first).status != "streaming":                           # the first request holds the model now
        pass
    second = stream_pair(ws, matchup, QUESTION, DecodingSettings(max_new_tokens=6), pool=pool, poll_s=0.05)
    waiting = next(second)
    assert (waiting.status, waiting.ahead) == ("waiting", 1)
    assert "1 request is ahead of you" in waiting.message
    first.close()                                                        # a closed page stops its generation
    assert stop_first.is_set()
    assert list(second)[-1].status == "done"                             # and hands the model to the next in line


def test_a_different_base_model_or_the_same_run_twice_is_refused(ws, models, pool):
    with pytest.raises(TuneloopError, match="different base models"):
        answer_pair(ws, matchup_for(ws, models["run"], against=models["foreign"]), QUESTION,
                    DecodingSettings(max_new_tokens=4), pool=pool)
    with pytest.raises(TuneloopError, match="same run"):
        matchup_for(ws, models["run"], against=models["run"].parent)
    with pytest.raises(TuneloopError, match="pick a fine-tuned run"):
        matchup_for(ws, "")
    with pytest.raises(TuneloopError, match="end with a question"):
        answer_pair(ws, matchup_for(ws, models["run"]), [{"role": "assistant", "content": "hi"}], pool=pool)


def test_rating_generation_and_the_playground_share_one_warm_base(ws, models):
    from evaluation.generate import generate_pairs, prompts_from_texts
    settings = DecodingSettings(max_new_tokens=6)
    pairs = generate_pairs(ws, prompts_from_texts([QUESTION[0]["content"]]), base_model=str(models["base"]),
                           adapter=models["run"], settings=settings)
    warm = default_pool().get(ws, str(models["base"]))
    updates = list(stream_pair(ws, matchup_for(ws, models["run"]), QUESTION, settings))
    assert "loading" not in [u.status for u in updates]          # the playground found rating's model warm
    assert default_pool().models() == [warm]
    assert (updates[-1].texts[0].strip(), updates[-1].texts[1].strip()) == pairs[0]


def dataset(ws):
    records = [Record("r1", [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Where is my order?"},
                             {"role": "assistant", "content": "It ships in two days."}],
                      {"label": "shipping", "split": "test"}),
               Record("r2", [{"role": "user", "content": "Reset my password"},
                             {"role": "assistant", "content": "Open Settings."}],
                      {"label": "account", "split": "train"})]
    return create_version(ws, records, parent=None, step="import")


def test_send_to_dataset_adds_the_edited_answer_with_provenance(ws, models, pool):
    v1 = dataset(ws)
    example = split_examples(ws)[0]
    system, earlier, question, reference = example_conversation(example)
    assert (system, earlier, question, reference) == ("Be brief.", [], "Where is my order?", "It ships in two days.")
    matchup = matchup_for(ws, models["run"])
    conversation = earlier + [{"role": "user", "content": question}]
    answer = answer_pair(ws, matchup, conversation, DecodingSettings(max_new_tokens=6), system_prompt=system,
                         pool=pool).texts[1].strip()
    edited = "Your order ships within two days."
    version, record = send_to_dataset(ws, conversation, edited, side=matchup.right, author="ana",
                                      original_answer=answer, origin=example_origin(example), system_prompt=system)
    assert (version.step, version.parent_id, version.num_records, version.created_by) == ("playground", v1.id, 3, "ana")
    assert current_version(ws).id == version.id
    stored = {r.id: r for r in load_records(ws, version.id)}[record.id]
    assert stored.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question},
                               {"role": "assistant", "content": edited}]
    meta = stored.meta
    assert (meta["source"], meta["model"], meta["run"], meta["author"], meta["edited"]) == \
        ("playground", "fine-tuned", matchup.right.adapter, "ana", True)
    assert (meta["prompt_id"], meta["split"], meta["label"]) == ("r1", "test", "shipping")   # stays in test
    assert meta["at"].endswith("Z")
    with pytest.raises(TuneloopError, match="already in"):
        send_to_dataset(ws, conversation, edited, side=matchup.right, author="ana", system_prompt=system)
    base_version, base_record = send_to_dataset(ws, [{"role": "user", "content": "Hi"}], "Hello!", side=matchup.left,
                                                author="bo", original_answer="Hello!")
    assert (base_record.meta["model"], base_record.meta["run"], base_record.meta["edited"]) == ("base", None, False)
    assert "split" not in base_record.meta and base_version.parent_id == version.id
    with pytest.raises(TuneloopError, match="answer is empty"):
        send_to_dataset(ws, [{"role": "user", "content": "Hi"}], "  ", side=matchup.left, author="bo")


def test_cli_asks_both_sides_and_sends_an_answer(tmp_path, models):
    env_ws = str(tmp_path / "cli-ws")
    ask = subprocess.run([sys.executable, "-m", "evaluation.playground", "ask", "--workspace", env_ws,
                          "--run", str(models["run"].parent), "Where is my order?", "--max-new-tokens", "5", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ask.returncode == 0, ask.stderr
    result = json.loads(ask.stdout)
    assert result["status"] == "done"
    assert [s["label"] for s in result["sides"]] == ["Base model · tiny", "Fine-tuned · run-a"]
    assert all(0 < s["tokens"] <= 5 for s in result["sides"])
    send = subprocess.run([sys.executable, "-m", "evaluation.playground", "send", "--workspace", env_ws,
                           "--run", str(models["run"]), "--prompt", "Hi", "--answer", "Hello!", "--author", "cy"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert send.returncode == 2 and "no dataset yet" in send.stderr     # nothing to add to in an empty workspace


def test_runs_from_the_registry_are_offered_once_they_have_an_adapter(ws, models):
    import shutil

    from training import registry
    from training.config import RunConfig
    records = [Record(f"r{i}", [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "ok"}],
                      {"split": split}) for i, split in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 2)]
    create_version(ws, records, parent=None, step="split")
    run = registry.create_run(ws, RunConfig(base_model=str(models["base"]), datasets="v1"), name="first try")
    assert playground_runs(ws) == []
    shutil.copytree(models["run"], run.adapter_dir)
    assert [value for _, value in playground_runs(ws)] == [str(run.id)]
    matchup = matchup_for(ws, str(run.id))
    assert matchup.right.label == f"Fine-tuned · run #{run.id} first try" and matchup.right.run_id == str(run.id)
    assert matchup.left.base_model == str(models["base"])
