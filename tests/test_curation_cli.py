"""The curation CLI against a real temporary workspace, as a user would run it."""
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import chat, write_jsonl

ROOT = Path(__file__).resolve().parent.parent


def cli(ws, *args):
    return subprocess.run([sys.executable, "-m", "curation", "--workspace", str(ws), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_round_trip(tmp_path):
    ws = tmp_path / "ws"
    src = write_jsonl(tmp_path / "a.jsonl", [chat("where is ORD-1?", "on its way", id="t1", label="order"),
                                             chat("refund please", "done", id="t2", label="refund")])
    out = cli(ws, "import", src)
    assert out.returncode == 0, out.stderr
    assert "imported 2 records (messages) as v1" in out.stdout
    extra = write_jsonl(tmp_path / "b.jsonl", [chat("hello", "hi", id="t3")])
    assert cli(ws, "import", extra, "--append").returncode == 0
    listing = cli(ws, "versions").stdout
    assert "* v2 ← v1 · import · 3 records" in listing and "  v1 · import · 2 records" in listing
    shown = cli(ws, "show", "v2", "--search", "refund").stdout
    assert "1 records match 'refund'" in shown and '"id": "t2"' in shown
    diff = cli(ws, "diff", "v1", "v2").stdout
    assert "1 added, 0 removed, 0 changed, 2 unchanged" in diff and "+ t3" in diff
    assert cli(ws, "export", "v2", tmp_path / "out.jsonl").returncode == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["t1", "t2", "t3"]
    assert cli(ws, "export", "v2", tmp_path / "hf", "--format", "hf").returncode == 0
    assert (tmp_path / "hf" / "dataset_dict.json").exists()
    assert "current version is now v1" in cli(ws, "rollback", "v1").stdout
    assert "* v1" in cli(ws, "versions").stdout


def test_cli_bad_input_exits_nonzero_with_line_numbers(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(chat("q", "a")) + "\n" + json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n")
    out = cli(tmp_path / "ws", "import", bad)
    assert out.returncode == 1
    assert "bad.jsonl: 1 problem(s) found; nothing was imported." in out.stderr
    assert "line 2: messages[0].role is 'bot'; expected system, user, assistant or tool" in out.stderr
    assert "no versions yet" in cli(tmp_path / "ws", "versions").stdout
    out = cli(tmp_path / "ws", "show", "v7")
    assert out.returncode == 1 and "no version v7" in out.stderr


def test_cli_csv_with_column_mapping(tmp_path):
    src = tmp_path / "faq.csv"
    src.write_text("ticket,q,a\nT1,where?,here\n")
    out = cli(tmp_path / "ws", "import", src, "--columns", "prompt=q,completion=a,id=ticket")
    assert out.returncode == 0, out.stderr
    assert '"id": "T1"' in cli(tmp_path / "ws", "show", "v1").stdout


def test_cli_demo_dataset(tmp_path):
    out = cli(tmp_path / "ws", "demo")
    assert out.returncode == 0, out.stderr
    assert "600 records" in out.stdout


def test_show_pages_and_searches_without_loading_the_version(tmp_path, monkeypatch, capsys):
    """`show --search` reads the page through the version's index (or, before it is built, streams the snapshot);
    it finds what a full scan finds, counts all matches, and never loads every record."""
    from core.workspace import Workspace
    from curation import cli as curation_cli
    from curation.data import versions as V
    from curation.data.index import built_index, record_index

    rows = [chat(f"parcel {i} is late" if i % 3 else f"refund for order {i}", "sorry", id=f"r{i}") for i in range(40)]
    ws_dir = tmp_path / "ws"
    assert cli(ws_dir, "import", write_jsonl(tmp_path / "a.jsonl", rows), "--no-index").returncode == 0
    ws = Workspace.open(ws_dir)
    expected = [r.id for r in V.search_records(V.load_records(ws, 1), "refund")]
    assert len(expected) == 14

    def refuse(*_a, **_k):
        raise AssertionError("show loaded every record of the version")

    monkeypatch.setattr(V, "load_records", refuse)
    for state in ("snapshot", "index"):
        if state == "index":
            record_index(ws, 1)
        assert (built_index(ws, 1) is not None) == (state == "index")
        assert curation_cli.main(["--workspace", str(ws_dir), "show", "v1", "--search", "refund", "--offset", "3",
                                  "--limit", "4"]) == 0
        out = capsys.readouterr().out
        assert "14 records match 'refund'" in out, state
        assert [json.loads(line)["id"] for line in out.splitlines() if line.startswith("{")] == expected[3:7], state
