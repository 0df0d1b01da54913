"""Dataset versions: immutable, hashed, with lineage, diff, export and rollback."""
import json

import pytest

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data import versions as V
from curation.data.formats import read_records
from curation.data.imports import import_file
from curation.data.records import Record
from tests.conftest import chat, write_jsonl


def recs(*pairs):
    return [Record(id=f"r{i}", messages=chat(q, a)["messages"], meta={"n": i}) for i, (q, a) in enumerate(pairs)]


def test_workspace_database_settings(ws):
    db = ws.db
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert db.execute("pragma foreign_keys").fetchone()[0] == 1
    assert db.execute("pragma busy_timeout").fetchone()[0] == 30000
    applied = {r[0] for r in db.execute("select name from _migrations where package='curation'")}
    assert "m001_dataset_versions" in applied
    assert Workspace.open(ws.root).migrate() == []  # applied once only


def test_content_hash_is_order_independent_and_content_sensitive():
    a = recs(("q1", "a1"), ("q2", "a2"))
    assert V.content_hash(a) == V.content_hash(list(reversed(a)))
    b = recs(("q1", "a1"), ("q2", "a2 changed"))
    assert V.content_hash(a) != V.content_hash(b)


def test_create_load_lineage_and_rollback(ws):
    v1 = V.create_version(ws, recs(("q1", "a1"), ("q2", "a2")), parent=None, step="import", params={"file": "x"})
    v2 = V.create_version(ws, recs(("q1", "a1")), parent=v1.id, step="dedup", counts={"removed": 1})
    assert V.current_version(ws).id == v2.id
    assert [v.name for v in V.lineage(ws, v2.id)] == ["v2", "v1"]
    assert v2.counts == {"records": 1, "removed": 1}
    assert "v2 ← v1 · dedup · 1 records · removed 1" == v2.describe()
    V.set_current(ws, "v1")
    assert V.current_version(ws).id == v1.id
    assert len(V.load_records(ws, "v1")) == 2
    V._cache.clear()  # read back from the Parquet snapshot, not the cache
    assert [r.to_dict() for r in V.load_records(ws, 2)] == [r.to_dict() for r in recs(("q1", "a1"))]
    assert ws.path(v1.path).exists()


def test_versions_are_immutable_snapshots(ws):
    records = recs(("q", "a"))
    v1 = V.create_version(ws, records, parent=None, step="import")
    records[0].messages[1]["content"] = "mutated after the fact"
    V._cache.clear()
    assert V.load_records(ws, v1.id)[0].answer == "a"


def test_errors(ws):
    with pytest.raises(TuneloopError, match="no version v9"):
        V.get_version(ws, "v9")
    with pytest.raises(TuneloopError, match="not a version"):
        V.get_version(ws, "latest")
    with pytest.raises(TuneloopError, match="same id"):
        V.create_version(ws, recs(("a", "b")) * 2, parent=None, step="import")
    with pytest.raises(TuneloopError, match="import a file first"):
        V.require_current(ws)


def test_diff(ws):
    v1 = V.create_version(ws, recs(("q0", "a0"), ("q1", "a1"), ("q2", "a2")), parent=None, step="import")
    new = recs(("q0", "a0"), ("q1", "a1 edited"))
    new.append(Record(id="new", messages=chat("q", "a")["messages"]))
    v2 = V.create_version(ws, new, parent=v1.id, step="review")
    d = V.diff_versions(ws, v1.id, v2.id)
    assert d.summary() == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}
    assert d.changed[0][0].answer == "a1" and d.changed[0][1].answer == "a1 edited"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_round_trips_through_import(ws, tmp_path, fmt):
    records = recs(("q0", "a0"), ("q1", "a1"))
    records[0].meta["split"] = "train"
    records[1].meta["split"] = "test"
    v = V.create_version(ws, records, parent=None, step="split")
    out = V.export_version(ws, v.id, tmp_path / "out", fmt).path
    files = [out] if fmt == "hf" else sorted(out.iterdir())
    back = [r for f in files for r in read_records(f).records]
    assert {r.id: (r.answer, r.meta["split"]) for r in back} == {"r0": ("a0", "train"), "r1": ("a1", "test")}


