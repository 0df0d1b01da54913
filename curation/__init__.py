"""Curation: records, import/export, dataset versions, PII scrubbing, dedup, filters, splits."""
