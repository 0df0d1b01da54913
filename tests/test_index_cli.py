"""``python -m curation import`` builds the search index of a big version before it returns (``--no-index``
skips it) and Ctrl-C stops that build leaving no file; ``python -m curation index vN`` builds one or says it is
there."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.workspace import Workspace
from curation import cli
from curation.data import index as I
from curation.data import versions as V

ROOT = Path(__file__).resolve().parent.parent


def _write(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"c{i:06d}", "messages": [
                {"role": "user", "content": f"where is my parcel number {i}, it has been a week"},
                {"role": "assistant", "content": "it left the depot this morning and arrives tomorrow"}]}) + "\n")
    return path


def test_import_builds_the_index_of_a_big_version_before_it_returns(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(V, "BACKGROUND_INDEX_FROM", 50)
    monkeypatch.setattr(I, "BUILD_BATCH", 20)
    ws = tmp_path / "ws"
    assert cli.main(["--workspace", str(ws), "import", str(_write(tmp_path / "a.jsonl", 120))]) == 0
    out = capsys.readouterr().out
    v = V.get_version(Workspace.open(ws), "v1")
    assert f"search index of v1: " in out and I.built_index(Workspace.open(ws), "v1").count == 120
    assert I.index_path(Workspace.open(ws), v).exists()

    assert cli.main(["--workspace", str(ws), "import", str(_write(tmp_path / "b.jsonl", 60)), "--no-index"]) == 0
    assert "search index of v2 not built (--no-index)" in capsys.readouterr().out
    assert I.built_index(Workspace.open(ws), "v2") is None
    assert not [p for p in I.index_path(Workspace.open(ws), v).parent.iterdir() if "tmp" in p.name]

    small = tmp_path / "c.jsonl"
    assert cli.main(["--workspace", str(ws), "import", str(_write(small, 10))]) == 0
    assert "search index" not in capsys.readouterr().out        # a small one's is built on its first search


def test_the_index_command_builds_a_versions_index_or_says_it_is_built(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert cli.main(["--workspace", str(ws), "import", str(_write(tmp_path / "a.jsonl", 30))]) == 0
    capsys.readouterr()
    assert I.built_index(Workspace.open(ws), "v1") is None
    assert cli.main(["--workspace", str(ws), "index", "v1"]) == 0
    assert capsys.readouterr().out.startswith("built the search index of v1: ")
    assert I.built_index(Workspace.open(ws), "v1").search("parcel number 7")[0] == 3      # 7, 17, 27
    assert cli.main(["--workspace", str(ws), "index", "v1"]) == 0
    assert capsys.readouterr().out.startswith("the search index of v1 is built: ")


def test_ctrl_c_during_the_imports_index_build_stops_it_and_leaves_no_file(tmp_path):
    # five times the smallest size that builds an index, so the build is still running when the signal comes
    n = 5 * V.BACKGROUND_INDEX_FROM
    src = _write(tmp_path / "big.jsonl", n)
    ws = tmp_path / "ws"
    child = subprocess.Popen([sys.executable, "-m", "curation", "--workspace", str(ws), "import", str(src)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)},
                             # SIGINT as a terminal's process has it: an ignored signal stays ignored across exec,
                             # and in the full suite something in the test process leaves SIGINT ignored
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    folder = ws / I.INDEX_FOLDER
    deadline = time.monotonic() + 300
    while not (folder.exists() and any(folder.iterdir())):    # the build's temp file: the import is done
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 130, (out, err)
    # the signal comes as the build starts: inside the import's last step or in the wait for the build
    assert (f"imported {n} records" in out and "stopped: the search index of v1 was not built (no file left)" in err
            or f"stopped: v1 was imported ({n:,} records) but its search index was not built (no file left)" in err)
    assert "Traceback" not in err
    assert list(folder.iterdir()) == [] and V.get_version(Workspace.open(ws), "v1").num_records == n
