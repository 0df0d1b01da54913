"""The values of each meta field that the index keeps at build time (what Review's label choices read) are those
a read of every record gives, whatever their type; a field with too many of them is read from the records."""
from __future__ import annotations

import json

from core.workspace import Workspace
from curation.data import index as I
from curation.data import versions as V
from curation.data.records import Record


def _scan(index, name):
    path = "$.meta." + json.dumps(name)
    return [json.loads(v) for (v,) in index.db.execute(
        "select distinct json_quote(json_extract(record, ?1)) from records"
        " where json_type(record, ?1) is not null and json_type(record, ?1) != 'null'", (path,))]


def _key(values):
    return sorted(json.dumps(v, sort_keys=True) for v in values)


def test_kept_values_are_those_of_every_record(tmp_path, monkeypatch):
    monkeypatch.setattr(I, "DISTINCT_KEPT", 8)
    ws = Workspace.open(tmp_path / "ws")
    kinds = ["billing", 2**70, 0.5, 3, True, {"b": [1, None]}, None, "billing", 3.0]
    records = [Record(id=f"q{i}", messages=[{"role": "user", "content": f"q {i}"}],
                      meta={"label": ["refund", "", "billing"][i % 3], "odd": kinds[i % len(kinds)],
                            "ticket": f"T-{i}", **({"rare": "x"} if i == 7 else {})}) for i in range(40)]
    v = V.create_version(ws, records, parent=None, step="import")
    index = I.record_index(ws, v.id)
    kept = {name for (name,) in index.db.execute("select distinct field from meta_values")}
    assert kept == {"label", "odd", "rare"}                     # "ticket" has 40 values: read from the records
    for name in ("label", "ticket", "rare", "absent"):
        assert _key(index.distinct_values(name)) == _key(_scan(index, name)), name
    assert sorted(index.distinct_values("label")) == ["", "billing", "refund"]
    # kept as JSON text, each value comes back as it was (SQLite's own read gives 2**70 as a float, True as 1)
    assert _key(index.distinct_values("odd")) == _key(["billing", 2**70, 0.5, 3, True, {"b": [1, None]}, 3.0])
