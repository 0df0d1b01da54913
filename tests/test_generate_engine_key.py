"""The generation cache keys an answer by the engine that gave it: when a run's adapter cannot be converted to
a GGUF LoRA, transformers answers for it, and the answer is cached under transformers' key, not llama.cpp's."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.errors import TuneloopError
from core.workspace import Workspace
from evaluation.generate import cache_key, generate_pairs, prompts_from_texts
from curation.data.records import canonical_json
from training.inference import DecodingSettings, WarmBase, adapter_fingerprint, default_pool
from training.models import resolve_base_model
from tests.tiny_model import make_adapter

SETTINGS = DecodingSettings(max_new_tokens=4)


def _key(identity, messages, adapter_identity):
    parts = [identity, SETTINGS.validate().to_dict(), messages, adapter_identity]
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def test_an_adapter_that_fails_to_convert_is_cached_under_the_transformers_key(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    monkeypatch.delenv("TUNELOOP_ENGINE", raising=False)
    ws = Workspace.open(tmp_path / "ws")
    adapter = make_adapter(Path(resolve_base_model("default", ws).path), tmp_path / "adapter", seed=4)

    def broken(self, name):
        raise TuneloopError(f"llama.cpp's LoRA converter failed on {name}")

    monkeypatch.setattr(WarmBase, "_adapter_gguf", broken)
    items = prompts_from_texts(["Where is my order?"])
    base, tuned = generate_pairs(ws, items, base_model="default", adapter=adapter, settings=SETTINGS)[0]
    model = default_pool().get(ws, "default")
    name = model.add_adapter(adapter)
    assert model.engine == "llama.cpp" and model.engine_for([None]) == "llama.cpp"
    assert model.engine_for([name]) == "transformers"           # the conversion failed: transformers answered
    cached = dict(ws.db.execute("select key, response from generation_cache").fetchall())
    messages, fingerprint = items[0].messages, adapter_fingerprint(adapter)
    plain = {k: v for k, v in model.identity.items() if k != "engine"}
    assert cached[_key(plain, messages, fingerprint)] == tuned
    assert _key({**plain, "engine": "llama.cpp"}, messages, fingerprint) not in cached
    assert cached[_key({**plain, "engine": "llama.cpp"}, messages, "base")] == base
    assert cache_key(model, SETTINGS.validate(), messages, adapter_identity=fingerprint, adapter=name) \
        == _key(plain, messages, fingerprint)
