"""GGUF export: llama.cpp's converters on a merged default-model run (greedy answers checked against
transformers on the same weights), the LoRA adapter as a GGUF LoRA, q4_k_m, and the Ollama Modelfile."""
from __future__ import annotations

import sys

import pytest

from core.errors import TuneloopError
from training import gguf as G
from tests.tiny_model import build_tiny_model

# Written by hand from Ollama's template docs: the ChatML wrapping of each role, then the assistant's opening.
CHATML_GO = ('{{ range .Messages }}'
             '{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}<|im_end|>\n'
             '{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
             '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}<|im_end|>\n'
             '{{ end }}{{ end }}<|im_start|>assistant\n')

LLAMA3_JINJA = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n'"
                " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


def test_modelfile_for_a_chatml_model_has_its_template_stop_and_relative_gguf(tmp_path):
    from transformers import AutoTokenizer
    folder = build_tiny_model(tmp_path / "tiny")
    gguf = tmp_path / "out" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    path = G.write_modelfile(gguf, AutoTokenizer.from_pretrained(folder), gguf.parent)
    text = path.read_text()
    assert text == f'FROM ./model.gguf\nTEMPLATE """{CHATML_GO}"""\nPARAMETER stop "<|im_end|>"\n'
    assert path.stat().st_mode & 0o777 == 0o644
    with_system = G.write_modelfile(gguf, str(folder), tmp_path, system="Answer as Acme support.").read_text()
    assert with_system.startswith(f"FROM {gguf.resolve()}\n")
    assert with_system.endswith('SYSTEM """Answer as Acme support."""\n')


def test_ollama_template_from_a_llama3_style_jinja_template():
    go, default_system, stops = G.ollama_template(LLAMA3_JINJA)
    assert go == ('{{ range .Messages }}'
                  '{{ if eq .Role "system" }}<|start_header_id|>system<|end_header_id|>\n\n{{ .Content }}<|eot_id|>'
                  '{{ else if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Content }}<|eot_id|>'
                  '{{ else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>\n\n'
                  '{{ .Content }}<|eot_id|>{{ end }}{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n')
    assert (default_system, stops) == ("", ["<|eot_id|>"])


def test_a_template_with_a_default_system_prompt_gives_the_modelfile_a_system_line():
    template = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
                "{{ '<|im_start|>system\\nYou are Tessa, a support bot.<|im_end|>\\n' }}{% endif %}"
                "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    go, default_system, stops = G.ollama_template(template)
    assert go == CHATML_GO and default_system == "You are Tessa, a support bot." and stops == ["<|im_end|>"]


def test_unknown_quant_and_missing_converter_say_what_to_do(tmp_path, monkeypatch):
    folder = build_tiny_model(tmp_path / "tiny")
    with pytest.raises(TuneloopError, match="choose one of f16, q8_0, q4_k_m"):
        G.convert_model(folder, tmp_path / "m.gguf", quant="q3")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "bare-venv"))
    with pytest.raises(TuneloopError, match="convert_hf_to_gguf.py is missing; run `make setup`"):
        G.convert_model(folder, tmp_path / "m.gguf")
    assert not list(tmp_path.glob("*m.gguf*"))


def test_a_converter_failure_names_the_folder_and_leaves_no_file(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["NoSuchModelForCausalLM"]}')
    with pytest.raises(TuneloopError, match="could not convert the model folder .*broken"):
        G.convert_model(folder, tmp_path / "m.gguf")
    assert not list(tmp_path.glob("*m.gguf*"))
