"""The inference module on a tiny model built here: adapters on and off, several adapters in one streamed
batch, training's own model wrapped, one warm copy per base model, and what an adapter's name follows."""
from __future__ import annotations

import shutil
import threading

import pytest

from core.errors import TuneloopError
from tests.tiny_model import build_tiny_model, make_adapter, plain_replies
from training.inference import BasePool, DecodingSettings, WarmBase, adapter_fingerprint
from training.models import resolve_base_model

SETTINGS = DecodingSettings(max_new_tokens=8)
# Prompts of different lengths, so a batch is padded (on the left) and rows end at different times.
CONVERSATIONS = [[{"role": "user", "content": "Where is my order?"}],
                 [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Can I get a refund? The lamp arrived broken."}],
                 [{"role": "user", "content": "Thank you"}]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    base = build_tiny_model(root / "tiny")
    return {"root": root, "base": base, "one": make_adapter(base, root / "one", seed=1),
            "two": make_adapter(base, root / "two", seed=2)}


@pytest.fixture(scope="module")
def warm(tiny):
    return WarmBase(resolve_base_model(str(tiny["base"])))


def test_a_batch_with_the_adapter_off_or_on_answers_as_the_plain_models_do(tiny, warm):
    one = warm.add_adapter(tiny["one"])
    base_expected = plain_replies(tiny["base"], None, CONVERSATIONS, SETTINGS)
    tuned_expected = plain_replies(tiny["base"], tiny["one"], CONVERSATIONS, SETTINGS)
    assert base_expected != tuned_expected
    assert warm.answer(CONVERSATIONS, adapter=None, settings=SETTINGS) == base_expected
    assert warm.answer(CONVERSATIONS, adapter=one, settings=SETTINGS) == tuned_expected
    assert warm.answer(CONVERSATIONS, adapter=None, settings=SETTINGS, batch_size=2) == base_expected
    rendered = warm.tokenizer.apply_chat_template(CONVERSATIONS[0], add_generation_prompt=True, tokenize=False)
    assert warm.prompt_lengths(CONVERSATIONS[:1]) == [len(warm.tokenizer(rendered, add_special_tokens=False)
                                                          ["input_ids"])]


def test_two_adapters_and_the_base_stream_in_one_batch(tiny, warm):
    one, two = warm.add_adapter(tiny["one"]), warm.add_adapter(tiny["two"])
    question = CONVERSATIONS[1]
    texts, ended, last = ["", "", ""], [False] * 3, None
    for last in warm.stream([question] * 3, adapters=[None, one, two], settings=SETTINGS):
        texts[last.row] += last.text
        ended[last.row] = ended[last.row] or last.ended
    assert all(ended)
    assert [t.strip() for t in texts] == [plain_replies(tiny["base"], None, [question], SETTINGS)[0],
                                          plain_replies(tiny["base"], tiny["one"], [question], SETTINGS)[0],
                                          plain_replies(tiny["base"], tiny["two"], [question], SETTINGS)[0]]
    assert len(set(texts)) == 3
    for stats in last.stats:
        assert 0 < stats.tokens <= SETTINGS.max_new_tokens and stats.first_token_s is not None


def test_a_set_cancel_stops_the_stream_and_frees_the_model(tiny, warm):
    cancel = threading.Event()
    events = []
    for event in warm.stream(CONVERSATIONS[:1], adapters=[None], settings=DecodingSettings(max_new_tokens=400),
                             cancel=cancel):
        events.append(event)
        cancel.set()
    assert events[-1].ended and events[-1].stats[0].tokens < 400
    assert not warm.in_use
    with pytest.raises(TuneloopError, match="2 conversations but 1 adapters"):
        next(warm.stream(CONVERSATIONS[:2], adapters=[None]))


def test_training_s_own_peft_model_answers_through_the_same_loop(tiny):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny["base"]), str(tiny["one"]))
    model.train()
    wrapped = WarmBase.wrap(model, AutoTokenizer.from_pretrained(tiny["base"]))
    assert wrapped.active_adapter == "default"
    assert wrapped.answer(CONVERSATIONS, adapter=None, settings=SETTINGS) == \
        plain_replies(tiny["base"], None, CONVERSATIONS, SETTINGS)
    assert wrapped.answer(CONVERSATIONS, adapter="default", settings=SETTINGS, batch_size=2) == \
        plain_replies(tiny["base"], tiny["one"], CONVERSATIONS, SETTINGS)
    assert model.training                              # handed back to training as it came
    with pytest.raises(TuneloopError, match="cannot load"):
        wrapped.add_adapter(tiny["two"])


def test_the_pool_keeps_one_warm_copy_per_base_model(tiny):
    pool = BasePool()
    first = pool.get(None, str(tiny["base"]))
    assert pool.get(None, str(tiny["base"])) is first
    first.answer(CONVERSATIONS[:1], settings=DecodingSettings(max_new_tokens=2))
    assert first.loaded and pool.models() == [first]
    other_base = build_tiny_model(tiny["root"] / "other", seed=3)
    with pool.hold(None, str(other_base)) as other:   # the idle tiny model makes room
        assert pool.models() == [other] and not first.loaded
        with pytest.raises(TuneloopError, match="other is busy answering"):
            pool.get(None, str(tiny["base"]))
    assert pool.get(None, str(tiny["base"])) is not first       # a fresh copy once the other was let go
    assert len(pool.models()) == 1


def test_an_adapter_s_name_follows_its_weights(tiny, warm, tmp_path):
    folder = make_adapter(tiny["base"], tmp_path / "retrained", seed=1)
    before = adapter_fingerprint(folder)
    assert before == adapter_fingerprint(tiny["one"])                 # same weights elsewhere: same adapter
    assert warm.add_adapter(folder) == "a" + before
    shutil.rmtree(folder)
    make_adapter(tiny["base"], folder, seed=5)                          # retrained in place
    assert adapter_fingerprint(folder) != before
    retrained = warm.add_adapter(folder)
    assert warm.answer(CONVERSATIONS[:1], adapter=retrained, settings=SETTINGS) == \
        plain_replies(tiny["base"], folder, CONVERSATIONS[:1], SETTINGS)
    with pytest.raises(TuneloopError, match="not an adapter folder"):
        adapter_fingerprint(tmp_path)


def test_decoding_settings_round_trip_and_say_what_is_wrong():
    sampled = DecodingSettings(max_new_tokens=32, do_sample=True, temperature=0.5, top_p=0.9, seed=7)
    assert DecodingSettings.from_dict(sampled.to_dict()) == sampled
    assert DecodingSettings.from_dict(DecodingSettings().to_dict()) == DecodingSettings()
    assert "temperature" not in DecodingSettings().to_dict()           # greedy: no sampling knobs in cache keys
    assert DecodingSettings.from_knobs(temperature=0, max_new_tokens=16) == DecodingSettings(max_new_tokens=16)
    assert DecodingSettings.from_knobs(temperature=0.8).do_sample and DecodingSettings().knob_temperature == 0
    with pytest.raises(TuneloopError, match="max_tokens: not a key of the decoding settings"):
        DecodingSettings.from_dict({"max_tokens": 5})
    with pytest.raises(TuneloopError, match="do_sample: 'maybe' is not a valid true/false"):
        DecodingSettings.from_dict({"do_sample": "maybe"})
    with pytest.raises(TuneloopError, match="max_new_tokens: 0 is too small; it must be at least 1"):
        DecodingSettings.from_dict({"max_new_tokens": 0})
    with pytest.raises(TuneloopError, match="seed: '1.5' is not a valid whole number"):
        DecodingSettings.from_dict({"seed": 1.5})
