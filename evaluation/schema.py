"""Tables owned by evaluation. Append a new migration; never edit an applied one."""
import json

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


def _run_key(value, runs: set[int]) -> int | None:
    """A stored run reference ('3', '#3', 'run-3') as the run's id; None for a folder or a run that is gone."""
    text = str(value or "").strip().lstrip("#").removeprefix("run-")
    return int(text) if text.isdigit() and int(text) in runs else None


def _rebuild_with_run_key(db, table: str, create: str, indexes: list[str], folder_column: str) -> None:
    """Rebuild ``table`` from ``create`` (run_id now an integer key to runs); a run_id that named an
    adapter folder moves into ``folder_column`` when that is empty."""
    runs = {r[0] for r in db.execute("select id from runs")}
    rows = [dict(r) for r in db.execute(f"select * from {table}")]
    db.execute(create.replace(f"create table {table} ", f"create table {table}_rebuilt "))
    for row in rows:
        key = _run_key(row["run_id"], runs)
        if key is None and row["run_id"] and not str(row["run_id"]).strip().lstrip("#").removeprefix("run-").isdigit():
            row[folder_column] = row[folder_column] or row["run_id"]
        row["run_id"] = key
    if rows:
        columns = list(rows[0])
        db.executemany(f"insert into {table}_rebuilt ({', '.join(columns)}) values ({', '.join('?' * len(columns))})",
                       [tuple(r[c] for c in columns) for r in rows])
    db.execute(f"drop table {table}")
    db.execute(f"alter table {table}_rebuilt rename to {table}")
    for index in indexes:
        db.execute(index)


@migration(foreign_keys=False)
def m005_run_keys(db):
    # run_id was text ("3", "#3", sometimes an adapter folder); now it is the run's id, or null for a folder.
    _rebuild_with_run_key(db, "evaluations", """
        create table evaluations (
            id integer primary key,
            name text not null,
            run_id integer references runs(id),   -- the training run whose adapter was rated; null for an adapter folder
            base_model text not null,
            adapter text,
            dataset_version integer,
            overlap integer not null check (overlap >= 1),
            guidelines text not null default '',
            settings text not null default '{}',
            created_by text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""", [], "adapter")
    _rebuild_with_run_key(db, "regression_runs", """
        create table regression_runs (
            id integer primary key,
            suite_id integer not null references regression_suites(id) on delete cascade,
            run_id integer references runs(id),   -- null for an adapter folder
            model text not null check (model in ('base', 'finetuned')),
            base_model text not null,
            adapter text,
            passed integer not null,
            total integer not null,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""", ["create index regression_runs_run on regression_runs (run_id, suite_id)"], "adapter")
    _rebuild_with_run_key(db, "auto_evaluations", """
        create table auto_evaluations (
            id integer primary key,
            run_id integer references runs(id),   -- null when an adapter folder was evaluated
            adapter text not null,
            base_model text not null,
            dataset_version integer not null,
            dataset_hash text not null,
            split text not null,
            settings text not null,
            metrics text not null,
            regression text not null default '[]',
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""", ["create index auto_evaluations_run on auto_evaluations (run_id, dataset_version)"], "adapter")


@migration
def m006_feedback_versions(db):
    # Which evaluation a dataset version was made from: corrections merged into SFT data, or preference pairs.
    db.execute("""
        create table feedback_versions (
            version_id integer primary key references dataset_versions(id),
            evaluation_id integer not null references evaluations(id),
            kind text not null check (kind in ('corrections', 'preferences')),
            policy text not null             -- how disagreeing raters were resolved: majority or unanimous
        )""")
    evaluations = {r[0] for r in db.execute("select id from evaluations")}
    for vid, params in db.execute("select id, params from dataset_versions where step='feedback'").fetchall():
        params = json.loads(params or "{}")
        eid = str(params.get("evaluation", "")).strip().lstrip("#")
        if eid.isdigit() and int(eid) in evaluations:
            db.execute("insert into feedback_versions (version_id, evaluation_id, kind, policy) values (?,?,?,?)",
                       (vid, int(eid), "corrections", params.get("policy") or "majority"))


