"""Tables owned by curation. Append a new migration; never edit an applied one.

Migrations are applied in the order they stand here and recorded by name, so the numbers only
have to grow down the file (m1xx: PII, m3xx: review)."""
import json

from core.workspace import migrations

migration = migrations("curation")


@migration
def m001_dataset_versions(db):
    db.execute("""
        create table dataset_versions (
            id integer primary key,
            parent_id integer references dataset_versions(id),
            step text not null,              -- import, scrub, dedup, filter, split, review, feedback, ...
            params text not null default '{}',
            counts text not null default '{}',
            note text not null default '',
            content_hash text not null,
            num_records integer not null,
            path text not null,              -- Parquet snapshot, relative to the workspace
            created_by text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("create table settings (key text primary key, value text not null)")
    db.execute("""
        create table version_events (
            id integer primary key,
            version_id integer not null references dataset_versions(id),
            event text not null,             -- created, rollback
            actor text,
            at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")


@migration
def m101_pii_scrubbing(db):
    # Findings hold offsets into the scanned version, never the personal data itself.
    db.execute("""
        create table pii_settings (
            id integer primary key check (id = 1),
            settings text not null,
            salt text not null,              -- pseudonym salt; never shown, never exported
            updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table pii_scans (
            id integer primary key,
            version_id integer not null references dataset_versions(id),
            settings text not null,
            counts text not null default '{}',
            status text not null default 'open',     -- open, applied
            applied_version_id integer references dataset_versions(id),
            created_by text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table pii_findings (
            scan_id integer not null references pii_scans(id) on delete cascade,
            record_id text not null,
            message_index integer not null,
            start_char integer not null,
            end_char integer not null,
            entity text not null,
            score real not null
        )""")
    db.execute("create index pii_findings_by_record on pii_findings (scan_id, record_id)")
    db.execute("""
        create table pii_decisions (
            scan_id integer not null references pii_scans(id) on delete cascade,
            record_id text not null,
            decision text not null check (decision in ('accept', 'reject', 'edit')),
            edited_messages text,            -- the reviewer's own text, for 'edit'
            decided_by text,
            decided_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            primary key (scan_id, record_id)
        )""")


@migration
def m301_review_tables(db):
    db.execute("""
        create table review_schemas (
            dataset_id integer primary key references dataset_versions(id),   -- root of the lineage
            schema text not null,            -- {"fields": [...], "guidelines": "..."}
            updated_by text,
            updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table review_labels (
            version_id integer not null references dataset_versions(id),
            record_id text not null,
            reviewer text not null,
            field text not null,
            value text not null,             -- JSON: a string or a list of strings
            at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            primary key (version_id, record_id, reviewer, field)
        )""")
    db.execute("""
        create table review_decisions (
            version_id integer not null references dataset_versions(id),
            record_id text not null,
            reviewer text not null,
            status text not null check (status in ('approved', 'rejected', 'skipped')),
            at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            primary key (version_id, record_id, reviewer)
        )""")
    db.execute("""
        create table review_edits (
            id integer primary key,
            version_id integer not null references dataset_versions(id),
            record_id text not null,
            message_index integer not null,
            previous text not null,          -- the text this edit replaced
            text text not null,
            editor text not null,
            at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("create index review_edits_record on review_edits (version_id, record_id)")
    db.execute("""
        create table review_comments (
            id integer primary key,
            version_id integer not null references dataset_versions(id),
            record_id text not null,
            author text not null,
            text text not null,
            at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("create index review_comments_record on review_comments (version_id, record_id)")
    db.execute("""
        create table review_drafts (
            version_id integer not null references dataset_versions(id),
            record_id text not null,
            reviewer text not null,
            draft text not null,             -- JSON: {"edits": {index: text}, "labels": {...}, "comment": ""}
            at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            primary key (version_id, record_id, reviewer)
        )""")
    db.execute("""
        create table review_actions (
            id integer primary key,
            version_id integer not null references dataset_versions(id),
            reviewer text not null,
            kind text not null,              -- review, comment, bulk, settle
            record_ids text not null,        -- JSON list
            undo text not null,              -- JSON: what to restore to take the action back
            undone integer not null default 0,
            at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("create index review_actions_reviewer on review_actions (version_id, reviewer, id)")
    db.execute("""
        create table review_assignments (
            version_id integer not null references dataset_versions(id),
            record_id text not null,
            reviewer text not null,
            primary key (version_id, record_id, reviewer)
        )""")
    db.execute("""
        create table review_settlements (
            version_id integer not null references dataset_versions(id),
            record_id text not null,
            field text not null,             -- a label field, or 'status' for approve/reject
            value text not null,             -- JSON
            settled_by text not null,
            at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            primary key (version_id, record_id, field)
        )""")


@migration
def m401_version_kinds(db):
    # sft: chat records; preference: prompt + chosen + rejected (made from rated pairs, trained on by DPO).
    db.execute("alter table dataset_versions add column kind text not null default 'sft'"
               " check (kind in ('sft', 'preference'))")


@migration
def m402_answer_requests(db):
    # Prompts that need a good answer written by a person; an answered one becomes an SFT record at the next merge.
    db.execute("""
        create table answer_requests (
            id integer primary key,
            origin text not null,            -- who asked, e.g. 'evaluation 3'; its open requests are replaced together
            record_id text not null unique,  -- the id the answered record gets in a version
            prompt_id text,                  -- the record the prompt came from, when it came from a dataset
            messages text not null,          -- JSON conversation ending with the user turn to answer
            meta text not null default '{}', -- JSON provenance: source, label, split, votes, raters ...
            answer text,
            answered_by text,
            answered_at text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("create index answer_requests_origin on answer_requests (origin, answer)")


@migration
def m403_pii_evidence(db):
    # Why each finding was taken ("NER PERSON 0.85 + cue 'my name is'") and which engine ran the scan;
    # scans made before this have neither (NULL, shown as "—").
    db.execute("alter table pii_findings add column evidence text")
    db.execute("alter table pii_scans add column engine text")


@migration
def m404_pii_date_settings(db):
    # Dates became a setting of their own (PiiOptions.dates: birth | all | off; DATE_OF_BIRTH on by default).
    # Saved settings that chose DATE_TIME keep finding every date; saved settings holding every old default
    # type also find dates of birth, like a new workspace; a narrower saved choice is left as it was.
    old_defaults = {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
                    "STREET_ADDRESS"}
    for row_id, text in db.execute("select id, settings from pii_settings").fetchall():
        settings = json.loads(text)
        entities = settings.get("entities")
        if not isinstance(entities, list):
            continue
        if "DATE_TIME" in entities:
            settings.setdefault("dates", "all")
        if old_defaults <= set(entities) and "DATE_OF_BIRTH" not in entities:
            entities.append("DATE_OF_BIRTH")
        db.execute("update pii_settings set settings = ? where id = ?", (json.dumps(settings), row_id))


@migration
def m405_label_fields(db):
    # Which meta field is a version's label (Dolly's `category`, the demo's `label`); a version without a row
    # takes its parent's, so a choice made on an import holds for every version made from it.
    db.execute("""
        create table label_fields (
            version_id integer primary key references dataset_versions(id),
            field text not null,
            set_by text,
            set_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")


@migration
def m406_import_skips(db):
    # The records an import left out when told to skip bad ones: where each was in the file and why.
    db.execute("""
        create table import_skips (
            version_id integer not null references dataset_versions(id),
            position integer not null,       -- order in the file, so the list reads top to bottom
            location text not null,          -- 'line 17', 'item 4', 'row 9'
            reason text not null
        )""")
    db.execute("create index import_skips_version on import_skips (version_id, position)")


@migration(foreign_keys=False)
def m407_kto_versions(db):
    # kto: prompt + one answer + desirable or not (one-sided votes and thumbs, trained on by KTO). SQLite cannot
    # widen a check constraint, so the table is rebuilt with the same rows; the tables pointing at it keep their ids.
    db.execute("""
        create table dataset_versions_rebuilt (
            id integer primary key,
            parent_id integer references dataset_versions(id),
            step text not null,
            params text not null default '{}',
            counts text not null default '{}',
            note text not null default '',
            content_hash text not null,
            num_records integer not null,
            path text not null,
            created_by text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            kind text not null default 'sft' check (kind in ('sft', 'preference', 'kto'))
        )""")
    columns = "id, parent_id, step, params, counts, note, content_hash, num_records, path, created_by, created_at, kind"
    db.execute(f"insert into dataset_versions_rebuilt ({columns}) select {columns} from dataset_versions")
    db.execute("drop table dataset_versions")
    db.execute("alter table dataset_versions_rebuilt rename to dataset_versions")


REVIEWED_TABLES = ("review_labels", "review_decisions", "review_edits", "review_comments", "review_settlements",
                   "review_assignments")


@migration
def m408_review_revisions(db):
    # A counter per version that every change to its review bumps, so that the warm review state a server keeps
    # between a reviewer's keystrokes sees another process's or thread's changes with one query.
    db.execute("create table review_revisions (version_id integer primary key, revision integer not null)")
    for table in REVIEWED_TABLES:
        for event, row in (("insert", "new"), ("update", "new"), ("delete", "old")):
            db.execute(f"""
                create trigger {table}_{event}_revision after {event} on {table} begin
                    insert into review_revisions (version_id, revision) values ({row}.version_id, 1)
                    on conflict(version_id) do update set revision = revision + 1;
                end""")
