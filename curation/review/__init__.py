"""Review and labels: the label schema, the review queue, edits with history, team overlap and
agreement, and committing the reviewed records as a new version."""
