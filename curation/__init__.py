"""Curation: records, import/export, dataset versions, PII scrubbing, dedup, filters, splits."""
from core.workspace import referenced_files

# A snapshot no version row names (its import was killed between writing and committing) is swept on open.
referenced_files("versions", "*.parquet", table="dataset_versions", column="path")
