"""Which engine serves a run: vLLM only where vLLM and a CUDA GPU both are (this machine has neither, so the
vLLM engine itself is not run here), a refusal that names what is missing, and the LoRA size vLLM is given."""
from __future__ import annotations

import importlib.util

import pytest

from core.errors import TuneloopError
from training import serve as S


def _machine(monkeypatch, *, vllm: bool, cuda: bool, llamacpp: bool = True):
    real = S._importable
    monkeypatch.setattr(S, "_importable", lambda module: vllm if module == "vllm" else
                        (llamacpp if module == "llama_cpp" else real(module)))
    monkeypatch.setattr(S, "_cuda", lambda: cuda)
    monkeypatch.setattr(S, "_gguf_converter_present", lambda: llamacpp)


@pytest.mark.parametrize("vllm, cuda, llamacpp, chosen", [
    (True, True, True, "vllm"), (True, False, True, "llamacpp"), (False, True, True, "llamacpp"),
    (False, False, False, "transformers"), (True, False, False, "transformers")])
def test_auto_takes_vllm_only_with_vllm_and_a_gpu_else_llamacpp_else_transformers(monkeypatch, vllm, cuda,
                                                                                   llamacpp, chosen):
    _machine(monkeypatch, vllm=vllm, cuda=cuda, llamacpp=llamacpp)
    assert S.choose_engine("auto") == chosen


def test_asking_for_vllm_without_it_or_without_a_gpu_says_which_is_missing(monkeypatch):
    _machine(monkeypatch, vllm=False, cuda=True)
    with pytest.raises(TuneloopError, match=r"lacks vLLM \(pip install vllm\).*--engine llamacpp or transformers"):
        S.choose_engine("vllm")
    _machine(monkeypatch, vllm=True, cuda=False)
    with pytest.raises(TuneloopError, match="lacks a CUDA GPU"):
        S.choose_engine("vllm")
    _machine(monkeypatch, vllm=True, cuda=True)
    assert S.choose_engine("vllm") == "vllm"


def test_this_machine_as_it_is_never_picks_vllm():
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(TuneloopError, match="lacks vLLM"):
            S.choose_engine("vllm")
    assert S.choose_engine("auto") in ("llamacpp", "transformers")


def test_vllm_is_given_the_smallest_lora_size_it_has_that_holds_the_run_rank():
    assert [S.vllm_lora_rank(r) for r in (4, 8, 16, 24, 64, 300, 512)] == [8, 8, 16, 32, 64, 320, 512]
    with pytest.raises(TuneloopError, match="rank 1024 is above the 512 vLLM serves"):
        S.vllm_lora_rank(1024)
