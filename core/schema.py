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
