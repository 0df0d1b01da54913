"""Exports that train correctly: one file per split in every format, meta as one shape, and the round trip
export → datasets → trl (SFTTrainer on a split version, DPOTrainer on a preference version) on a tiny model."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import TuneloopError
from curation.data import versions as V
from curation.data.records import Record
from tests.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["Where is my order?", "Can I get a refund?", "How do I reset my password?", "Is the shop open today?",
             "Do you ship abroad?", "My parcel is damaged", "Change my address", "Cancel my subscription",
             "The app will not start", "I was charged twice"]
SPLIT_OF = ["train"] * 6 + ["val"] * 2 + ["test"] * 2


def support_split() -> list[Record]:
    """Ten support conversations, six train, two val, two test; meta keys differ between records and one key
    (``ticket``) is a number in some and text in others."""
    out = []
    for i, (question, split) in enumerate(zip(QUESTIONS, SPLIT_OF)):
        meta = {"split": split, "label": "order" if i % 2 else "account", "ticket": i if i < 5 else f"T-{i}"}
        if i % 3 == 0:
            meta["tags"] = ["urgent", "vip"][: 1 + i % 2]
        out.append(Record(f"s{i}", [{"role": "system", "content": "You are Lumio support."},
                                    {"role": "user", "content": question},
                                    {"role": "assistant", "content": f"Thanks for asking; answer number {i}."}], meta))
    return out


def curation_cli(ws, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation", "--workspace", str(ws.root), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def present(meta: dict) -> dict:
    """A struct's fields that the record has (Arrow gives null for the keys only other records have)."""
    return {k: v for k, v in meta.items() if v is not None}


@pytest.fixture
def split_version(ws):
    return V.create_version(ws, support_split(), parent=None, step="split")


def test_a_split_version_is_one_file_per_split_in_every_format(ws, tmp_path, split_version):
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    want = {"train": 6, "validation": 2, "test": 2}
    rows = {}
    for fmt in ("jsonl", "csv", "parquet"):
        done = V.export_version(ws, split_version.id, tmp_path / fmt, fmt)
        assert sorted(p.name for p in done.path.iterdir()) == sorted(f"{s}.{fmt}" for s in want)
        assert done.counts == want
    rows["jsonl"] = {s: jsonl(tmp_path / "jsonl" / f"{s}.jsonl") for s in want}
    assert {s: len(part) for s, part in rows["jsonl"].items()} == want
    by_id = {r.id: r for r in support_split()}
    for split, part in rows["jsonl"].items():
        for row in part:
            assert row["meta"] == by_id[row["id"]].meta                        # an object, as stored
            assert {"train": "train", "validation": "val", "test": "test"}[split] == row["meta"]["split"]

    parquet = {s: pq.read_table(tmp_path / "parquet" / f"{s}.parquet").to_pylist() for s in want}
    dd = load_from_disk(str(V.export_version(ws, split_version.id, tmp_path / "hf", "hf").path))
    assert set(dd) == set(want) and {s: dd[s].num_rows for s in dd} == want
    for split in want:
        for table in (parquet[split], dd[split].to_list()):
            for row, exported in zip(table, rows["jsonl"][split]):
                assert isinstance(row["meta"], dict)                          # a struct, not a JSON string
                # the same meta as JSONL, except that a key of mixed kinds (ticket) is text in every record
                assert present(row["meta"]) == {**exported["meta"], "ticket": str(exported["meta"]["ticket"])}
    assert dd["train"].features["meta"] == dd["test"].features["meta"]       # one schema for every split

    with open(tmp_path / "csv" / "validation.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["id", "system", "prompt", "completion", "meta.label", "meta.split", "meta.tags",
                              "meta.ticket"]
    assert table[0]["prompt"] == QUESTIONS[6] and table[0]["meta.split"] == "val"
    assert table[0]["meta.tags"] == '["urgent"]' and table[1]["meta.tags"] == ""

    zipped = V.export_version(ws, split_version.id, tmp_path / "v1-jsonl.zip", "jsonl")
    assert sorted(zipfile.ZipFile(zipped.path).namelist()) == ["v1-jsonl/", "v1-jsonl/test.jsonl",
                                                              "v1-jsonl/train.jsonl", "v1-jsonl/validation.jsonl"]
    packed = V.export_version(ws, split_version.id, tmp_path / "v1.tar.gz", "parquet")
    assert sorted(tarfile.open(packed.path).getnames()) == ["v1", "v1/test.parquet", "v1/train.parquet",
                                                           "v1/validation.parquet"]
    with pytest.raises(TuneloopError, match="already exists"):
        V.export_version(ws, split_version.id, tmp_path / "jsonl", "jsonl")

    from training.data import load_split_data                      # Tuneloop trains on the exported folder too
    assert load_split_data(None, str(tmp_path / "jsonl")).counts() == {"train": 6, "val": 2, "test": 2}


