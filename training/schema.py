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


@migration
def m003_serving(db):
    # Which run is live: one row per promotion or rollback; the latest row is the live version. ``previous_id``
    # is the row a rollback goes back to (a rollback's own previous is the one before that).
    db.execute("""
        create table serve_live (
            id integer primary key,                  -- the live version: live-v<id>
            run_id integer not null references runs(id),
            action text not null,                    -- promote, rollback
            previous_id integer references serve_live(id),
            actor text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    # One row per request an endpoint answered or refused; the texts only when the server ran with --log-text.
    db.execute("""
        create table serve_requests (
            id text primary key,                     -- the response id the client got (chatcmpl-...)
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            run_id integer references runs(id),      -- the run that answered (null: refused before one was chosen)
            live_id integer references serve_live(id),
            engine text,
            stream integer not null default 0,
            latency_ms real,
            first_token_ms real,
            prompt_tokens integer not null default 0,
            completion_tokens integer not null default 0,
            finish_reason text,
            status integer not null,                 -- the HTTP status sent
            error text,
            request_text text,                       -- the messages as JSON, only with --log-text
            response_text text                       -- only with --log-text
        )""")
    db.execute("create index serve_requests_created on serve_requests(created_at)")
    # Thumbs, comments and corrections from use, for a response the endpoint served.
    db.execute("""
        create table serve_feedback (
            id integer primary key,
            request_id text not null references serve_requests(id),
            run_id integer references runs(id),
            rating text check (rating in ('up', 'down')),
            comment text,
            correction text,
            messages text,                           -- the conversation as the client sent it back (JSON), if it did
            completion text,                         -- the answer as the client sent it back, if it did
            metadata text not null default '{}',     -- the client's own fields (its user, app, screen), as JSON
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("create index serve_feedback_request on serve_feedback(request_id)")
    # Endpoint processes, so the Train tab finds (and can stop) a server after a page reload or app restart.
    db.execute("""
        create table serve_processes (
            id integer primary key,
            run_id integer references runs(id),      -- null when it serves whatever run is live
            live integer not null default 0,
            host text not null,
            port integer not null,
            engine text not null,
            log_text integer not null default 0,
            pid integer not null,
            pid_started real,
            log_path text,
            started_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            stopped_at text
        )""")


@migration
def m004_run_queue(db):
    # A run launched while another trains waits in line (status queued, no pid); this is its place in line.
    db.execute("alter table runs add column queued_at text")


@migration
def m005_serve_login_and_retention(db):
    # A server's login (the name of the environment variable holding its API key, never the key) and how much
    # of the request log it keeps (days, rows; null: no limit of that kind). Older servers had neither.
    db.execute("alter table serve_processes add column api_key_env text")
    db.execute("alter table serve_processes add column keep_days integer")
    db.execute("alter table serve_processes add column keep_rows integer")
