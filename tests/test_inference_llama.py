"""The llama.cpp engine of the inference module: which engine answers, greedy answers against transformers
on the same weights, and adapters switched per side.

The same weights: an f16 GGUF of the default model against its fp32 values in transformers, and the shipped
Q4_1 file against its dequantised fp32 weights. Agreement is a tolerance, not an exact match: llama.cpp
rounds activations (to f16 for f16 weights, to 8 bits for Q4_1 weights), so at a near tie between two tokens
the answers can part. Every f16 answer must agree for its first ``PREFIX`` tokens (half of them entirely);
every Q4_1 answer for its first ``Q4_PREFIX``.
"""
from __future__ import annotations

import pytest

from core.errors import TuneloopError
from tests.tiny_model import build_tiny_model
from training import inference
from training.inference import DecodingSettings, WarmBase, choose_engine, requested_engine
from training.models import resolve_base_model

SETTINGS = DecodingSettings(max_new_tokens=24)
PREFIX = 12
Q4_PREFIX = 4
QUESTIONS = ["Where is my parcel? I ordered it nine days ago.", "How can I change the email on my account?",
             "Is it safe to run the dishwasher at night?", "Write one sentence about autumn."]
CONVERSATIONS = [[{"role": "user", "content": q}] for q in QUESTIONS]


@pytest.fixture(scope="module")
def default_model():
    return resolve_base_model("default", None)


def test_the_engine_is_the_fastest_that_gives_the_same_answers(tmp_path, default_model, monkeypatch):
    tiny = resolve_base_model(str(build_tiny_model(tmp_path / "tiny")), None)
    monkeypatch.delenv(inference.ENGINE_ENV, raising=False)
    engine, why = choose_engine(tiny, requested_engine())
    assert engine == "transformers" and "not a GGUF file" in why            # a folder converts only when forced
    assert choose_engine(default_model, "auto", load_in_4bit=True)[0] == "transformers"
    monkeypatch.setenv(inference.ENGINE_ENV, "Transformers")
    assert WarmBase(default_model).engine == "transformers"
    monkeypatch.setenv(inference.ENGINE_ENV, "fast")
    with pytest.raises(TuneloopError, match="choose auto .*, llama.cpp or transformers"):
        WarmBase(default_model)
    with pytest.raises(TuneloopError, match="not from a 4-bit model"):
        choose_engine(default_model, "llama.cpp", load_in_4bit=True)
    monkeypatch.setattr(inference, "llama_cpp_missing", lambda: "llama-cpp-python does not import here")
    assert choose_engine(default_model, "auto") == ("transformers", "llama-cpp-python does not import here")
    with pytest.raises(TuneloopError, match="llama.cpp, but llama-cpp-python does not import here; run `make setup`"):
        choose_engine(default_model, "llama.cpp")


def test_the_default_model_answers_with_llama_cpp_where_it_imports(default_model, monkeypatch):
    pytest.importorskip("llama_cpp")
    monkeypatch.delenv(inference.ENGINE_ENV, raising=False)
    warm = WarmBase(default_model)
    assert warm.engine == "llama.cpp" and warm.identity["engine"] == "llama.cpp"
    assert "engine" not in WarmBase(default_model, engine="transformers").identity   # older cache keys still hold


def agreeing_prefix(tokenizer, reference: str, answer: str) -> int:
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (reference, answer))
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def assert_agree(tokenizer, references: list[str], answers: list[str], prefix: int = PREFIX) -> None:
    for reference, answer in zip(references, answers):
        assert answer == reference or agreeing_prefix(tokenizer, reference, answer) >= prefix, (reference, answer)


@pytest.fixture(scope="module")
def engines(default_model, tmp_path_factory):
    """The default model as an f16 GGUF in llama.cpp and as its fp32 values in transformers, and a LoRA
    adapter on it that changes its answers."""
    pytest.importorskip("llama_cpp")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from training.gguf import convert_model
    root = tmp_path_factory.mktemp("llama")
    same = resolve_base_model(str(convert_model(default_model.path, root / "SmolLM2-135M-f16.gguf")), None)
    torch.manual_seed(4)
    model = AutoModelForCausalLM.from_pretrained(same.path)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.mul_(0.3)      # a nudge, like a short fine-tune: it changes answers, not the language
    peft_model.save_pretrained(root / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(root / "merged")
    fast = WarmBase(same, engine="llama.cpp", cache_dir=root / "cache")
    slow = WarmBase(same, engine="transformers")
    return {"fast": fast, "slow": slow, "adapter": root / "adapter", "merged": root / "merged"}


def test_llama_cpp_gives_transformers_greedy_answers_on_the_same_weights(engines):
    fast, slow = engines["fast"], engines["slow"]
    expected = slow.answer(CONVERSATIONS, settings=SETTINGS)
    answers = fast.answer(CONVERSATIONS, settings=SETTINGS)
    assert fast.engine_for([None]) == "llama.cpp" and fast.llama is not None
    assert_agree(slow.tokenizer, expected, answers)
    assert sum(a == b for a, b in zip(expected, answers)) >= len(QUESTIONS) // 2


def test_the_shipped_q4_1_file_agrees_with_its_dequantised_weights(default_model):
    pytest.importorskip("llama_cpp")
    fast, slow = WarmBase(default_model, engine="llama.cpp"), WarmBase(default_model, engine="transformers")
    assert_agree(slow.load()[1], slow.answer(CONVERSATIONS, settings=SETTINGS),
                 fast.answer(CONVERSATIONS, settings=SETTINGS), prefix=Q4_PREFIX)


def test_adapters_switch_per_side_in_the_llama_cpp_engine(engines):
    import torch
    from transformers import AutoModelForCausalLM
    fast, slow = engines["fast"], engines["slow"]
    tuned = fast.add_adapter(engines["adapter"])
    question = CONVERSATIONS[0]
    texts, last = ["", ""], None
    for last in fast.stream([question, question], adapters=[None, tuned], settings=SETTINGS):
        texts[last.row] += last.text
    assert last.engine == "llama.cpp" and all(s.finished or s.tokens == SETTINGS.max_new_tokens for s in last.stats)
    base_side, tuned_side = (t.strip() for t in texts)
    assert base_side != tuned_side
    assert base_side == fast.answer([question], settings=SETTINGS)[0]
    assert tuned_side == fast.answer([question], adapter=tuned, settings=SETTINGS)[0]
    merged = WarmBase.wrap(AutoModelForCausalLM.from_pretrained(engines["merged"], dtype=torch.float32),
                           slow.load()[1], name="merged")
    assert_agree(slow.tokenizer, merged.answer([question], settings=SETTINGS), [tuned_side])
    assert_agree(slow.tokenizer, slow.answer([question], settings=SETTINGS), [base_side])