@migration
def m007_answers_and_pairs_move_to_curation(db):
    # The needs-an-answer queue is curation's answer_requests now; preference pairs are preference versions.
    rows = db.execute("select q.*, p.prompt_id, p.messages, p.label, p.split, e.run_id from needs_answer q"
                      " join eval_pairs p on p.id=q.pair_id join evaluations e on e.id=q.evaluation_id"
                      " order by q.id").fetchall()
    for r in rows:
        meta = {"source": "feedback", "evaluation": r["evaluation_id"], "run": r["run_id"], "prompt_id": r["prompt_id"],
                "from_votes": json.loads(r["vote_ids"]), "raters": json.loads(r["raters"]), "kind": "needs_answer",
                "pair_id": r["pair_id"]}
        for key in ("label", "split"):
            if r[key] is not None:
                meta[key] = r[key]
        db.execute("insert into answer_requests (origin, record_id, prompt_id, messages, meta, answer, answered_by,"
                   " answered_at, created_at) values (?,?,?,?,?,?,?,?,?)",
                   # an answered one keeps the record id it was (or will be) merged under
                   (f"evaluation {r['evaluation_id']}",
                    f"fb{r['evaluation_id']}-q{r['id']}" if r["answer"] else f"fb{r['evaluation_id']}-p{r['pair_id']}",
                    r["prompt_id"],
                    r["messages"], json.dumps(meta, ensure_ascii=False), r["answer"], r["answered_by"],
                    r["answered_at"], r["created_at"]))
    db.execute("drop table needs_answer")
    db.execute("drop table preference_pairs")


