"""Tables owned by evaluation. Append a new migration; never edit an applied one."""
from core.workspace import migrations

migration = migrations("evaluation")


@migration
def m001_arena(db):
    db.execute("""
        create table evaluations (
            id integer primary key,
            name text not null,
            run_id text,                     -- the training run whose adapter was rated; null for an ad-hoc adapter
            base_model text not null,
            adapter text,                    -- adapter folder the fine-tuned responses came from
            dataset_version integer,         -- version the prompts came from; null for typed or uploaded prompts
            overlap integer not null check (overlap >= 1),   -- raters per pair
            guidelines text not null default '',
            settings text not null default '{}',             -- decoding settings, the same for both models
            created_by text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table eval_pairs (
            id integer primary key,
            evaluation_id integer not null references evaluations(id),
            prompt_id text not null,         -- record id, or a content hash for typed prompts
            messages text not null,          -- JSON conversation up to and including the last user turn
            label text,
            split text,
            base_response text not null,
            finetuned_response text not null,
            unique (evaluation_id, prompt_id)
        )""")
    db.execute("""
        create table eval_assignments (
            id integer primary key,
            pair_id integer not null references eval_pairs(id),
            rater text not null,
            finetuned_side text not null check (finetuned_side in ('A', 'B')),
            issued_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            unique (pair_id, rater)
        )""")
    db.execute("""
        create table eval_votes (
            id integer primary key,
            assignment_id integer not null unique references eval_assignments(id),
            verdict text not null check (verdict in ('A', 'B', 'tie', 'both_bad')),
            outcome text not null check (outcome in ('finetuned', 'base', 'tie', 'both_bad')),
            comment text not null default '',
            corrected_answer text,
            voted_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("create index eval_assignments_rater on eval_assignments (rater, pair_id)")


@migration
def m002_feedback(db):
    db.execute("""
        create table preference_pairs (
            id integer primary key,
            evaluation_id integer not null references evaluations(id),
            pair_id integer not null unique references eval_pairs(id),
            prompt text not null,            -- JSON messages, trl's conversational prompt
            chosen text not null,
            rejected text not null,
            chosen_model text not null check (chosen_model in ('finetuned', 'base')),
            vote_ids text not null,          -- JSON list: the votes this pair stands on
            raters text not null,            -- JSON list
            resolution text not null,        -- unanimous, or majority when raters disagreed
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table needs_answer (
            id integer primary key,
            evaluation_id integer not null references evaluations(id),
            pair_id integer not null unique references eval_pairs(id),
            vote_ids text not null,
            raters text not null,
            answer text,
            answered_by text,
            answered_at text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table generation_cache (
            key text primary key,            -- hash of model, adapter, decoding settings and prompt
            response text not null,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")


@migration
def m003_regression_suites(db):
    db.execute("""
        create table regression_suites (
            id integer primary key,
            name text not null unique,
            description text not null default '',
            created_by text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table regression_cases (
            id integer primary key,
            suite_id integer not null references regression_suites(id) on delete cascade,
            name text not null,
            messages text not null,          -- JSON conversation ending with the user turn to answer
            checks text not null,            -- JSON list of {kind: contains|not_contains|regex|json_schema, ...}
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            unique (suite_id, name)
        )""")
    db.execute("""
        create table regression_runs (
            id integer primary key,
            suite_id integer not null references regression_suites(id) on delete cascade,
            run_id text,                     -- the training run whose adapter answered; null for an adapter folder
            model text not null check (model in ('base', 'finetuned')),
            base_model text not null,
            adapter text,
            passed integer not null,
            total integer not null,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table regression_results (
            id integer primary key,
            regression_run_id integer not null references regression_runs(id) on delete cascade,
            case_id integer not null references regression_cases(id) on delete cascade,
            response text not null,
            passed integer not null,
            failures text not null default '[]'   -- JSON list of what each failed check found
        )""")
    db.execute("create index regression_runs_run on regression_runs (run_id, suite_id)")


@migration
def m004_auto_evaluations(db):
    db.execute("""
        create table auto_evaluations (
            id integer primary key,
            run_id text,                     -- null when an adapter folder was evaluated
            adapter text not null,
            base_model text not null,
            dataset_version integer not null,
            dataset_hash text not null,
            split text not null,             -- which split's references were answered (test)
            settings text not null,          -- decoding settings, JSON
            metrics text not null,           -- JSON: {base: {...}, finetuned: {...}}
            regression text not null default '[]',   -- JSON list of regression_runs ids made with it
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("create index auto_evaluations_run on auto_evaluations (run_id, dataset_version)")
