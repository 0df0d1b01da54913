"""The GGUF export's Ollama Modelfile carries the system prompt the run was trained with: custom text, none,
or (template/records modes) the records' most common one when every record had one, else the template's."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from training import gguf as G
from training.config import RunConfig
from training.export import run_system_prompt
from tests.tiny_model import build_tiny_model

TESSA = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
         "{{ '<|im_start|>system\\nYou are Tessa, a support bot.<|im_end|>\\n' }}{% endif %}"
         "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def split_folder(path, systems):
    """A split folder whose train.jsonl has one conversation per entry of ``systems`` (None: no system turn)."""
    path.mkdir()
    lines = []
    for i, system in enumerate(systems):
        turns = [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
        lines.append(json.dumps({"messages": ([{"role": "system", "content": system}] if system else []) + turns}))
    (path / "train.jsonl").write_text("\n".join(lines) + "\n")
    (path / "val.jsonl").write_text(lines[0] + "\n")
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("tiny") / "m"))
    tok.chat_template = TESSA
    return tok


def modelfile_system(tmp_path, tokenizer, mode, systems, custom=""):
    run = SimpleNamespace(config=RunConfig(datasets=str(split_folder(tmp_path / "split", systems)),
                                           system_prompt_mode=mode, system_prompt=custom))
    system, origin = run_system_prompt(None, run, tokenizer)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    text = G.write_modelfile(gguf, tokenizer, tmp_path, system=system).read_text()
    lines = [line for line in text.splitlines() if line.startswith("SYSTEM")]
    return lines, origin


def test_custom_mode_writes_the_runs_own_prompt(tmp_path, tokenizer):
    lines, origin = modelfile_system(tmp_path, tokenizer, "custom", ["Be terse.", None], custom="Answer as Acme.")
    assert lines == ['SYSTEM """Answer as Acme."""'] and "custom" in origin


def test_none_mode_writes_no_system_even_where_the_template_has_a_default(tmp_path, tokenizer):
    lines, origin = modelfile_system(tmp_path, tokenizer, "none", ["Be terse.", "Be terse."])
    assert lines == [] and origin.startswith("no SYSTEM")


@pytest.mark.parametrize("mode", ["template", "records"])
def test_every_record_with_a_prompt_gives_the_most_common_one(tmp_path, tokenizer, mode):
    lines, origin = modelfile_system(tmp_path, tokenizer, mode, ["Be terse.", "Be kind.", "Be terse."])
    assert lines == ['SYSTEM """Be terse."""']
    assert origin == "SYSTEM is the most common system prompt of the 3 training records (2 of them have it)"


def test_a_record_without_a_prompt_falls_back_to_the_template_default(tmp_path, tokenizer):
    lines, origin = modelfile_system(tmp_path, tokenizer, "template", ["Be terse.", None, "Be terse."])
    assert lines == ['SYSTEM """You are Tessa, a support bot."""'] and "template's default" in origin
