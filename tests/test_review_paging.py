"""Committing a review, its counts, team agreement and the labels file page through the version (the
version's index, a page at a time) instead of loading it whole, and give what they gave before.

The expected figures below were produced by the whole-version code (before paging) on this fixture."""
import json

import pytest

from curation.data import versions as V
from curation.data.index import record_index
from curation.data.records import Record
from curation.review import commit as C
from curation.review.actions import submit_review
from curation.review.commit import commit_preview, commit_review, export_labels, import_labels
from curation.review.labels import parse_schema, save_schema
from curation.review.team import agreement, settle

SCHEMA = {"fields": [{"name": "intent", "kind": "single", "options": ["refund", "billing", "other"]},
                     {"name": "tags", "kind": "tags"}]}


def _fixture(ws):
    """Nine records, the fourth approved in an earlier review; three reviewers who edit, label, decide,
    comment and disagree, and one settlement."""
    recs = [Record(id=f"t{i}", messages=[{"role": "user", "content": f"ticket {i}: where is parcel {100 + i}?"},
                                         {"role": "assistant", "content": f"reply {i}"}],
                   meta={"source": "mail" if i % 3 else "chat", "intent": "other"}) for i in range(9)]
    recs[3].meta["review"] = {"status": "approved", "version": 1, "reviewers": ["old"]}
    v = V.create_version(ws, recs, parent=None, step="import")
    save_schema(ws, v.id, parse_schema(SCHEMA), by="admin")
    submit_review(ws, v.id, "t0", "ana", edits={1: "your parcel left today"}, labels={"intent": "refund"},
                  decision="approved")
    submit_review(ws, v.id, "t0", "bo", labels={"intent": "refund"}, decision="approved")
    submit_review(ws, v.id, "t1", "ana", labels={"intent": "billing"}, decision="rejected", comment="spam")
    submit_review(ws, v.id, "t1", "bo", labels={"intent": "other"}, decision="rejected")
    submit_review(ws, v.id, "t2", "ana", labels={"intent": "refund", "tags": "late"}, decision="approved")
    submit_review(ws, v.id, "t2", "cy", labels={"intent": "billing"}, decision="rejected")
    submit_review(ws, v.id, "t5", "cy", comment="ask for the order number")
    submit_review(ws, v.id, "t6", "bo", decision="skipped")
    submit_review(ws, v.id, "t7", "ana", labels={"intent": "other"}, decision="approved")
    submit_review(ws, v.id, "t7", "cy", labels={"intent": "other"}, decision="approved")
    settle(ws, v.id, "t2", "intent", "billing", by="admin")
    return v


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "at"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


EXPECTED_COUNTS = {'edited': 1, 'labelled': 3, 'approved': 2, 'rejected': 1, 'disputed': 2, 'commented': 1, 'records': 8}
EXPECTED_RECORDS = [{'id': 't0',
  'messages': [{'content': 'ticket 0: where is parcel 100?', 'role': 'user'},
               {'content': 'your parcel left today', 'role': 'assistant'}],
  'meta': {'source': 'chat',
           'intent': 'refund',
           'review': {'status': 'approved',
                      'version': 1,
                      'reviewers': ['ana', 'bo'],
                      'edits': [{'message': 1, 'role': 'assistant', 'previous': 'reply 0', 'by': 'ana'}],
                      'comments': []}}},
 {'id': 't2',
  'messages': [{'content': 'ticket 2: where is parcel 102?', 'role': 'user'},
               {'content': 'reply 2', 'role': 'assistant'}],
  'meta': {'source': 'mail',
           'intent': 'billing',
           'tags': ['late'],
           'review': {'status': 'disputed',
                      'version': 1,
                      'reviewers': ['ana', 'cy'],
                      'edits': [],
                      'comments': []}}},
 {'id': 't3',
  'messages': [{'role': 'user', 'content': 'ticket 3: where is parcel 103?'},
               {'role': 'assistant', 'content': 'reply 3'}],
  'meta': {'source': 'chat',
           'intent': 'other',
           'review': {'status': 'approved', 'version': 1, 'reviewers': ['old']}}},
 {'id': 't4',
  'messages': [{'role': 'user', 'content': 'ticket 4: where is parcel 104?'},
               {'role': 'assistant', 'content': 'reply 4'}],
  'meta': {'source': 'mail', 'intent': 'other'}},
 {'id': 't5',
  'messages': [{'content': 'ticket 5: where is parcel 105?', 'role': 'user'},
               {'content': 'reply 5', 'role': 'assistant'}],
  'meta': {'source': 'mail',
           'intent': 'other',
           'review': {'status': 'pending',
                      'version': 1,
                      'reviewers': [],
                      'edits': [],
                      'comments': [{'by': 'cy', 'text': 'ask for the order number'}]}}},
 {'id': 't6',
  'messages': [{'content': 'ticket 6: where is parcel 106?', 'role': 'user'},
               {'content': 'reply 6', 'role': 'assistant'}],
  'meta': {'source': 'chat',
           'intent': 'other',
           'review': {'status': 'skipped', 'version': 1, 'reviewers': ['bo'], 'edits': [], 'comments': []}}},
 {'id': 't7',
  'messages': [{'content': 'ticket 7: where is parcel 107?', 'role': 'user'},
               {'content': 'reply 7', 'role': 'assistant'}],
  'meta': {'source': 'mail',
           'intent': 'other',
           'review': {'status': 'approved',
                      'version': 1,
                      'reviewers': ['ana', 'cy'],
                      'edits': [],
                      'comments': []}}},
 {'id': 't8',
  'messages': [{'role': 'user', 'content': 'ticket 8: where is parcel 108?'},
               {'role': 'assistant', 'content': 'reply 8'}],
  'meta': {'source': 'mail', 'intent': 'other'}}]
