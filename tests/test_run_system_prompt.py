"""A run answers, and is trained further, under the system-prompt choice it trained with: a custom prompt, or none
(not the base template's default), in every path that has the run answer or trains on from it: rating pairs, the
automatic metrics (answers and perplexity) with a regression suite, the playground, the PII leak probe, DPO and KTO.
What the model was given is captured where the chat template renders it."""
from __future__ import annotations

import json

import pytest

from core.workspace import Workspace
from curation.data.records import Record
from curation.data.versions import create_version
from tests.tiny_model import build_tiny_model, make_adapter
from training.config import RunConfig, save_config
from training.inference import DecodingSettings

# A ChatML template that, like many instruct models', adds its own system prompt when a conversation has none.
DEFAULT_SYSTEM = "You are Quartz, an assistant named by the template."
WITH_DEFAULT = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n" + DEFAULT_SYSTEM
                + "<|im_end|>\n' }}{% endif %}{% for message in messages %}{{ '<|im_start|>' + message['role'] + "
                  "'\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
                  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CUSTOM = "You answer for the Lindqvist bicycle shop, in two sentences."
ASKED = "Do you repair tandem bikes?"
REFERENCE = "Yes, tandems are repaired in the back workshop."
CASE = "Is the workshop open on Sundays?"
SETTINGS = DecodingSettings(max_new_tokens=3)
MODES = {"custom": {"system_prompt_mode": "custom", "system_prompt": CUSTOM}, "none": {"system_prompt_mode": "none"}}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny model whose chat template adds a default system prompt to a conversation without one."""
    from transformers import AutoTokenizer
    folder = build_tiny_model(tmp_path_factory.mktemp("sysbase") / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = WITH_DEFAULT
    tokenizer.save_pretrained(folder)
    return folder


def run_config(base, mode: str, **extra) -> RunConfig:
    values = dict(base_model=str(base), datasets="v1", adapter="qlora", load_in_4bit=True, lora_r=4, lora_alpha=8,
                  lora_dropout=0.0, sequence_len=96, micro_batch_size=2, max_steps=1, eval_steps=0, save_steps=50,
                  rouge_test_samples=0, warmup_ratio=0.0, lr_scheduler="constant", cpu_threads=2)
    return RunConfig.from_dict({**values, **MODES[mode], **extra})


@pytest.fixture(scope="module")
def run_folders(tmp_path_factory, base):
    """{mode: a run folder as training leaves it: adapter/ and the config.yaml that chose the system prompt}"""
    folders = {}
    for n, mode in enumerate(MODES):
        folder = tmp_path_factory.mktemp(f"run-{mode}")
        make_adapter(base, folder / "adapter", seed=n + 1)
        save_config(run_config(base, mode), folder / "config.yaml")
        folders[mode] = folder
    return folders


@pytest.fixture
def rendered(monkeypatch):
    """Every conversation the chat template renders from now on, as text (the template's own probes left out)."""
    from transformers import PreTrainedTokenizerBase
    original = PreTrainedTokenizerBase.apply_chat_template
    seen: list[str] = []

    def spy(self, conversation, *args, **kwargs):
        kept = {k: v for k, v in kwargs.items() if k in ("add_generation_prompt", "continue_final_message")}
        text = original(self, conversation, tokenize=False, **kept)
        seen.extend(t for t in ([text] if isinstance(text, str) else text) if "\x01probe" not in t)
        return original(self, conversation, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "apply_chat_template", spy)
    return seen


def as_the_run_saw_it(texts: list[str], mode: str, needle: str = ASKED) -> list[str]:
    """The renders holding ``needle`` that carry the mode's system prompt: the custom one, or no system text."""
    with_needle = [t for t in texts if needle in t]
    assert with_needle, f"nothing rendered '{needle}'"
    if mode == "custom":
        return [t for t in with_needle if CUSTOM in t and DEFAULT_SYSTEM not in t]
    return [t for t in with_needle if "<|im_start|>system\n<|im_end|>" in t and DEFAULT_SYSTEM not in t]


@pytest.mark.parametrize("mode", MODES)
def test_rating_pairs_send_the_run_its_system_prompt_and_the_base_the_prompt_as_typed(ws, base, run_folders,
                                                                                      rendered, mode):
    from evaluation.generate import generate_answers, parse_arm, prompts_from_texts, resolve_arms
    items = prompts_from_texts([ASKED])
    base_model, arms = resolve_arms(ws, [parse_arm("base"), parse_arm(f"run:{run_folders[mode]}")], items=items)
    generate_answers(ws, items, arms, base_model=base_model, settings=SETTINGS)
    assert as_the_run_saw_it(rendered, mode)
    assert any(DEFAULT_SYSTEM in t for t in rendered if ASKED in t)     # the base keeps its template's default


@pytest.mark.parametrize("mode", MODES)
def test_automatic_metrics_and_regression_suites_answer_and_score_the_run_under_its_system_prompt(
        ws, base, run_folders, rendered, mode):
    from evaluation.auto import auto_evaluate
    from evaluation.regression import add_case, create_suite
    records = [Record(f"{split}{i}", [{"role": "user", "content": ASKED}, {"role": "assistant", "content": REFERENCE}],
                      {"split": split}) for i, split in enumerate(["train", "val", "test"])]
    version = create_version(ws, records, parent=None, step="split")
    add_case(ws, create_suite(ws, "shop"), CASE, [{"kind": "contains", "value": "Sunday"}])
    auto_evaluate(ws, str(run_folders[mode]), version.name, settings=SETTINGS, write_card=False)
    answered = [t for t in as_the_run_saw_it(rendered, mode) if REFERENCE not in t]
    scored = [t for t in as_the_run_saw_it(rendered, mode) if REFERENCE in t]      # perplexity of the reference
    assert answered and scored
    assert as_the_run_saw_it(rendered, mode, needle=CASE)


@pytest.mark.parametrize("mode", MODES)
def test_the_playground_gives_the_run_its_system_prompt_even_over_a_typed_one(ws, base, run_folders, rendered, mode):
    from evaluation.playground import answer_pair, matchup_for
    matchup = matchup_for(ws, str(run_folders[mode]))
    last = answer_pair(ws, matchup, [{"role": "user", "content": ASKED}], SETTINGS, system_prompt="Talk like a pirate.")
    assert last.status == "done"
    assert as_the_run_saw_it(rendered, mode)
    assert not any("pirate" in t for t in as_the_run_saw_it(rendered, mode))
    assert any("pirate" in t for t in rendered)                           # the base side gets what was typed


def _sft_run(ws: Workspace, base, mode: str):
    from training.job import run_training
    from training.registry import create_run
    records = [Record(f"{split}{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": REFERENCE}],
                      {"split": split})
               for i, (split, q) in enumerate([("train", "How do I fix a flat?"), ("train", "Do you sell helmets?"),
                                               ("val", "Are you open late?"), ("test", "Can I rent a bike?")])]
    version = create_version(ws, records, parent=None, step="split")
    sft = run_training(ws, create_run(ws, run_config(base, mode, datasets=version.name), name="sft").id)
    assert sft.status == "finished", sft.error
    return version, sft


