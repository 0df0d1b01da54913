"""The demo dataset: realistic enough that every tab has something to show."""
from collections import Counter

from curation.data.demo import demo_records


def test_demo_is_deterministic_labelled_grouped_and_has_planted_issues():
    records = demo_records(600, seed=0)
    assert len(records) == 600
    assert [r.to_dict() for r in records[:20]] == [r.to_dict() for r in demo_records(600, seed=0)[:20]]
    labels = Counter(r.meta["label"] for r in records)
    assert len(labels) == 10 and min(labels.values()) >= 40
    per_customer = Counter(r.meta["customer_id"] for r in records)
    assert max(per_customer.values()) >= 3          # customers write more than once: grouped splits matter
    assert sum(r.meta.get("source") == "email-resend" for r in records) >= 20   # planted near-duplicates
    assert sum("@" in r.prompt for r in records) >= 30                           # planted emails
    assert all(r.answer for r in records)
    assert len({r.id for r in records}) == 600
