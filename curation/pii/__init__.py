"""PII scrubbing: presidio engines built once, the house recognizers, and the reviewed scan that
becomes a new version."""
