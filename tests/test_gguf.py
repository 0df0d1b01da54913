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


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """A finished 2-step run on the default model (its adapter moves the answers a little)."""
    from core.workspace import Workspace
    from tests.default_run import train_default_run
    root = tmp_path_factory.mktemp("gguf")
    ws = Workspace.open(root / "ws")
    return ws, train_default_run(ws, root, seed=5, steps=2, val=2, eval_steps=0)


QUESTIONS = ["How do I reset my password?", "Where is my order?", "Can I get a refund for a broken mug?"]


def greedy_pairs(gguf_path, merged_folder, tokens: int):
    """(transformers ids, llama.cpp ids) of greedy answers to QUESTIONS: transformers on the merged folder with
    its weights rounded to float16 (the f16 file's weights, computed in float32), llama.cpp on the GGUF, both
    from the same prompt token ids."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(merged_folder)
    model = AutoModelForCausalLM.from_pretrained(merged_folder, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    llm = Llama(model_path=str(gguf_path), n_ctx=512, n_threads=2, verbose=False)
    pairs = []
    for question in QUESTIONS:
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids     # the vocabulary came across
        with torch.no_grad():
            ours = model.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False,
                                  eos_token_id=tokenizer.eos_token_id)[0, len(ids):].tolist()
        llm.reset()
        theirs = []
        for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0):
            theirs.append(token)
            if len(theirs) == tokens or token == tokenizer.eos_token_id:
                break
        pairs.append((ours, theirs))
    return pairs


@pytest.mark.slow
def test_a_merged_default_run_as_f16_gguf_answers_like_transformers(default_run, tmp_path):
    from gguf import GGUFReader
    from training.export import export_merged, export_run
    ws, run = default_run
    phases = []
    folder = export_run(ws, run.id, "gguf", tmp_path / "gguf", progress=lambda f, text: phases.append((f, text)))
    # each phase may report several times (the merge's own steps, the converter's tensors): they come in order
    words = [text.split(" ")[0] for _, text in phases]
    assert [w for i, w in enumerate(words) if i == 0 or words[i - 1] != w] == ["merging", "converting", "writing"]
    assert [f for f, _ in phases] == sorted(f for f, _ in phases)    # the bar only moves forward
    gguf = folder / f"run-{run.id}-f16.gguf"
    modelfile = (folder / "Modelfile").read_text()
    assert modelfile.startswith(f'FROM ./{gguf.name}\nTEMPLATE """{CHATML_GO}"""\nPARAMETER stop "<|im_end|>"\n')
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in modelfile
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in (folder / "README.md").read_text()
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o644}
    fields = GGUFReader(gguf).fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    cached = G.run_gguf(ws, run)
    assert cached.stat().st_ino == gguf.stat().st_ino               # made once, linked into the export
    merged = export_merged(ws, run, tmp_path / "merged")
    pairs = greedy_pairs(gguf, merged, tokens=32)
    # Same weights, different kernels (llama.cpp's f16 matmuls): answers agree token for token until a near-tie
    # flips; at this commit two of three answers agree on all 32 tokens and the third on its first 14.
    agreed = [next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
              for ours, theirs in pairs]
    assert all(n >= 12 for n in agreed), agreed
    assert sum(len(ours) for ours, _ in pairs) >= 60                  # real answers, not an early stop


@pytest.mark.slow
def test_q4_k_m_and_a_gguf_lora_from_the_same_run(default_run, tmp_path):
    from gguf import GGUFReader, LlamaFileType
    from llama_cpp import Llama
    from training.models import resolve_base_model
    ws, run = default_run
    small = G.run_gguf(ws, run, quant="q4_k_m")
    assert int(GGUFReader(small).fields["general.file_type"].parts[-1][0]) == LlamaFileType.MOSTLY_Q4_K_M
    assert small.stat().st_size < 0.7 * G.run_gguf(ws, run).stat().st_size
    base = resolve_base_model("default", ws).path
    lora = G.convert_adapter(run.adapter_dir, base, tmp_path / "adapter.gguf")
    assert bytes(GGUFReader(lora).fields["general.type"].parts[-1]).decode() == "adapter"
    base_gguf = G.convert_model(base, tmp_path / "base-f16.gguf")
    prompt = "<|im_start|>user\nWhere is my order?<|im_end|>\n<|im_start|>assistant\n"
    answers = {}
    for name, kwargs in (("merged", dict(model_path=str(G.run_gguf(ws, run)))),
                         ("base+lora", dict(model_path=str(base_gguf), lora_path=str(lora))),
                         ("q4_k_m", dict(model_path=str(small)))):
        llm = Llama(n_ctx=256, n_threads=2, verbose=False, **kwargs)
        answers[name] = llm(prompt, max_tokens=12, temperature=0.0, top_k=1)["choices"][0]["text"]
    assert answers["base+lora"] == answers["merged"] and answers["q4_k_m"].strip()
