"""Tables owned by core: users and their roles. Append a new migration; never edit an applied one."""
from core.workspace import migrations

migration = migrations("core")


@migration
def m001_users(db):
    db.execute("""
        create table users (
            name text primary key,
            role text not null check (role in ('admin', 'rater', 'viewer')),
            password_hash text not null,     -- scrypt$n$r$p$salt_hex$hash_hex
            created_at text not null default (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""")


@migration
def m002_session_epoch(db):
    # Every login of a user carries the user's epoch; a new one (password change, removal and re-adding)
    # ends all of the user's sessions at once, and an old cookie never matches again.
    db.execute("alter table users add column session_epoch text not null default ''")
    db.execute("update users set session_epoch = lower(hex(randomblob(16)))")
