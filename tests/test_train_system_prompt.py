"""What a run trains on: the system prompt each conversation gets (a record's own, the base template's default,
none, or a custom one), the same in preflight, in the job's training data and in its own answers; and how much
of the split the steps reach."""
from __future__ import annotations

import pytest

from core.errors import TuneloopError
from curation.data.demo import demo_records
from curation.data.versions import create_version
from tests.test_train import tiny_config
from tests.tiny_model import build_tiny_model
from training.data import apply_system_prompt, template_default_system, with_system_prompt

# A ChatML template that, like many instruct models', adds its own system prompt when a conversation has none.
DEFAULT_SYSTEM = "You are Pebble, an assistant made for this test."
WITH_DEFAULT = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n" + DEFAULT_SYSTEM
                + "<|im_end|>\n' }}{% endif %}{% for message in messages %}{{ '<|im_start|>' + message['role'] + "
                  "'\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
                  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
OWN = [{"role": "system", "content": "Answer as the shop."}, {"role": "user", "content": "Hi"},
       {"role": "assistant", "content": "Hello"}]
BARE = OWN[1:]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(a tiny model whose template adds no system prompt, the same model with one that adds a default)"""
    from transformers import AutoTokenizer
    plain = build_tiny_model(tmp_path_factory.mktemp("plain") / "tiny")
    defaulting = build_tiny_model(tmp_path_factory.mktemp("default") / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(defaulting)
    tokenizer.chat_template = WITH_DEFAULT
    tokenizer.save_pretrained(defaulting)
    return str(plain), str(defaulting)


def tokenizer_of(model):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model)


def test_each_mode_gives_the_conversation_its_system_prompt():
    assert with_system_prompt(OWN, "template") == OWN and with_system_prompt(BARE, "template") == BARE
    assert with_system_prompt(OWN, "records") == OWN
    assert with_system_prompt(BARE, "records") == BARE
    assert with_system_prompt(BARE, "records", template_default=True) == [{"role": "system", "content": ""}, *BARE]
    assert with_system_prompt(OWN, "none") == BARE
    assert with_system_prompt(OWN, "none", template_default=True)[0] == {"role": "system", "content": ""}
    assert with_system_prompt(OWN, "custom", "Be brief.") == [{"role": "system", "content": "Be brief."}, *BARE]
    with pytest.raises(TuneloopError, match="system_prompt: system_prompt_mode custom needs the prompt's text"):
        tiny_config("m", "v1", system_prompt_mode="custom").validate()


def test_the_templates_default_is_found_and_kept_out_when_asked(models):
    plain, defaulting = models
    assert template_default_system(tokenizer_of(plain)) is None
    tokenizer = tokenizer_of(defaulting)
    assert template_default_system(tokenizer) == DEFAULT_SYSTEM
    records = demo_records(4, seed=2)
    for mode, expect_default in (("template", True), ("records", False), ("none", False)):
        config = tiny_config(defaulting, "v1", system_prompt_mode=mode)
        rendered = [tokenizer.apply_chat_template(r.messages, tokenize=False)
                    for r in apply_system_prompt(tokenizer, records, config)]
        assert all((DEFAULT_SYSTEM in text) == expect_default for text in rendered), mode


def split_version(ws, n=40, with_system=0):
    records = demo_records(n, seed=1)
    for i, r in enumerate(records):
        r.meta["split"] = "train" if i < n * 0.7 else ("val" if i < n * 0.85 else "test")
        # exactly the first ``with_system`` records carry a system prompt of their own
        own = [{"role": "system", "content": "Answer as the shop."}] if i < with_system else []
        r.messages = own + [m for m in r.messages if m["role"] != "system"]
    return create_version(ws, records, parent=None, step="split")


def test_preflight_says_what_is_trained_on_and_warns_when_system_prompts_mix(ws, models):
    from training.preflight import preflight
    plain, defaulting = models
    version = split_version(ws, with_system=10)
    report = preflight(ws, tiny_config(defaulting, version.name))
    assert report.coverage == "16 of 28 conversations, 0.57 epoch (max_steps 4 ends it there)"
    assert report.system_prompt == (f"10 conversations keep their own system prompt, 18 get the base template's "
                                    f"default '{DEFAULT_SYSTEM}'")
    assert any("two kinds of system prompt are mixed in training (10 records' own, 18" in w for w in report.warnings)
    assert f"trains on: {report.coverage}" in report.as_text()
    custom = preflight(ws, tiny_config(defaulting, version.name, system_prompt_mode="custom",
                                       system_prompt="Be brief.", max_steps=-1, num_epochs=2.0))
    assert custom.coverage == "all 28 conversations, 2.00 epochs" and not any("mixed" in w for w in custom.warnings)
    assert custom.system_prompt == "all 28 conversations get the custom system prompt (10 records' own replaced)"
    assert "Be brief." in "".join(text for text, _ in custom.example) and DEFAULT_SYSTEM not in custom.as_text()
    none = preflight(ws, tiny_config(plain, version.name, system_prompt_mode="none"))
    assert none.system_prompt == "no conversation has a system prompt (10 records' own removed)"
    assert "Answer as the shop." not in "".join(text for text, _ in none.example)


def test_the_job_trains_and_answers_with_the_chosen_system_prompt(ws, models, capsys):
    from training import registry as R
    from training.job import run_training
    plain, defaulting = models
    version = split_version(ws, with_system=10)
    run = R.create_run(ws, tiny_config(defaulting, version.name, system_prompt_mode="none", max_steps=1,
                                       eval_steps=0, rouge_test_samples=1))
    done = run_training(ws, run.id)
    assert done.status == "finished", done.error
    printed = capsys.readouterr().out
    assert "[tuneloop] system prompt: no conversation has a system prompt (10 records' own removed)" in printed
    assert done.config.system_prompt_mode == "none"