def test_dpo_trains_on_prompts_under_the_runs_custom_system_prompt(tmp_path, base, rendered):
    from training.job import run_training
    from training.registry import create_run
    ws = Workspace.open(tmp_path / "workspace")
    version, sft = _sft_run(ws, base, "custom")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": q, "chosen": REFERENCE, "rejected": "No idea.",
                                         "meta": {"split": "train"}}) + "\n" for q in (ASKED, CASE)))
    rendered.clear()
    dpo = run_training(ws, create_run(ws, run_config(base, "custom", datasets=version.name, stage="dpo",
                                                     sft_run=str(sft.id), preferences=str(pairs)), name="dpo").id)
    assert dpo.status == "finished", dpo.error
    assert as_the_run_saw_it(rendered, "custom") and as_the_run_saw_it(rendered, "custom", needle=CASE)
    assert not any(DEFAULT_SYSTEM in t for t in rendered if ASKED in t)


def test_kto_trains_on_prompts_with_no_system_prompt_when_the_run_chose_none(tmp_path, base, rendered):
    from training.job import run_training
    from training.registry import create_run
    ws = Workspace.open(tmp_path / "workspace")
    version, sft = _sft_run(ws, base, "none")
    examples = tmp_path / "kto.jsonl"
    examples.write_text("".join(json.dumps({"prompt": q, "completion": answer, "label": good,
                                            "meta": {"split": "train"}}) + "\n"
                                for q, answer, good in ((ASKED, REFERENCE, True), (CASE, "No idea.", False))))
    rendered.clear()
    kto = run_training(ws, create_run(ws, run_config(base, "none", datasets=version.name, stage="kto",
                                                     sft_run=str(sft.id), kto_data=str(examples)), name="kto").id)
    assert kto.status == "finished", kto.error
    assert as_the_run_saw_it(rendered, "none") and as_the_run_saw_it(rendered, "none", needle=CASE)
    assert not any(DEFAULT_SYSTEM in t for t in rendered if ASKED in t)


def test_the_pii_leak_probe_asks_the_run_under_its_system_prompt(tmp_path, base, rendered):
    from evaluation.pii_leak import LeakCheckOptions, ScrubbedValue, _probe
    ws = Workspace.open(tmp_path / "workspace")
    _, sft = _sft_run(ws, base, "custom")
    rendered.clear()
    probe = ScrubbedValue("PHONE_NUMBER", "555 0100", "r1", 0, "user", [{"role": "user", "content": ASKED}], "")
    _probe(ws, sft, [probe], LeakCheckOptions(samples=0, max_new_tokens=2), None, None)
    assert as_the_run_saw_it(rendered, "custom")
    assert any(DEFAULT_SYSTEM in t for t in rendered if ASKED in t)     # the base is probed as it is