def test_import_file_append_and_all_or_nothing(ws, tmp_path):
    good = write_jsonl(tmp_path / "a.jsonl", [chat("q", "a", id="x1")])
    v1, _ = import_file(ws, good)
    more = write_jsonl(tmp_path / "b.jsonl", [chat("q2", "a2", id="x2")])
    v2, _ = import_file(ws, more, append=True)
    assert v2.parent_id == v1.id and v2.num_records == 2
    with pytest.raises(TuneloopError, match="already exist in v2"):
        import_file(ws, more, append=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(chat("q", "a")) + "\n{broken\n")
    with pytest.raises(TuneloopError):
        import_file(ws, bad)
    assert [v.id for v in V.list_versions(ws)] == [v1.id, v2.id]  # nothing partial was written


def test_search_records():
    rs = recs(("refund for ORD-1", "ok"), ("password", "reset it"))
    assert [r.id for r in V.search_records(rs, "ORD-1 refund")] == ["r0"]
    assert [r.id for r in V.search_records(rs, "RESET")] == ["r1"]
    assert len(V.search_records(rs, "")) == 2


def test_meta_is_part_of_the_content_hash(ws):
    """Two versions that differ only in a record's meta (a label, a split) are different data."""
    a = recs(("q1", "a1"), ("q2", "a2"))
    b = recs(("q1", "a1"), ("q2", "a2"))
    b[1].meta["label"] = "refund"
    assert V.content_hash(a) != V.content_hash(b)
    va = V.create_version(ws, a, parent=None, step="import")
    vb = V.create_version(ws, b, parent=va.id, step="review")
    assert va.content_hash != vb.content_hash


def test_a_preference_version_is_stored_hashed_shown_and_exported_in_trl_shape(ws, tmp_path):
    sft = V.create_version(ws, recs(("q1", "a1")), parent=None, step="import")
    prompt = [{"role": "user", "content": "Where is my order?"}]
    pairs = [Record(f"p{i}", prompt, {"split": "train", "i": i}, chosen=[{"role": "assistant", "content": "Here."}],
                    rejected=[{"role": "assistant", "content": "No idea."}]) for i in range(2)]
    v = V.create_version(ws, pairs, parent=sft.id, step="preferences", params={"evaluation": 1})
    assert v.kind == "preference" and "2 preference pairs" in v.describe()
    assert V.current_version(ws).id == sft.id                   # never the data every step starts from
    assert [x.name for x in V.lineage(ws, v.id)] == [v.name, sft.name]
    V._cache.clear()
    loaded = V.load_records(ws, v.id)
    assert loaded == pairs and V.content_hash(loaded) == v.content_hash
    swapped = [Record(p.id, p.messages, p.meta, chosen=p.rejected, rejected=p.chosen) for p in pairs]
    assert V.content_hash(swapped) != v.content_hash            # which answer won is part of the data
    V.export_version(ws, v.id, tmp_path / "prefs")
    rows = [json.loads(line) for line in (tmp_path / "prefs" / "train.jsonl").read_text().splitlines()]
    assert rows[0] == {"id": "p0", "prompt": prompt, "chosen": [{"role": "assistant", "content": "Here."}],
                       "rejected": [{"role": "assistant", "content": "No idea."}], "meta": {"split": "train", "i": 0}}
    with pytest.raises(TuneloopError, match="either chat records or preference pairs"):
        V.create_version(ws, pairs + recs(("q", "a")), parent=None, step="import")


def test_statements_run_with_a_version_share_its_transaction(ws):
    v1 = V.create_version(ws, recs(("q1", "a1")), parent=None, step="import")
    ws.db.execute("create table version_notes (version_id integer references dataset_versions(id), text text)")
    v2 = V.create_version(ws, recs(("q2", "a2")), parent=v1.id, step="feedback",
                          also=lambda db, vid: db.execute("insert into version_notes values (?, 'made')", (vid,)))
    assert ws.db.execute("select version_id, text from version_notes").fetchall()[0][:] == (v2.id, "made")

    def broken(db, vid):
        db.execute("insert into version_notes values (?, 'half')", (vid,))
        raise TuneloopError("the caller's statement failed")

    with pytest.raises(TuneloopError, match="caller's statement failed"):
        V.create_version(ws, recs(("q3", "a3")), parent=v2.id, step="feedback", also=broken)
    assert [v.name for v in V.list_versions(ws)] == ["v1", "v2"]
    assert V.current_version(ws).id == v2.id
    assert ws.db.execute("select count(*) from version_notes").fetchone()[0] == 1


