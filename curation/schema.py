"""Tables owned by curation. Append a new migration; never edit an applied one."""
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
