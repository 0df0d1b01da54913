"""Tables owned by training. Append a new migration; never edit an applied one."""
import json

from core.workspace import migrations

migration = migrations("training")


@migration
def m001_runs(db):
    db.execute("""
        create table runs (
            id integer primary key,
            name text not null,
            status text not null default 'queued',   -- queued, running, finished, failed, stopped
            config text not null,                    -- the RunConfig as JSON (YAML copy beside the run)
            output_dir text not null,
            dataset text not null,                   -- what the user chose: v4 or a folder
            dataset_version integer,
            dataset_hash text,
            base_model text not null,
            base_revision text,
            code_version text,
            packages text not null default '{}',
            pid integer,
            pid_started real,                        -- process start time, so a reused pid is not mistaken
            host text,
            heartbeat_at text,
            stop_requested integer not null default 0,
            attempts integer not null default 0,     -- 1 for the first launch, +1 per resume
            error text,
            metrics text not null default '{}',      -- summary: last step, losses, tokens/s, ROUGE-L
            artefacts text not null default '{}',    -- adapter, checkpoints, merged, archive paths
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            started_at text,
            finished_at text
        )""")
    db.execute("create index runs_status on runs(status)")


@migration
def m002_lineage(db):
    # A DPO run's parent is the SFT run whose adapter it starts from; its data is a preference version.
    db.execute("alter table runs add column parent_run_id integer references runs(id)")
    db.execute("alter table runs add column preference_version integer references dataset_versions(id)")
    db.execute("alter table runs add column preference_hash text")
    runs = {r[0] for r in db.execute("select id from runs")}
    for run_id, config in db.execute("select id, config from runs").fetchall():
        config = json.loads(config or "{}")
        parent = str(config.get("sft_run") or "").strip().lstrip("#").removeprefix("run-")
        if config.get("stage") == "dpo" and parent.isdigit() and int(parent) in runs:
            db.execute("update runs set parent_run_id=? where id=?", (int(parent), run_id))