def test_one_file_of_a_split_version_only_when_asked_for(ws, tmp_path, split_version):
    refused = curation_cli(ws, "export", split_version.name, tmp_path / "all.jsonl")
    assert refused.returncode == 1 and not (tmp_path / "all.jsonl").exists()
    assert "would mix the test set into training" in refused.stderr and "--single-file" in refused.stderr
    asked = curation_cli(ws, "export", split_version.name, tmp_path / "all.jsonl", "--single-file")
    assert asked.returncode == 0, asked.stderr
    assert [r["id"] for r in jsonl(tmp_path / "all.jsonl")] == [f"s{i}" for i in range(10)]
    folder = curation_cli(ws, "export", split_version.name, tmp_path / "out", "--format", "csv")
    assert folder.returncode == 0 and "train 6 · validation 2 · test 2" in folder.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test.csv", "train.csv", "validation.csv"]
    from curation.data.formats import read_records
    back = read_records(tmp_path / "out" / "train.csv").records    # meta.KEY columns come back as meta
    kept = {r.id: r for r in V.load_records(ws, split_version.id)}
    assert back and all(r.meta == kept[r.id].meta and r.messages == kept[r.id].messages for r in back)

    unsplit = V.create_version(ws, [Record(r.id, r.messages, {"label": "x"}) for r in support_split()],
                               parent=None, step="import")
    assert V.export_version(ws, unsplit.id, tmp_path / "plain.parquet", "parquet").counts == {None: 10}

    longer = V.create_version(ws, [Record("long", [{"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "hello"},
                                                   {"role": "user", "content": "where is my order?"},
                                                   {"role": "assistant", "content": "on its way"}], {})],
                              parent=None, step="import")
    with pytest.raises(TuneloopError, match="record long: its 4 turns .* export it as JSONL or Parquet"):
        V.export_version(ws, longer.id, tmp_path / "long.csv", "csv")


def test_the_data_tab_offers_a_split_version_as_a_zip_of_splits(ws, split_version):
    from curation.ui import data as tab
    w = SimpleNamespace(export_pick="pick", export_fmt="fmt", export_single="single", export_file="file",
                        export_status="status")
    quiet = dict(progress=lambda *a, **k: None)
    out = tab.export(ws, w, {"pick": split_version.name, "fmt": "jsonl", "single": False}, **quiet)
    assert out["file"].endswith(".zip") and "train 6 · validation 2 · test 2" in out["status"]
    assert sorted(Path(n).name for n in zipfile.ZipFile(out["file"]).namelist() if n.endswith(".jsonl")) == \
        ["test.jsonl", "train.jsonl", "validation.jsonl"]
    one = tab.export(ws, w, {"pick": split_version.name, "fmt": "jsonl", "single": True}, **quiet)
    assert one["file"].endswith(".jsonl") and "test set is mixed in" in one["status"]
    assert len(jsonl(Path(one["file"]))) == 10


def test_the_splits_tab_zip_holds_only_this_export(ws, split_version):
    from curation.ui import splits as tab
    w = SimpleNamespace(split_pick="pick", shape="shape", formats="formats", label_field="label", export_file="file",
                        export_md="md")
    page = {"pick": split_version.name, "shape": "messages", "label": ""}
    for formats in (["parquet", "csv"], ["jsonl"]):
        out = tab.export_split_version(ws, w, {**page, "formats": formats}, progress=lambda *a, **k: None)
    assert sorted(zipfile.ZipFile(out["file"]).namelist()) == ["test.jsonl", "train.jsonl", "validation.jsonl"]


# -- the round trip with trl ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("roundtrip") / "tiny")


def trl_arguments(output: Path) -> dict:
    return dict(output_dir=str(output), max_steps=2, per_device_train_batch_size=2, use_cpu=True, report_to="none",
                save_strategy="no", logging_steps=1, max_length=64, disable_tqdm=True, seed=0)


def test_an_export_trains_with_trl_sft_and_dpo(ws, tmp_path, split_version, tiny_chat_model):
    from datasets import load_dataset, load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    V.export_version(ws, split_version.id, tmp_path / "hf", "hf")
    V.export_version(ws, split_version.id, tmp_path / "jsonl", "jsonl")
    from_disk = load_from_disk(str(tmp_path / "hf"))
    from_json = load_dataset("json", data_files={s: str(tmp_path / "jsonl" / f"{s}.jsonl")
                                                 for s in ("train", "validation", "test")})
    for dd in (from_disk, from_json):
        assert {s: dd[s].num_rows for s in dd} == {"train": 6, "validation": 2, "test": 2}
        assert not set(dd["test"]["id"]) & set(dd["train"]["id"])
        questions = {s: {m[1]["content"] for m in dd[s]["messages"]} for s in ("train", "test")}
        assert not questions["test"] & questions["train"]
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_chat_model),
                             args=SFTConfig(**trl_arguments(tmp_path / "sft")), train_dataset=dd["train"],
                             eval_dataset=dd["validation"], processing_class=tokenizer)
        assert trainer.train().global_step == 2

    prompt = [{"role": "user", "content": "Where is my order?"}]
    pairs = [Record(f"p{i}", prompt, {"split": ("train", "train", "train", "test")[i % 4], "run": 1},
                    chosen=[{"role": "assistant", "content": f"It ships within two days ({i})."}],
                    rejected=[{"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."}])
             for i in range(8)]
    preferences = V.create_version(ws, pairs, parent=split_version.id, step="preferences")
    V.export_version(ws, preferences.id, tmp_path / "prefs", "hf")
    prefs = load_from_disk(str(tmp_path / "prefs"))
    assert {s: prefs[s].num_rows for s in prefs} == {"train": 6, "test": 2}
    assert not set(prefs["test"]["id"]) & set(prefs["train"]["id"])
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_chat_model),
                         args=DPOConfig(**trl_arguments(tmp_path / "dpo")), train_dataset=prefs["train"],
                         processing_class=tokenizer)
    assert trainer.train().global_step == 2
