"""Base-model resolution: the default GGUF model offline, local folders, and errors a user can act on."""
from __future__ import annotations

import pytest

from core.errors import TuneloopError
from core.workspace import Workspace
from tests.tiny_model import build_tiny_model
from training.inference import DecodingSettings, WarmBase
from training.models import load_model_and_tokenizer, resolve_base_model


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


@pytest.mark.slow
def test_default_model_resolves_once_and_answers_offline(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    resolved = resolve_base_model("default", ws)
    assert resolved.source == "default" and resolved.name == "SmolLM2-135M-Instruct"
    assert (ws.path("models") / resolved.path.split("/")[-1] / "model.safetensors").is_file()
    assert len(resolved.revision) == 64
    folder_time = (ws.path("models") / resolved.path.split("/")[-1] / "config.json").stat().st_mtime_ns
    again = resolve_base_model("DEFAULT", ws)
    assert again == resolved
    assert (ws.path("models") / resolved.path.split("/")[-1] / "config.json").stat().st_mtime_ns == folder_time
    assert not [p for p in ws.path("models").iterdir() if p.name.startswith(".")]

    model, tokenizer = load_model_and_tokenizer(resolved, device="cpu")
    assert "<|im_start|>" in tokenizer.chat_template
    [reply] = WarmBase.wrap(model, tokenizer).answer([[{"role": "user", "content": "What is the capital of France?"}]],
                                                     settings=DecodingSettings(max_new_tokens=12))
    assert "Paris" in reply


def test_local_folder_resolves_with_a_stable_fingerprint_and_loads_in_4bit(tmp_path):
    folder = build_tiny_model(tmp_path / "tiny")
    first = resolve_base_model(str(folder))
    assert first.source == "folder" and first.name == "tiny" and first.path == str(folder)
    assert resolve_base_model(str(folder)).revision == first.revision
    model, tokenizer = load_model_and_tokenizer(first, load_in_4bit=True, device="cpu")
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert tokenizer.pad_token is not None


@pytest.mark.parametrize("name, says", [
    ("./no/such/model", "folder './no/such/model' does not exist"),
    ("/tmp/nowhere-at-all/model.gguf", "does not exist; give the path of a .gguf file"),
    ("not a model!", "use 'default', a model folder"),
])
def test_names_that_point_nowhere_say_what_to_use(name, says):
    with pytest.raises(TuneloopError) as err:
        resolve_base_model(name)
    assert says in str(err.value)


def test_folder_without_config_is_explained(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(TuneloopError, match="no config.json"):
        resolve_base_model(str(tmp_path / "weights"))
    (tmp_path / "weights" / "config.json").write_text("{}")
    with pytest.raises(TuneloopError, match="no weights"):
        resolve_base_model(str(tmp_path / "weights"))


def test_hub_id_not_in_cache_fails_clearly_offline():
    with pytest.raises(TuneloopError, match="not in the local Hugging Face cache"):
        resolve_base_model("SomeOrg/some-model-7b")


def test_broken_gguf_file_is_reported(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(TuneloopError, match="could not convert the GGUF file"):
        resolve_base_model(str(bad), Workspace.open(tmp_path / "ws"))
    assert not [p for p in (tmp_path / "ws" / "models").iterdir()]
