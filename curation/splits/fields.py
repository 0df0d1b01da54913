"""FIELDs of a record, as the splits read them: a key of ``meta`` (``label``, ``customer_id``) or a
top-level attribute (``id``, ``prompt``, ``answer``); and a record's copy carrying its split.

Example::

    field_value(record, "customer_id"); label_of(record, "label"); with_split(record, "test")
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from curation.data.records import Record

NO_LABEL = "(none)"


def field_value(record: Record, name: str) -> Any:
    """The value of FIELD ``name``: a key of ``meta``, else a top-level attribute; None if absent."""
    if name in record.meta:
        return record.meta[name]
    if name in ("id", "prompt", "answer", "split"):
        return getattr(record, name)
    return None


def field_names(records: Iterable[Record]) -> list[str]:
    """The meta keys present in the records, for a field picker (split itself left out)."""
    keys: Counter = Counter()
    for r in records:
        keys.update(k for k, v in r.meta.items() if k != "split" and not isinstance(v, (dict, list)))
    return [k for k, _ in keys.most_common()]


def label_of(record: Record, stratify: str | None) -> str:
    if not stratify:
        return "all"
    value = field_value(record, stratify)
    return NO_LABEL if value is None or value == "" else str(value)


def with_split(record: Record, split: str) -> Record:
    return Record(id=record.id, messages=record.messages, meta={**record.meta, "split": split})
