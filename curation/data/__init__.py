"""Data and versions: records, the file formats they are read from and written to, imports, immutable
dataset versions with their lineage, and the built-in demo data."""