def test_chat_steps_refuse_a_preference_version_instead_of_dropping_its_answers(ws):
    """Dedup, filters, PII, splits and review read chat records: on a preference version they would see only
    the prompts, and split or filter the chosen/rejected answers away. Each refuses it, naming the version."""
    from curation.dedup.clusters import find_duplicates_in_version
    from curation.dedup.filters import filter_version
    from curation.pii.review import run_scan
    from curation.review.state import ReviewState
    from curation.splits.build import split_version

    sft = V.create_version(ws, recs(("How do I reset it?", "Open Settings.")), parent=None, step="import")
    pairs = [Record(id=f"p{i}", messages=[{"role": "user", "content": f"question {i}"}], meta={},
                    chosen=[{"role": "assistant", "content": "the good answer"}],
                    rejected=[{"role": "assistant", "content": "the bad answer"}]) for i in range(3)]
    pref = V.create_version(ws, pairs, parent=sft.id, step="preferences")
    steps = [lambda: find_duplicates_in_version(ws, pref.name), lambda: filter_version(ws, pref.name),
             lambda: run_scan(ws, version=pref.name), lambda: split_version(ws, pref.name),
             lambda: ReviewState(ws, pref.name)]
    for step in steps:
        with pytest.raises(TuneloopError, match=f"{pref.name} holds preference pairs"):
            step()
    assert len(V.list_versions(ws)) == 2
    assert V.chat_records(ws, sft.name, step="dedup")[0].answer == "Open Settings."


def _varied_records(n=137):
    words = ["Refund", "réfund", "ORD-1042", 'say "hi"', "a*b", "50% off", "ÉCOLE", "x", "ab", "straße", "中文字"]
    out = []
    for i in range(n):
        pick = [words[(i * k) % len(words)] for k in (1, 3, 7)]
        msgs = [{"role": "user", "content": f"ticket {i}: {pick[0]} and {pick[1]}"},
                {"role": "assistant", "content": f"answer {i % 13} {pick[2]}"}]
        meta = {"source": ["mail", "chat"][i % 2], "label": ["refund", "billing", ""][i % 3], "n": i}
        out.append(Record(id=f"rec-{i:03d}", messages=msgs, meta=meta))
    return out


def test_index_pages_and_searches_exactly_as_a_full_scan(ws):
    from curation.data.index import record_index, snapshot_page, snapshot_record, snapshot_search

    v = V.create_version(ws, _varied_records(), parent=None, step="import")
    records = V.load_records(ws, v.id)
    assert [r.id for r in snapshot_page(ws, v.id, 120, 20)] == [r.id for r in records[120:140]]
    assert snapshot_record(ws, v.id, "rec-031").to_dict() == records[31].to_dict()
    assert snapshot_record(ws, v.id, "nope") is None
    index = record_index(ws, v.id)
    assert index.count == len(records)
    assert [r.to_dict() for r in index.page(40, 25)] == [r.to_dict() for r in records[40:65]]
    queries = ["refund", "REFUND", "réfund ord-", 'say "hi"', "a*b", "50%", "école", "x", "ab ticket", "11",
               "straße", "中文", "rec-01", '"source":"chat"', "ticket 1", "nothing-like-this", "", "fund answer 3",
               "0}", "}", "é"]      # short words found only at a text's end, or inside a longer character run
    for q in queries:
        full = V.search_records(records, q)
        for start in (0, 20, 40):
            total, page = index.search(q, start=start, limit=20)
            assert total == len(full), q
            assert [r.id for r in page] == [r.id for r in full[start:start + 20]], (q, start)
            scanned, scan_page = snapshot_search(ws, v.id, q, start=start, limit=20)   # while the index is built
            assert scanned == total and [r.to_dict() for r in scan_page] == [r.to_dict() for r in page], (q, start)
    assert index.record("rec-007").to_dict() == records[7].to_dict() and index.record("nope") is None