@migration
def m008_pii_leak_checks(db):
    # Whether a run's model reproduces PII scrubbed from its training data; values are stored masked, never whole.
    db.execute("""
        create table pii_leak_checks (
            id integer primary key,
            run_id integer not null references runs(id),
            status text not null check (status in ('checked', 'no_pii_step')),
            note text not null default '',
            scrub_versions text not null default '[]',   -- JSON list of the scrub versions in the run's lineage
            counts text not null default '{}',           -- JSON per entity type: values, probed, finetuned, base
            values_found integer not null default 0,     -- distinct scrubbed values in the run's training records
            values_probed integer not null default 0,
            unaligned integer not null default 0,        -- changed messages whose values could not be located
            settings text not null default '{}',         -- the check's options, JSON
            created_by text,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")
    db.execute("""
        create table pii_leak_findings (
            id integer primary key,
            check_id integer not null references pii_leak_checks(id) on delete cascade,
            entity text not null,
            masked_value text not null,      -- first letter + *** (+ last 2 digits); the value itself is never stored
            record_id text not null,
            message_index integer not null,
            role text not null,
            context text not null,           -- the scrubbed text the probe ended with (placeholders, no originals)
            finetuned integer not null,      -- the fine-tuned model produced the value
            base integer not null,           -- the base model produced it too: not learned from this data
            scrub_version integer references dataset_versions(id)
        )""")
    db.execute("create index pii_leak_checks_run on pii_leak_checks (run_id, id)")


@migration
def m009_pair_text_keys(db):
    # A rater who saw a pair revealed in one evaluation must not get the same texts in another (its sides would
    # be known): the key finds them. The arena computes it for new pairs; both must agree, so this imports it.
    from evaluation.arena import pair_text_key

    db.execute("alter table eval_pairs add column text_key text")
    rows = db.execute("select id, messages, base_response, finetuned_response from eval_pairs").fetchall()
    db.executemany("update eval_pairs set text_key=? where id=?",
                   [(pair_text_key(r["messages"], r["base_response"], r["finetuned_response"]), r["id"]) for r in rows])


@migration
def m010_judge_verdicts(db):
    # An automatic judge's verdicts, one per pair, judge and order shown; never votes (no assignment, no rater).
    db.execute("""
        create table judge_verdicts (
            id integer primary key,
            evaluation_id integer not null references evaluations(id) on delete cascade,
            pair_id integer not null references eval_pairs(id) on delete cascade,
            judge text not null,             -- 'default', a base model, or endpoint:URL#MODEL
            order_shown text not null check (order_shown in ('first', 'swapped')),
            arm_a text not null,             -- the arm whose answer the judge read as A
            arm_b text not null,
            verdict text not null check (verdict in ('A', 'B', 'tie', 'unreadable')),
            score real,                      -- the judge's probability of its verdict among A, B and tie
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            unique (pair_id, judge, order_shown)
        )""")
    db.execute("create index judge_verdicts_evaluation on judge_verdicts (evaluation_id, judge)")


def _copy_rows(db, table: str, create: str, columns: str, select: str) -> None:
    """Rebuild ``table`` from ``create``, filling ``columns`` with ``select`` run over the old table (same ids)."""
    db.execute(create.replace(f"create table {table} ", f"create table {table}_rebuilt "))
    db.execute(f"insert into {table}_rebuilt ({columns}) {select}")
    db.execute(f"drop table {table}")
    db.execute(f"alter table {table}_rebuilt rename to {table}")


@migration(foreign_keys=False)
def m010_arms(db):
    # An evaluation compares any set of arms (base, prompted base, runs, an endpoint); a pair is one prompt and two
    # of them. Two-arm evaluations become arms "base" (first) and their run (second): the fine-tuned side is the
    # second arm's side. A rater may get a pair again with the sides swapped (a repeat), so assignments are unique
    # per (pair, rater, repeat); gold pairs (a known better answer) test the raters and belong to no arm.
    from evaluation.arena import model_named

    db.execute("""
        create table eval_arms (
            id integer primary key,
            evaluation_id integer not null references evaluations(id),
            name text not null,              -- what the statistics call it: base, run 3, prompted base (4 examples)
            kind text not null check (kind in ('base', 'prompted', 'run', 'endpoint')),
            run_id integer references runs(id),
            settings text not null default '{}',   -- JSON: system prompt and examples, adapter, endpoint url/model
            position integer not null,       -- order in the evaluation: the first is the reference (the base)
            unique (evaluation_id, name),
            unique (evaluation_id, position)
        )""")
    db.execute("alter table evaluations add column pairs_per_prompt integer")   # null: every pair of arms
    db.execute("alter table evaluations add column gold_rate real not null default 0")
    db.execute("alter table evaluations add column repeat_rate real not null default 0")
    db.execute("alter table evaluations add column vote_cap integer")           # votes per rater; null: no cap
    for e in db.execute("select id, run_id from evaluations").fetchall():
        db.execute("insert into eval_arms (evaluation_id, name, kind, position) values (?, 'base', 'base', 0)", (e[0],))
        db.execute("insert into eval_arms (evaluation_id, name, kind, run_id, position) values (?, ?, 'run', ?, 1)",
                   (e[0], f"run {e[1]}" if e[1] else "fine-tuned", e[1]))
    _copy_rows(db, "eval_pairs", """
        create table eval_pairs (
            id integer primary key,
            evaluation_id integer not null references evaluations(id),
            prompt_id text not null,
            messages text not null,
            label text,
            split text,
            first_arm integer references eval_arms(id),    -- the arm placed first in the evaluation; null: gold
            second_arm integer references eval_arms(id),
            first_response text not null,    -- on a gold pair, the known better answer
            second_response text not null,
            text_key text,
            gold integer not null default 0 check (gold in (0, 1)),
            names_model text not null default '{}',        -- JSON {arm name: the words that name a model}
            unique (evaluation_id, prompt_id, first_arm, second_arm)
        )""",
        "id, evaluation_id, prompt_id, messages, label, split, first_arm, second_arm, first_response,"
        " second_response, text_key",
        "select p.id, p.evaluation_id, p.prompt_id, p.messages, p.label, p.split,"
        " (select id from eval_arms where evaluation_id=p.evaluation_id and position=0),"
        " (select id from eval_arms where evaluation_id=p.evaluation_id and position=1),"
        " p.base_response, p.finetuned_response, p.text_key from eval_pairs p")
    _copy_rows(db, "eval_assignments", """
        create table eval_assignments (
            id integer primary key,
            pair_id integer not null references eval_pairs(id),
            rater text not null,
            second_side text not null check (second_side in ('A', 'B')),   -- where the second arm's answer is shown
            repeat integer not null default 0 check (repeat in (0, 1)),   -- 1: the pair again, sides swapped
            issued_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            unique (pair_id, rater, repeat)
        )""", "id, pair_id, rater, second_side, issued_at",
        "select id, pair_id, rater, finetuned_side, issued_at from eval_assignments")
    db.execute("create index eval_assignments_rater on eval_assignments (rater, pair_id)")
    _copy_rows(db, "eval_votes", """
        create table eval_votes (
            id integer primary key,
            assignment_id integer not null unique references eval_assignments(id),
            verdict text not null check (verdict in ('A', 'B', 'tie', 'both_bad')),
            outcome text not null check (outcome in ('first', 'second', 'tie', 'both_bad')),   -- the pair's arms
            gold_correct integer,            -- on a gold pair: 1 when the known better answer won; else null
            comment text not null default '',
            corrected_answer text,
            voted_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""", "id, assignment_id, verdict, outcome, comment, corrected_answer, voted_at",
        "select id, assignment_id, verdict, case outcome when 'finetuned' then 'second' when 'base' then 'first'"
        " else outcome end, comment, corrected_answer, voted_at from eval_votes")
    rows = db.execute("select p.id, p.first_response, p.second_response, e.base_model, b.name as arm, r.name as run"
                      " from eval_pairs p join evaluations e on e.id=p.evaluation_id"
                      " join eval_arms b on b.id=p.second_arm left join runs r on r.id=e.run_id").fetchall()
    for r in rows:
        names = [r["base_model"]] + ([r["run"]] if r["run"] else [])
        flags = {arm: said for arm, text in (("base", r["first_response"]), (r["arm"], r["second_response"]))
                 if (said := model_named(text, names))}
        if flags:
            db.execute("update eval_pairs set names_model=? where id=?",
                       (json.dumps(flags, ensure_ascii=False), r["id"]))


@migration(foreign_keys=False)
def m011_kto_feedback_versions(db):
    # KTO versions made from an evaluation's votes are feedback versions too: the kind widens to 'kto' (SQLite cannot
    # alter a check, so the table is rebuilt with its rows), and KTO versions made before get their row.
    _copy_rows(db, "feedback_versions", """
        create table feedback_versions (
            version_id integer primary key references dataset_versions(id),
            evaluation_id integer not null references evaluations(id),
            kind text not null check (kind in ('corrections', 'preferences', 'kto')),
            policy text not null             -- how disagreeing raters were resolved: majority or unanimous
        )""", "version_id, evaluation_id, kind, policy",
        "select version_id, evaluation_id, kind, policy from feedback_versions")
    evaluations = {r[0] for r in db.execute("select id from evaluations")}
    for vid, params in db.execute("select id, params from dataset_versions where step='kto' and kind='kto' and id not"
                                  " in (select version_id from feedback_versions)").fetchall():
        params = json.loads(params or "{}")
        eid = params.get("evaluation")
        if isinstance(eid, int) and eid in evaluations:
            db.execute("insert into feedback_versions (version_id, evaluation_id, kind, policy) values (?,?,'kto',?)",
                       (vid, eid, params.get("policy") or "majority"))


@migration
def m012_generation_cache_by_answering_engine(db):
    # Before answers were keyed by the engine that gave them, an adapter whose GGUF conversion failed answered with
    # transformers under llama.cpp's key, so a later llama.cpp answer could be read from the wrong engine. Keys are
    # hashes, so those rows cannot be told apart: the cache starts empty (answers already in evaluations are kept
    # in their own tables; nothing refers to a cache row).
    db.execute("delete from generation_cache")


@migration
def m013_judge_split_readings(db):
    # The judge on the rest of the test split: prompts of the evaluation's dataset version that are not in the
    # evaluation, answered by its arms and read by a calibrated judge. Kept apart from eval_pairs (raters are issued
    # those, and every count of the evaluation reads them) and from judge_verdicts (the readings calibration compares
    # with the votes): these answers were never shown to a rater and their readings are never votes.
    db.execute("""
        create table judge_split_pairs (
            id integer primary key,
            evaluation_id integer not null references evaluations(id) on delete cascade,
            prompt_id text not null,         -- a test-split record of the evaluation's dataset version
            label text,
            messages text not null,          -- JSON conversation up to and including the last user turn
            first_arm text not null,         -- arm names, in the evaluation's order
            second_arm text not null,
            first_response text not null,    -- what each arm answered (the texts the judge read)
            second_response text not null,
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            unique (evaluation_id, prompt_id, first_arm, second_arm)
        )""")
    db.execute("""
        create table judge_split_readings (
            id integer primary key,
            evaluation_id integer not null references evaluations(id) on delete cascade,
            split_pair_id integer not null references judge_split_pairs(id) on delete cascade,
            judge text not null,             -- 'default', a base model, or endpoint:URL#MODEL
            order_shown text not null check (order_shown in ('first', 'swapped')),
            arm_a text not null,             -- the arm whose answer the judge read as A
            arm_b text not null,
            verdict text not null check (verdict in ('A', 'B', 'tie', 'unreadable')),
            score real,                      -- the judge's probability of its verdict among A, B and tie
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            unique (split_pair_id, judge, order_shown)
        )""")
    db.execute("create index judge_split_readings_evaluation on judge_split_readings (evaluation_id, judge)")
