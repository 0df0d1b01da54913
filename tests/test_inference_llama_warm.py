"""The llama.cpp engine keeps its contexts warm: a prompt that starts like a context's last one evaluates only
its new tokens (and answers as a fresh context does), an adapter switch drops the cached keys and values, and
with a thread per row the two sides read their prompts at the same time."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.tiny_model import make_adapter
from training.inference import DecodingSettings, LlamaCppModel, WarmBase
from training.models import resolve_base_model

SETTINGS = DecodingSettings(max_new_tokens=10)
FIRST = [{"role": "user", "content": "My parcel is late. What can I do?"}]
SECOND = [{"role": "user", "content": "Which payment cards are accepted?"}]
AGREE = 4       # a cached start is evaluated in other batch sizes: rounding may part the answers at a near tie


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """The default model in llama.cpp with a LoRA that changes its answers; (warm base, adapter name)."""
    pytest.importorskip("llama_cpp")
    root = tmp_path_factory.mktemp("warm")
    resolved = resolve_base_model("default", None)
    warm = WarmBase(resolved, engine="llama.cpp", cache_dir=root / "cache")
    tuned = warm.add_adapter(make_adapter(Path(resolved.path), root / "adapter", seed=7))
    warm.answer([FIRST], adapter=tuned, settings=DecodingSettings(max_new_tokens=1))     # loads and converts
    return warm, tuned


def _rows(warm: WarmBase, conversation, adapter):
    return [(warm._prompt_ids(warm.tokenizer, [conversation])[0], adapter)]


def _fresh(warm: WarmBase, conversation, adapter) -> list[int]:
    """The answer from a model with no context used before."""
    model = LlamaCppModel(warm.llama.path, threads=1)
    if adapter:
        model.add_adapter(adapter, warm._adapter_gguf(adapter))
    try:
        return model.generate(_rows(warm, conversation, adapter), SETTINGS, stop_ids=warm._stop_ids())[0]
    finally:
        model.close()


def _evaluated(monkeypatch, model: LlamaCppModel) -> list[int]:
    """Records how many tokens each llama.cpp decode evaluates."""
    sizes: list[int] = []
    decode = model._llama.llama_decode

    def counted(ctx, batch):
        sizes.append(batch.n_tokens)
        return decode(ctx, batch)

    monkeypatch.setattr(model._llama, "llama_decode", counted)
    return sizes


def test_a_prompt_starting_like_the_last_one_evaluates_only_what_is_new(warm, monkeypatch):
    warm, tuned = warm
    model, stops = warm.llama, warm._stop_ids()
    for adapter in (None, tuned):
        model.generate(_rows(warm, FIRST, adapter), SETTINGS, stop_ids=stops)
        sizes = _evaluated(monkeypatch, model)
        answer = model.generate(_rows(warm, SECOND, adapter), SETTINGS, stop_ids=stops)[0]
        prompt = _rows(warm, SECOND, adapter)[0][0]
        assert sizes[0] < len(prompt) - 10            # the chat template's system turn was cached
        assert answer[:AGREE] == _fresh(warm, SECOND, adapter)[:AGREE]
        monkeypatch.undo()


def test_switching_a_context_to_another_adapter_drops_its_cache(warm, monkeypatch):
    warm, tuned = warm
    model, stops = warm.llama, warm._stop_ids()
    model.generate(_rows(warm, FIRST, None), SETTINGS, stop_ids=stops)
    with model._contexts_lock:
        kept = [c for c in model._contexts if c.adapter is None][:1]
        model._contexts[:] = kept                 # one idle context, last used without the adapter
    sizes = _evaluated(monkeypatch, model)
    answer = model.generate(_rows(warm, SECOND, tuned), SETTINGS, stop_ids=stops)[0]
    assert sizes[0] == len(_rows(warm, SECOND, tuned)[0][0])
    assert answer[:AGREE] == _fresh(warm, SECOND, tuned)[:AGREE]


def test_with_a_thread_per_row_both_sides_answer_at_the_same_time(warm):
    warm, tuned = warm
    model, stops = warm.llama, warm._stop_ids()
    rows = _rows(warm, SECOND, None) + _rows(warm, SECOND, tuned)
    for threads, apart in ((1, False), (2, True)):
        for ctx in model._contexts:              # both read the whole prompt, as a fresh context does
            ctx.kv_cache_clear()
            ctx.tokens = []
        seen: dict[int, set[int]] = {0: set(), 1: set()}
        answers = model.generate(rows, SETTINGS, stop_ids=stops, threads=threads,
                                 on_token=lambda row, token: seen[row].add(threading.get_ident()))
        assert answers == [_fresh(warm, SECOND, None), _fresh(warm, SECOND, tuned)]
        if apart:
            assert len(seen[0] | seen[1]) == 2 and threading.get_ident() not in seen[0] | seen[1]
        else:
            assert seen[0] == seen[1] == {threading.get_ident()}
