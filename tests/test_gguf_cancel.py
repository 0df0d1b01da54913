"""Cancelling a GGUF export: llama.cpp's converter (and quantizer) really run on the default model, and the
Train tab's Cancel export, a progress callback that raises, or Ctrl-C on ``python -m training export`` end the
subprocess under way and leave no file behind, saying so."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import pytest

from curation.data.records import Record
from curation.data.versions import create_version
from training import gguf as G
from training import registry as R
from training.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base():
    """The default model's folder (converted once into the per-user cache, shared with the other tests)."""
    pytest.importorskip("llama_cpp")
    from training.models import resolve_base_model
    return Path(resolve_base_model("default", None).path)


@pytest.fixture
def started(monkeypatch):
    """Every subprocess the export starts, to check afterwards that none is left running."""
    procs = []
    real = subprocess.Popen

    class Recorded(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            procs.append(self)

    monkeypatch.setattr(G.subprocess, "Popen", Recorded)
    return procs


def _cancel_when(phase: str, heard: list):
    """A progress callback that raises at the first report after ``phase`` began: while its subprocess runs."""
    def progress(fraction, text):
        heard.append(text)
        if heard.count(text) > 1 and text.startswith(phase):
            raise G.ExportCancelled("cancelled by the test")
    return progress


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_cancelling_the_conversion_ends_the_converter_and_leaves_no_file(base, tmp_path, started):
    heard = []
    with pytest.raises(G.ExportCancelled):
        G.convert_model(base, tmp_path / "model.gguf", quant="f16", progress=_cancel_when("converting", heard))
    assert heard[0] == "converting to GGUF (f16) with llama.cpp's converter" and len(started) == 1
    assert started[0].returncode == -signal.SIGTERM           # ended, not left converting
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_cancelling_the_quantizer_ends_it_after_a_real_conversion_and_leaves_no_file(base, tmp_path, started):
    heard = []
    with pytest.raises(G.ExportCancelled):
        G.convert_model(base, tmp_path / "model.gguf", quant="q4_k_m", progress=_cancel_when("quantizing", heard))
    converter, quantizer = started
    assert converter.returncode == 0                           # the f16 file was really made ...
    assert quantizer.returncode == -signal.SIGTERM             # ... and its quantization stopped
    assert _leftovers(tmp_path) == []                          # the f16 temp file went too


@pytest.fixture
def run_ws(ws, base):
    """A finished run on the default model with a small random adapter."""
    from tests.tiny_model import make_adapter
    records = [Record(f"r{i}", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ok"}],
                      {"split": split}) for i, split in enumerate(["train"] * 4 + ["val", "test"])]
    create_version(ws, records, parent=None, step="split")
    run = R.create_run(ws, RunConfig(base_model=str(base), datasets="v1"), name="ship me")
    make_adapter(base, run.adapter_dir, seed=3)
    R.update_run(ws, run.id, status="finished")
    return ws, R.get_run(ws, run.id)


@pytest.mark.slow
def test_cancel_export_in_the_train_tab_stops_the_conversion_and_says_nothing_was_left(run_ws, started):
    from training import ui as train
    ws, run = run_ws
    with gr.Blocks():
        with gr.Tabs():
            w = train.build_train_tab(ws)
    said = []

    def progress_pressing_cancel(fraction, desc=""):
        if desc.startswith("converting") and not said:
            said.append(train.cancel_export(ws, w)[w.export_msg])

    out = train.export(ws, w, {w.selected: str(run.id), w.export_kind: "gguf f16"}, progress=progress_pressing_cancel)
    assert said == ["Cancelling…"]
    assert out[w.export_msg] == ("⏹ The gguf export was cancelled: what was under way was stopped and no partial "
                                 "file was left.")
    assert [p.returncode for p in started] == [-signal.SIGTERM]
    assert not list(run.run_dir.glob("export-gguf*")) and not list(run.run_dir.glob(".*tmp*"))
    assert not (run.run_dir / "gguf").exists() or _leftovers(run.run_dir / "gguf") == []
    assert train.cancel_export(ws, w)[w.export_msg] == "No export of yours is running."


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal's process has it. An ignored signal stays ignored across exec,
    and in the full suite something in the test process leaves SIGINT ignored, so the CLI would never hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _converters(pid: int) -> list[int]:
    """The CLI's children that are llama.cpp's converter (a library may start other short-lived processes)."""
    found = []
    for child in _children(pid):
        try:
            if b"convert" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            pass
    return found


@pytest.mark.slow
def test_ctrl_c_on_the_cli_export_stops_the_converter_and_leaves_no_file(run_ws):
    ws, run = run_ws
    # A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the CLI and its converter.
    cli = subprocess.Popen([sys.executable, "-m", "training", "export", str(run.id), "--kind", "gguf",
                            "--workspace", str(ws.root), "--out", str(ws.root / "out")],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 600
    while not _converters(cli.pid) and cli.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)                                        # merging first, in the CLI's own process
    converter = _converters(cli.pid)
    assert converter, cli.communicate()
    os.killpg(cli.pid, signal.SIGINT)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 130, err
    assert err.strip().endswith("export cancelled: the conversion under way was stopped and no partial file "
                                "was left") and "Traceback" not in err
    assert not Path(f"/proc/{converter[0]}").exists() or "zombie" in Path(f"/proc/{converter[0]}/status").read_text()
    assert not (ws.root / "out").exists()
    assert not list(run.run_dir.glob(".*tmp*")) and (not (run.run_dir / "gguf").exists()
                                                       or _leftovers(run.run_dir / "gguf") == [])
