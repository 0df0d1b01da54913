"""Review and label records, alone or as a team; committing the review makes a new dataset version.

A review works on one dataset version. Each reviewer's work is stored as it happens (real SQLite, one
row per label, decision, edit and comment, with who and when), so several people can review the same
version at once and nothing anybody typed is lost:

- **Edits** replace a message's text; every edit keeps the text it replaced, its editor and time.
- **Labels** follow the dataset's label schema (``curation.review.labels``); each reviewer has their own.
- **Decisions**: approve, reject or skip. **Comments** are notes on a record for colleagues.
- **Drafts**: what a reviewer has typed but not yet applied, saved as they type.
- **Undo**: every action stores what it replaced; ``undo_last_action`` puts it back.
- **Team**: ``assign_reviewers`` gives each record to k reviewers; ``agreement`` measures how often they
  agree (Krippendorff's alpha per label field); ``disagreements`` lists what an admin must ``settle``.

What a record ends up with: a settled value if an admin settled it, else the value its reviewers agree
on, else (nobody labelled it, or they disagree) what it had before. ``commit_review`` writes the result
as a new version (step "review"): rejected records leave, edits and labels are applied, and each
reviewed record's ``meta["review"]`` keeps its status, reviewers, comments and every edit's previous text.

One module per concept: ``state`` (the review state, queues, filters, one record's view),
``actions`` (submit, drafts, undo, bulk), ``team`` (assignments, progress, agreement, settle),
``commit`` (the new version, label import/export), ``labels`` (the schema), ``answer_requests``
(prompts rating sent back for an answer), ``cli`` (``python -m curation.review``).

Example::

    submit_review(ws, "v3", "demo-0001", "ana", decision="approved", labels={"label": "refund"},
                  edits={2: "Sorry about that! ..."})
    assign_reviewers(ws, "v3", ["ana", "bo", "cy"], overlap=2)
    agreement(ws, "v3"); settle(ws, "v3", "demo-0007", "label", "billing", by="admin")
    commit_review(ws, "v3", by="admin")
"""