EXPECTED_AGREEMENT = {'intent': (0.333333, 0.5, 4, 3), 'tags': (None, None, 0, 0), 'status': (0.533333, 0.75, 4, 3)}
EXPECTED_LABELS = [{'id': 't0', 'labels': {'intent': 'refund', 'tags': None}, 'status': 'approved'},
 {'id': 't1', 'labels': {'intent': 'other', 'tags': None}, 'status': 'rejected'},
 {'id': 't2', 'labels': {'intent': 'billing', 'tags': ['late']}, 'status': 'disputed'},
 {'id': 't3', 'labels': {'intent': 'other', 'tags': None}, 'status': 'approved'},
 {'id': 't4', 'labels': {'intent': 'other', 'tags': None}, 'status': 'pending'},
 {'id': 't5', 'labels': {'intent': 'other', 'tags': None}, 'status': 'pending'},
 {'id': 't6', 'labels': {'intent': 'other', 'tags': None}, 'status': 'skipped'},
 {'id': 't7', 'labels': {'intent': 'other', 'tags': None}, 'status': 'approved'},
 {'id': 't8', 'labels': {'intent': 'other', 'tags': None}, 'status': 'pending'}]


@pytest.fixture
def never_whole(monkeypatch):
    """Fails any attempt to read a version whole; pages of 2 records, so every path crosses pages."""
    def whole(*args, **kwargs):
        raise AssertionError("the review read the whole version")
    monkeypatch.setattr(V, "load_records", whole)
    monkeypatch.setattr(C, "PAGE", 2)


def test_commit_pages_through_the_version_and_keeps_what_it_kept(ws, never_whole):
    v = _fixture(ws)
    assert commit_preview(ws, v.id) == EXPECTED_COUNTS
    new = commit_review(ws, v.id, by="admin")
    assert {k: new.counts[k] for k in EXPECTED_COUNTS if k not in ("commented", "records")} == \
        {k: v for k, v in EXPECTED_COUNTS.items() if k not in ("commented", "records")}
    assert [_without_times(r.to_dict()) for r in record_index(ws, new.id).page(0, 100)] == EXPECTED_RECORDS


def test_agreement_and_the_labels_file_page_through_the_version(ws, never_whole, tmp_path):
    v = _fixture(ws)
    got = {a.field: (a.alpha if a.alpha is None else round(a.alpha, 6), a.percent, a.records, a.reviewers)
           for a in agreement(ws, v.id)}
    assert got == EXPECTED_AGREEMENT
    out = tmp_path / "labels.jsonl"
    assert export_labels(ws, v.id, out) == 9
    assert [json.loads(line) for line in out.read_text().splitlines()] == EXPECTED_LABELS
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "t8", "labels": {"tags": ["vip"]}}) + "\n"
                   + json.dumps({"id": "nope", "labels": {"intent": "refund"}}) + "\n")
    result = import_labels(ws, src, version=v.id, reviewer="vendor")
    assert (result.applied, result.unknown_ids) == (1, ["nope"])
