"""An index built by an older Tuneloop (the layout before FORMAT 2: each record's text kept in the FTS5 table,
positions of every trigram, no user_version) is not read as it is: it is built anew on first use, with a message,
and the new one gives what the full scan gives."""
from __future__ import annotations

import json
import sqlite3

from curation.data import index as I
from curation.data import versions as V
from curation.data.records import Record


def _records(n: int = 90) -> list[Record]:
    return [Record(id=f"o{i:03d}", messages=[{"role": "user", "content": f"where is parcel {i}"},
                                             {"role": "assistant", "content": ["on its way", "lost, sorry"][i % 2]}],
                   meta={"source": ["mail", "chat"][i % 2]}) for i in range(n)]


def _old_index(path, records: list[Record]) -> None:
    """The file the build wrote before FORMAT 2 (its tables and settings as that code made them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("create table records (position integer primary key, id text not null, record text not null,"
               " source text not null, flagged integer not null, needs_answer integer not null,"
               " approved integer not null)")
    db.execute("create virtual table hay using fts5(text, detail='full', tokenize='trigram case_sensitive 1')")
    db.execute("create table meta_values (field text not null, value text not null)")
    db.execute("create table meta_many (field text primary key)")
    for position, r in enumerate(records):
        db.execute("insert into records values (?,?,?,?,0,0,0)",
                   (position, r.id, json.dumps(r.to_dict()), r.meta["source"]))
        db.execute("insert into hay (rowid, text) values (?,?)", (position, I.haystack(r)))
    db.execute("insert into meta_values values ('source', '\"mail\"'), ('source', '\"chat\"')")
    db.close()


def test_an_index_of_the_older_layout_is_built_anew_on_first_use_with_a_message(ws):
    v = V.create_version(ws, _records(), parent=None, step="import")
    path = I.index_path(ws, v)
    _old_index(path, V.load_records(ws, v.id))
    assert I.built_index(ws, v.id) is None
    assert I.index_status(ws, v.id) == ("search index: built by an older Tuneloop; it is built anew on the "
                                        "next search")
    heard = []
    index = I.record_index(ws, v.id, lambda fraction, text: heard.append(text))
    assert heard[0] == f"the search index of {v.name} was built by an older Tuneloop: building it anew"
    assert sqlite3.connect(path).execute("pragma user_version").fetchone()[0] == I.FORMAT
    assert I.built_index(ws, v.id) is index and I.index_status(ws, v.id) == ""
    records = V.load_records(ws, v.id)
    for query in ("parcel 1", "lost", "o0", "9", "sorry way"):
        total, page = index.search(query, limit=200)
        assert [r.id for r in page] == [r.id for r in V.search_records(records, query)], query
        assert total == len(page)


def test_a_background_build_replaces_an_index_of_the_older_layout(ws):
    v = V.create_version(ws, _records(), parent=None, step="import")
    _old_index(I.index_path(ws, v), V.load_records(ws, v.id))
    build = I.build_in_background(ws, v.id)
    assert build is not None
    build.thread.join()
    assert build.error is None and I.built_index(ws, v.id).search("lost")[0] == 45
