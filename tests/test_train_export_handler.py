"""The Train tab's export handler: each choice of the radio (adapter, merged, archive, gguf with its quant)
reaches the export it names, in a fresh folder beside the run, and the message says where it went."""
from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import gradio as gr
import pytest

from curation.data.records import Record
from curation.data.versions import create_version
from training import export as E
from training import registry as R
from training import ui as train
from training.config import RunConfig
from tests.test_serve_ui import adapter  # noqa: F401  (fixture)


@pytest.fixture
def exported(ws, adapter):
    base, folder = adapter
    records = [Record(f"r{i}", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ok"}],
                      {"split": split}) for i, split in enumerate(["train"] * 4 + ["val", "test"])]
    create_version(ws, records, parent=None, step="split")
    run = R.create_run(ws, RunConfig(base_model=str(base), datasets="v1"), name="ship me")
    shutil.copytree(folder, run.adapter_dir)
    R.update_run(ws, run.id, status="finished")
    with gr.Blocks():
        with gr.Tabs():
            w = train.build_train_tab(ws)
    heard = []

    def export(choice):
        return train.export(ws, w, {w.selected: str(run.id), w.export_kind: choice},
                            progress=lambda fraction, desc="": heard.append(desc))
    return ws, w, R.get_run(ws, run.id), export, heard


def test_adapter_merged_and_archive_choices_write_their_exports(exported):
    ws, w, run, export, heard = exported
    out = export("adapter")
    path = run.run_dir / "export-adapter"
    assert out[w.export_msg] == f"Adapter written to `{path}`." and out[w.export_file]["visible"] is False
    assert json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"] == run.base_model
    again = export("adapter")
    assert again[w.export_msg] == f"Adapter written to `{run.run_dir / 'export-adapter-1'}`."
    merged = export("merged")
    assert merged[w.export_msg] == f"Merged written to `{run.run_dir / 'export-merged'}`."
    assert (run.run_dir / "export-merged" / "config.json").is_file() and "merging the adapter" in heard[0]
    archive = export("archive")
    shown = archive[w.export_file]
    assert archive[w.export_msg] == f"Archive of {html.escape(run.label)} ready."
    assert shown["visible"] is True and shown["value"].endswith(f"run-{run.id}.tar.gz")
    assert Path(shown["value"]).is_file()
    assert set(R.get_run(ws, run.id).artefacts) >= {"export_adapter", "export_merged", "export_archive"}


@pytest.mark.parametrize("choice, quant", [("gguf f16", "f16"), ("gguf q8_0", "q8_0"), ("gguf q4_k_m", "q4_k_m")])
def test_each_gguf_choice_asks_for_its_quant(exported, monkeypatch, choice, quant):
    ws, w, run, export, _ = exported
    asked = []

    def convert(ws_, run_, out, *, quant, progress=None):      # llama.cpp's conversion itself: tests/test_gguf.py
        asked.append(quant)
        Path(out).mkdir()
        return Path(out)

    monkeypatch.setattr(E, "export_gguf", convert)
    out = export(choice)
    assert asked == [quant]
    assert out[w.export_msg] == f"Gguf written to `{run.run_dir / f'export-gguf-{quant}'}`."
    assert R.get_run(ws, run.id).artefacts["export_gguf"] == str(run.run_dir / f"export-gguf-{quant}")


def test_no_run_chosen_and_an_unfinished_run_say_what_to_do(exported, ws):
    _, w, run, export, _ = exported
    assert train.export(ws, w, {w.selected: None, w.export_kind: "adapter"})[w.export_msg] == "Choose a run first."
    shutil.rmtree(run.adapter_dir)
    R.update_run(ws, run.id, status="stopped")
    assert "only a finished run can be exported; resume it to finish" in export("adapter")[w.export_msg]
